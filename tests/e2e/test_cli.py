"""The `pers` command as an operator runs it: real processes, real anvil, real compiler."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from backend.chain.client import dev_account
from backend.settings import PROJECT_ROOT
from tests.conftest import free_port, missing

PERS = [sys.executable, "-m", "backend.cli"]


def pers(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PERS, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=PROJECT_ROOT
    )


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERS_")}
    return {**env, "PERS_DATA_DIR": str(tmp_path / "data"), **extra}


@pytest.fixture
def needs_node() -> None:
    if shutil.which("node") is None or not (PROJECT_ROOT / "contracts/node_modules/solc").exists():
        missing("the contract build needs Node.js and `npm ci` in contracts/")


@pytest.mark.usefixtures("needs_node")
def test_contract_build_is_reproducible_and_check_names_stale_contracts(tmp_path: Path) -> None:
    assert pers("contracts", "build", "--check").returncode == 0

    copy = tmp_path / "contracts"
    shutil.copytree(PROJECT_ROOT / "contracts", copy, ignore=shutil.ignore_patterns("node_modules", "build"))
    (copy / "node_modules").symlink_to(PROJECT_ROOT / "contracts" / "node_modules")
    env = environment(tmp_path, PERS_CONTRACTS_DIR=str(copy))
    assert pers("contracts", "build", env=env).returncode == 0
    for committed in (PROJECT_ROOT / "contracts" / "build").glob("*.json"):
        assert (copy / "build" / committed.name).read_bytes() == committed.read_bytes()

    source = copy / "src" / "RewardsToken.sol"
    source.write_text(source.read_text().replace("return kindOf[id] == Kind.Status;", "return false;"))
    stale = pers("contracts", "build", "--check", env=env)
    assert stale.returncode == 1
    assert "RewardsToken" in stale.stderr and "CreditToken" not in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1


def test_chain_deploy_is_idempotent_on_anvil(tmp_path: Path, anvil_url: str) -> None:
    env = environment(tmp_path)
    first = pers("chain", "deploy", "--network", "local", "--rpc-url", anvil_url, "--json", env=env)
    assert first.returncode == 0, first.stderr
    deployed = json.loads(first.stdout)
    assert deployed["network"] == "local" and deployed["chainId"] == 31337
    assert set(deployed["contracts"]) == {
        "TokenFactory",
        "CreditTokenImplementation",
        "RewardsTokenImplementation",
    }
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    assert all(len(w3.eth.get_code(a)) > 0 for a in deployed["contracts"].values())

    relayer = dev_account(0).address
    nonce = w3.eth.get_transaction_count(relayer)
    second = pers("chain", "deploy", "--network", "local", "--rpc-url", anvil_url, "--json", env=env)
    assert second.returncode == 0 and json.loads(second.stdout) == deployed
    assert w3.eth.get_transaction_count(relayer) == nonce  # nothing was sent


def test_commands_fail_with_a_one_line_reason(tmp_path: Path) -> None:
    env = environment(tmp_path)
    env.pop("SEPOLIA_RPC_URL", None)
    assert "PERS_RELAYER_KEY" in pers("chain", "deploy", "--network", "sepolia", env=env).stderr
    env["PERS_RELAYER_KEY"] = Web3.keccak(text="throwaway").hex()
    cases = [
        (["chain", "deploy", "--network", "sepolia"], "SEPOLIA_RPC_URL"),
        (["chain", "deploy", "--network", "mars"], "unknown network"),
        (
            ["chain", "deploy", "--network", "local", "--rpc-url", f"http://127.0.0.1:{free_port()}"],
            "cannot reach",
        ),
        (["api", "--port", str(free_port())], "PERS_OPERATOR_TOKEN, PERS_MASTER_KEY, PERS_JWT_SECRET"),
        (["worker"], "PERS_MASTER_KEY"),
    ]
    for args, reason in cases:
        result = pers(*args, env=env)
        assert result.returncode == 1
        assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_gas_benchmark_meets_the_bars(tmp_path: Path) -> None:
    result = pers("bench", "gas", "--json", env=environment(tmp_path))
    assert result.returncode == 0, result.stderr
    gas = json.loads(result.stdout)
    keys = ("mint_single", "mint_batch100_per_op", "transfer_signed", "onboarding_clones", "onboarding_full")
    assert all(isinstance(gas[k], int) and gas[k] > 21_000 // 100 for k in keys)
    assert gas["mint_batch100_per_op"] <= 0.35 * gas["mint_single"]
    assert gas["onboarding_clones"] <= 0.15 * gas["onboarding_full"]


class Up:
    """A `pers up --demo` process: waits until it serves, reads what it printed."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"up-{self.port}.log"
        self.handle = open(self.log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*PERS, "up", "--port", str(self.port), "--demo"],
            env=environment(tmp_path),
            cwd=PROJECT_ROOT,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.base}/healthz")
                return
            except httpx.TransportError:
                assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)

    def printed(self, prefix: str) -> str:
        line = next(x for x in self.log.read_text().splitlines() if prefix in x)
        return line.split(prefix, 1)[1].strip()

    def stop(self, how: signal.Signals = signal.SIGTERM) -> str:
        self.proc.send_signal(how)
        self.proc.wait(30)
        self.handle.close()
        assert self.proc.returncode == 0, self.log.read_text()
        return self.log.read_text()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_health_and_openapi_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    up = Up(tmp_path)
    try:
        health = httpx.get(f"{up.base}/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = httpx.get(f"{up.base}/readyz")
        assert ready.status_code == 200, ready.text
        assert {c: v["ok"] for c, v in ready.json()["checks"].items()} == {
            "database": True,
            "broker": True,
            "chain": True,
        }
        spec = httpx.get(f"{up.base}/openapi.json").json()
        assert {"/healthz", "/readyz", "/v1/tenants", "/v1/auth/token"} <= set(spec["paths"])
        assert httpx.get(f"{up.base}/docs").status_code == 200
        missing_route = httpx.get(f"{up.base}/v1/nothing")
        assert missing_route.status_code == 404 and missing_route.json()["error"]["code"] == "not_found"
    finally:
        output = up.stop(stop)
    assert "TokenFactory" in output and "stopped" in output
    assert (tmp_path / "data" / "master.key").exists() and (tmp_path / "data" / "pers.db").exists()


def test_up_keeps_tenants_and_their_contract_addresses_across_restarts(tmp_path: Path) -> None:
    first = Up(tmp_path)
    try:
        project_key = first.printed("project key (test)")
        password = first.printed("demo admin password (shown once):")
        token = httpx.post(
            f"{first.base}/v1/auth/token",
            json={"authType": "admin", "email": "admin@demo.example", "password": password},
            headers={"X-Project-Key": project_key},
        ).json()["accessToken"]
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{first.base}/v1/tokens",
            json={"kind": "credit", "name": "Pts", "symbol": "PTS"},
            headers=headers,
        )
        assert created.status_code == 202
        before = wait_for_active(first.base, headers)
    finally:
        first.stop()
    second = Up(tmp_path)
    try:
        assert second.printed("project key (test)") == project_key
        assert "password" not in second.log.read_text()  # shown once, on the first run only
        after = wait_for_active(second.base, headers)  # the access token is still valid: same data dir
        assert after == before
    finally:
        second.stop()


