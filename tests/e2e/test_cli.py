"""The `pers` command as an operator runs it: real processes, real anvil, real compiler."""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from web3 import Web3

from backend.chain.client import dev_account
from backend.demo import mall
from backend.settings import PROJECT_ROOT
from tests.conftest import free_port, missing
from tests.platform import wait_for

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
        "ExchangeRouter",
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

    def __init__(self, tmp_path: Path, demo: bool = True, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"up-{self.port}.log"
        self.handle = open(self.log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*PERS, "up", "--port", str(self.port), *(["--demo"] if demo else [])],
            env=environment(tmp_path, **env),
            cwd=PROJECT_ROOT,
            stdout=self.handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 180  # it deploys the platform first: slow on a loaded machine
        while True:
            try:
                httpx.get(f"{self.base}/healthz")
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()  # not left running after the test
                    self.proc.wait()
                    pytest.fail(f"pers up did not start:\n{self.log.read_text()}")
                time.sleep(0.1)

    def printed(self, prefix: str) -> str:
        """What a line starting with `prefix` says; waits for it (`--demo` seeds once the API answers)."""
        lines = wait_for(
            lambda: self.log.read_text().splitlines(),
            lambda found: any(prefix in x for x in found) or "demo: seeding failed" in "".join(found),
            f"a line {prefix!r}",
            timeout=300,
        )
        line = next((x for x in lines if prefix in x), None)
        assert line is not None, self.log.read_text()
        return line.split(prefix, 1)[1].strip()

    def stop(self, how: signal.Signals = signal.SIGTERM) -> str:
        self.proc.send_signal(how)
        self.proc.wait(30)
        self.handle.close()
        assert self.proc.returncode == 0, self.log.read_text()
        return self.log.read_text()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_health_and_openapi_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    up = Up(tmp_path, demo=False)
    try:
        health = httpx.get(f"{up.base}/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = httpx.get(f"{up.base}/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert {c: v["ok"] for c, v in checks.items()} == {
            "database": True,
            "broker": True,
            "chain": True,
            "indexer": True,
        }
        # `pers up` indexes its chain in process: the mirror's block and its lag behind the node.
        mirrored = wait_for(
            lambda: httpx.get(f"{up.base}/readyz").json()["checks"]["indexer"]["networks"]["embedded"],
            lambda found: found is not None,
            "the indexer's first write",
        )
        assert (
            mirrored["head"] >= mirrored["block"] >= 0
            and mirrored["lagBlocks"] == mirrored["head"] - mirrored["block"]
        )
        spec = httpx.get(f"{up.base}/openapi.json", timeout=60).json()  # built on first use: slow when busy
        assert {"/healthz", "/readyz", "/v1/tenants", "/v1/auth/token"} <= set(spec["paths"])
        assert httpx.get(f"{up.base}/docs").status_code == 200
        missing_route = httpx.get(f"{up.base}/v1/nothing")
        assert missing_route.status_code == 404 and missing_route.json()["error"]["code"] == "not_found"
    finally:
        output = up.stop(stop)
    assert "TokenFactory" in output and "stopped" in output
    assert (tmp_path / "data" / "master.key").exists() and (tmp_path / "data" / "pers.db").exists()
    # Password hashes, customer emails and keys: the owner's only.
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in data.rglob("*")}
    assert modes and all(mode == (0o700 if p.is_dir() else 0o600) for p, mode in modes.items()), modes


def test_up_keeps_tenants_and_their_contract_addresses_across_restarts(tmp_path: Path) -> None:
    first = Up(tmp_path)
    try:
        project_key = first.printed("project key (test)")
        password = first.printed("demo admin password (shown once):")
        token = httpx.post(
            f"{first.base}/v1/auth/token",
            json={"authType": "admin", "email": mall.ADMIN_EMAIL, "password": password},
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
        tried = try_walkthrough(first)
    finally:
        first.stop()
    # The walkthrough it printed runs as pasted: Ada's purchase counts, her session reads her Gold.
    assert '"outcome": "progress"' in tried and '"state": "granted"' in tried and '"kind": "status"' in tried
    second = Up(tmp_path)
    try:
        assert second.printed("project key (test)") == project_key
        restart = second.log.read_text()
        assert "seeding the mall scenario" not in restart  # seeded once
        assert password not in restart and "password and shop keys: shown on the first run only" in restart
        assert "the previous run's no longer works" in restart  # why a new operator token is printed
        after = wait_for_active(second.base, headers)  # the access token is still valid: same data dir
        assert after == before
    finally:
        second.stop()


def try_walkthrough(up: Up) -> str:
    """The calls `pers up --demo` printed to try, run in bash as a reader pastes them."""
    if not all(shutil.which(tool) for tool in ("bash", "curl", "jq")):
        missing("the demo walkthrough runs with bash, curl and jq")
    up.printed("demo ready; try:")
    lines = up.log.read_text().split("demo ready; try:\n", 1)[1].splitlines()
    calls = "\n".join(line.strip() for line in lines if line.startswith("    "))
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", calls], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


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
    # The embedded chain would die with the command: nothing is deployed or recorded until `pers up`.
    assert envs["test"]["status"] == "pending" and envs["test"]["network"] == "embedded"
    assert envs["test"]["rewards"] is None and "when `pers up` starts" in embedded.stderr
    assert envs["test"]["projectKey"].startswith("pk_test_") and envs["live"]["projectKey"].startswith(
        "pk_live_"
    )
    assert envs["live"]["status"] == "unconfigured"
    up = Up(tmp_path / "a", demo=False)
    try:
        token = httpx.post(
            f"{up.base}/v1/auth/token",
            json={
                "authType": "admin",
                "email": created["admin"]["email"],
                "password": created["admin"]["password"],
            },
            headers={"X-Project-Key": envs["test"]["projectKey"]},
        ).json()["accessToken"]
        assert wait_for_active(up.base, {"Authorization": f"Bearer {token}"})["rewards"]
    finally:
        up.stop()

    env = environment(tmp_path / "b", PERS_LOCAL_RPC_URL=anvil_url)
    on_anvil = pers("tenant", "create", "--name", "Anvil Shop", "--network-test", "local", "--json", env=env)
    assert on_anvil.returncode == 0, on_anvil.stderr
    test_env = next(e for e in json.loads(on_anvil.stdout)["environments"] if e["environment"] == "test")
    assert test_env["status"] == "active" and test_env["network"] == "local"
    assert len(Web3(Web3.HTTPProvider(anvil_url)).eth.get_code(test_env["rewards"])) > 0

    again = pers("tenant", "create", "--name", "Anvil Shop", "--network-test", "local", "--json", env=env)
    assert again.returncode == 1 and "taken" in again.stderr


COMMANDS = [
    ["up", "--port", "1"],
    ["api"],
    ["worker"],
    ["db", "upgrade"],
    ["tenant", "create", "--name", "Bad Settings"],
    ["chain", "deploy", "--network", "local"],
    ["contracts", "build", "--check"],
    ["bench", "gas"],
    ["relayer", "status"],
    ["relayer", "fund", "--network", "local"],
]
BAD = [
    ("PERS_SIWE_DOMAINS", '["app.example.com"'),
    ("PERS_RATE_LIMIT_PER_KEY", "abc"),
    ("PERS_LOG_LEVEL", "loud"),
    ("PERS_DATABASE_URL", "pers.db"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_refuses_a_bad_setting_in_one_line(tmp_path: Path, command: list[str]) -> None:
    variable, value = BAD[COMMANDS.index(command) % len(BAD)]
    result = pers(*command, env=environment(tmp_path, **{variable: value}), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {variable} must be ") and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_tenant_create_and_a_second_up_refuse_while_up_runs_on_the_data_directory(tmp_path: Path) -> None:
    up = Up(tmp_path, demo=False)
    try:
        env = environment(tmp_path)
        created = pers("tenant", "create", "--name", "Beside Up", env=env, timeout=60)
        second = pers("up", "--port", str(free_port()), env=env, timeout=60)
        demo_only = httpx.get(f"{up.base}/readyz")
    finally:
        up.stop()
    assert created.returncode == 1 and len(created.stderr.splitlines()) == 1, created.stderr
    assert f"`pers up` (pid {up.proc.pid}, port {up.port}) is running" in created.stderr
    assert "POST /v1/tenants" in created.stderr and created.stdout == ""
    assert second.returncode == 1 and "is already running" in second.stderr and second.stdout == ""
    assert demo_only.status_code == 200
    after = pers("tenant", "create", "--name", "After Up", "--json", env=environment(tmp_path), timeout=120)
    assert after.returncode == 0, after.stderr  # the lock went with the process


def test_chain_deploy_needs_a_network_with_a_node(tmp_path: Path) -> None:
    env = environment(tmp_path)
    unnamed = pers("chain", "deploy", env=env, timeout=60)
    assert unnamed.returncode == 2 and "Missing option '--network'" in unnamed.stderr
    embedded = pers("chain", "deploy", "--network", "embedded", env=env, timeout=60)
    assert embedded.returncode == 1 and len(embedded.stderr.splitlines()) == 1
    assert "embedded network lives and dies with one process" in embedded.stderr
    assert not (tmp_path / "data" / "deployments").exists()


def test_a_busy_port_is_one_line_before_anything_is_printed(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        up = pers("up", "--port", port, "--demo", env=environment(tmp_path), timeout=60)
        secrets = {
            "PERS_OPERATOR_TOKEN": "op_" + "o" * 40,
            "PERS_MASTER_KEY": "11" * 32,
            "PERS_JWT_SECRET": "j" * 40,
            "PERS_BROKER_URL": "redis://127.0.0.1:6379/9",
        }
        api = pers("api", "--port", port, env=environment(tmp_path, **secrets), timeout=60)
    for result in (up, api):
        assert result.returncode == 1 and result.stdout == ""
        assert (
            result.stderr
            == f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port\n"
        )
    assert not (tmp_path / "data" / "pers.db").exists()  # refused before migrating


def test_the_production_processes_refuse_the_in_memory_broker(tmp_path: Path) -> None:
    secrets = {
        "PERS_OPERATOR_TOKEN": "op_" + "o" * 40,
        "PERS_MASTER_KEY": "11" * 32,
        "PERS_JWT_SECRET": "j" * 40,
    }
    for command in (["api", "--port", str(free_port())], ["worker"]):
        result = pers(*command, env=environment(tmp_path, **secrets), timeout=60)
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
        assert "set PERS_BROKER_URL (amqp://… or redis://…, not the in-memory default)" in result.stderr


def test_several_api_processes_need_the_shared_rate_limits(tmp_path: Path) -> None:
    secrets = {
        "PERS_OPERATOR_TOKEN": "op_" + "o" * 40,
        "PERS_MASTER_KEY": "11" * 32,
        "PERS_JWT_SECRET": "j" * 40,
        "PERS_BROKER_URL": "redis://127.0.0.1:6379/9",
    }
    for flags, extra in ((["--workers", "2"], {}), ([], {"PERS_API_WORKERS": "2"})):
        env = environment(tmp_path, **secrets, **extra)
        result = pers("api", "--port", str(free_port()), *flags, env=env, timeout=60)
        assert result.returncode == 1 and result.stdout == "", result.stderr
        assert (
            result.stderr
            == "error: several API processes share their rate limits through Redis: set PERS_REDIS_URL\n"
        )


def test_help_promises_only_what_exists_and_flags_take_no_value() -> None:
    chain = pers("chain", "--help", timeout=60)
    assert chain.returncode == 0 and "inspect" not in chain.stdout
    for command, flag in (
        (["up"], "--demo"),
        (["chain", "deploy"], "--json"),
        (["contracts", "build"], "--check"),
    ):
        shown = pers(*command, "--help", timeout=60)
        assert shown.returncode == 0 and flag in shown.stdout
        assert "<bool>" not in shown.stdout, shown.stdout