def wait_for_active(base: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        contracts = httpx.get(f"{base}/v1/tenants/me/contracts", headers=headers).json()["data"][0]
        if contracts["status"] == "active" and all(c["status"] == "active" for c in contracts["credits"]):
            return {"rewards": contracts["rewards"], "credits": [c["address"] for c in contracts["credits"]]}
        assert time.monotonic() < deadline, contracts
        time.sleep(0.1)


def test_tenant_create_deploys_on_the_configured_network(tmp_path: Path, anvil_url: str) -> None:
    embedded = pers("tenant", "create", "--name", "Demo Shop", "--json", env=environment(tmp_path / "a"))
    assert embedded.returncode == 0, embedded.stderr
    created = json.loads(embedded.stdout)
    assert created["slug"] == "demo-shop" and created["admin"]["password"]
    envs = {e["environment"]: e for e in created["environments"]}
    assert envs["test"]["status"] == "active" and envs["test"]["network"] == "embedded"
    assert envs["test"]["projectKey"].startswith("pk_test_") and envs["live"]["projectKey"].startswith(
        "pk_live_"
    )
    assert envs["live"]["status"] == "unconfigured"

    env = environment(tmp_path / "b", PERS_LOCAL_RPC_URL=anvil_url)
    on_anvil = pers("tenant", "create", "--name", "Anvil Shop", "--network-test", "local", "--json", env=env)
    assert on_anvil.returncode == 0, on_anvil.stderr
    test_env = next(e for e in json.loads(on_anvil.stdout)["environments"] if e["environment"] == "test")
    assert test_env["status"] == "active" and test_env["network"] == "local"
    assert len(Web3(Web3.HTTPProvider(anvil_url)).eth.get_code(test_env["rewards"])) > 0

    again = pers("tenant", "create", "--name", "Anvil Shop", "--network-test", "local", "--json", env=env)
    assert again.returncode == 1 and "taken" in again.stderr
