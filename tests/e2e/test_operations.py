"""What an operator watches: /metrics, /readyz and the relayer wallets, over HTTP and the `pers` command,
on both stacks; dependencies stopped for real (anvil and a broker of the test's own)."""

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from web3 import Web3

from backend.chain.client import dev_account
from backend.ops import relayer
from backend.settings import PROJECT_ROOT
from tests.conftest import ANVIL, OPERATOR_TOKEN, free_port, missing, reachable
from tests.e2e.test_cli import PERS, environment, pers
from tests.platform import Platform, create_tenant

FAMILIES = {
    "pers_http_requests",
    "pers_http_request_duration_seconds",
    "pers_outbox_pending",
    "pers_relay_queue_depth",
    "pers_relay_oldest_queued_seconds",
    "pers_relay_operation_seconds",
    "pers_relay_gas_used",
    "pers_relayer_balance_eth",
    "pers_relayer_chain_nonce",
    "pers_relayer_nonce_gap",
    "pers_scrape_ok",
}
RELAYER = dev_account(0).address  # no PERS_RELAYER_KEY on the dev networks: the first dev account


Families = dict[str, list[Sample]]


def scrape(text: str) -> Families:
    """Family name → its samples, parsed the way Prometheus reads them."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: Families, family: str, sample: str | None = None, **labels: str) -> float | None:
    """The sample with exactly these labels (named `sample`, default the family's name), or None."""
    found = [s.value for s in families[family] if s.name == (sample or family) and s.labels == labels]
    return found[0] if found else None


def metrics(platform: Platform) -> Families:
    response = platform.client.get("/metrics", headers=platform.operator())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return scrape(response.text)


def healthz_count(families: Families) -> float:
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    return value(families, "pers_http_requests", "pers_http_requests_total", **labels) or 0.0


def test_metrics_parse_as_prometheus_text_and_count_requests(platform: Platform) -> None:
    first = metrics(platform)
    assert set(first) >= FAMILIES, FAMILIES - set(first)
    for _ in range(3):
        assert platform.client.get("/healthz").status_code == 200
    assert healthz_count(metrics(platform)) == healthz_count(first) + 3
    network = "embedded" if platform.env is None else "local"
    balance = value(first, "pers_relayer_balance_eth", address=RELAYER, network=network)
    assert balance is not None and balance > 0
    assert value(first, "pers_scrape_ok", source="database") == 1
    assert value(first, "pers_scrape_ok", source=f"chain:{network}") == 1
    create_tenant(platform, "Metered")
    unmatched = platform.client.get("/no/such/path/0x1234")
    assert unmatched.status_code == 404
    routes = {s.labels["route"] for s in metrics(platform)["pers_http_requests"]}
    assert "unmatched" in routes and "/no/such/path/0x1234" not in routes and "/v1/tenants" in routes


def test_metrics_and_relayer_status_need_the_operator_token(platform: Platform) -> None:
    for path in ("/metrics", "/v1/relayer/status"):
        anonymous = platform.client.get(path)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    tenant = create_tenant(platform, "Curious")
    refused = platform.client.get("/metrics", headers=tenant.admin_headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_relayer_status_shows_the_funded_relayer_and_its_chain_nonce(platform: Platform) -> None:
    before = platform.w3.eth.get_transaction_count(RELAYER)
    response = platform.client.get("/v1/relayer/status", headers=platform.operator())
    after = platform.w3.eth.get_transaction_count(RELAYER)
    assert response.status_code == 200, response.text
    body = response.json()
    (network,) = body["networks"]
    assert network["network"] == ("embedded" if platform.env is None else "local")
    assert network["environments"] == ["test"] and network["error"] is None
    wallet, *lanes = network["wallets"]  # the platform's relayer first, then the relay's lanes
    assert wallet["address"] == RELAYER and int(wallet["balanceWei"]) > 0
    assert before <= wallet["chainNonce"] <= after and wallet["chainNonce"] >= 1  # it deployed the platform
    # Its platform transactions take their nonces from its lane (on the one-process embedded EVM, from
    # the node), as the relay's lanes do.
    assert (
        wallet["localNonce"] is None if platform.env is None else wallet["localNonce"] >= wallet["chainNonce"]
    )
    assert all(lane["localNonce"] >= lane["chainNonce"] for lane in lanes)
    assert isinstance(body["queueDepth"], int)


@dataclass
class Lane:
    address: str
    next_nonce: int


class FakeRelay:
    """A relay view with one lane three transactions ahead of the chain and two operations queued."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def lanes(self, session: object, network: str) -> list[Lane]:
        return [Lane(RELAYER.lower(), self.platform.w3.eth.get_transaction_count(RELAYER) + 3)]

    def queue_depth(self, session: object) -> int:
        return 2

    def oldest_queued_age(self, session: object) -> float | None:
        return 4.5


def test_the_relay_view_feeds_status_and_metrics(embedded_platform: Platform) -> None:
    relayer.use_relay_view(FakeRelay(embedded_platform))
    try:
        body = embedded_platform.client.get("/v1/relayer/status", headers=embedded_platform.operator()).json()
        families = metrics(embedded_platform)
    finally:
        relayer.use_relay_view(None)
    (wallet,) = body["networks"][0]["wallets"]
    assert wallet["address"] == RELAYER and wallet["nonceGap"] == 3
    assert wallet["localNonce"] == wallet["chainNonce"] + 3
    assert body["queueDepth"] == 2 and body["oldestQueuedAgeSeconds"] == 4.5
    assert value(families, "pers_relayer_nonce_gap", address=RELAYER, network="embedded") == 3
    assert value(families, "pers_relay_queue_depth") == 2
    assert value(families, "pers_relay_oldest_queued_seconds") == 4.5


def test_pers_relayer_status_and_fund_on_anvil(production_platform: Platform) -> None:
    env = production_platform.env
    assert env is not None
    w3 = production_platform.w3
    shown = pers("relayer", "status", "--json", env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    wallet = json.loads(shown.stdout)["networks"][0]["wallets"][0]
    assert wallet["address"] == RELAYER and int(wallet["balanceWei"]) > 0
    assert wallet["chainNonce"] <= w3.eth.get_transaction_count(RELAYER) and wallet["chainNonce"] >= 1
    table = pers("relayer", "status", env=env, timeout=60)
    assert table.returncode == 0 and RELAYER in table.stdout and "pending" in table.stdout

    before = w3.eth.get_balance(RELAYER)
    funded = pers("relayer", "fund", "--network", "local", "--amount", "5", env=env, timeout=60)
    assert funded.returncode == 0, funded.stderr
    assert RELAYER in funded.stdout
    # The worker may pay some gas meanwhile, never 0.1 ETH on anvil.
    assert w3.eth.get_balance(RELAYER) - before > Web3.to_wei(4.9, "ether")


def test_fund_on_the_embedded_evm_transfers_from_the_platform_relayer(embedded_platform: Platform) -> None:
    """`pers up`'s chain lives in its process: the service funds from the EVM's genesis accounts."""
    runtime = embedded_platform.client.app.state.runtime  # type: ignore[attr-defined]
    fresh = Web3.to_checksum_address("0x" + "ab" * 20)
    before = embedded_platform.w3.eth.get_balance(fresh)
    balance = relayer.fund(runtime.chain("embedded"), fresh, Web3.to_wei(2, "ether"))
    assert balance == before + Web3.to_wei(2, "ether") == embedded_platform.w3.eth.get_balance(fresh)


@pytest.mark.parametrize(
    ("network", "reason"),
    [
        ("ethereum", "error: refusing to fund on ethereum: chain 1 is a mainnet"),
        ("base", "error: refusing to fund on base: chain 8453 is a mainnet"),
        ("sepolia", "error: sepolia has no development accounts: send it test ether from a faucet"),
        ("embedded", "error: the embedded network lives in the `pers up` process"),
    ],
)
def test_pers_relayer_fund_refuses_networks_it_cannot_fund(tmp_path: Path, network: str, reason: str) -> None:
    refused = pers("relayer", "fund", "--network", network, env=environment(tmp_path), timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.startswith(reason) and len(refused.stderr.splitlines()) == 1
    assert refused.stdout == ""


@contextmanager
def process(*command: str, port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A service of this test's own, listening on `port`, so stopping it disturbs no other run."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=PROJECT_ROOT, env=env)
    try:
        while not reachable("127.0.0.1", port):
            assert proc.poll() is None, f"{command[0]} ended"
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)


def test_readyz_names_a_stopped_broker_and_chain(tmp_path: Path) -> None:
    if not ANVIL.exists() or shutil.which("redis-server") is None:
        missing("this test starts anvil (npm ci in contracts/) and redis-server of its own")
    anvil_port, redis_port, port, metrics_port, worker_port = (free_port() for _ in range(5))
    env = environment(
        tmp_path,
        PERS_NETWORK="local",
        PERS_LOCAL_RPC_URL=f"http://127.0.0.1:{anvil_port}",
        PERS_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        PERS_OPERATOR_TOKEN=OPERATOR_TOKEN,
        PERS_MASTER_KEY="11" * 32,
        PERS_JWT_SECRET="j" * 32,
        PERS_METRICS_PORT=str(metrics_port),
    )
    assert pers("db", "upgrade", env=env, timeout=60).returncode == 0
    base = f"http://127.0.0.1:{port}"
    with (
        process(str(ANVIL), "--port", str(anvil_port), "--silent", port=anvil_port) as anvil,
        process(
            "redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", port=redis_port
        ) as redis,
        process(*PERS, "api", "--port", str(port), port=port, env=env),
        process(*PERS, "worker", port=worker_port, env={**env, "PERS_METRICS_PORT": str(worker_port)}),
    ):
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["failed"] == [], ready.text
        # The metrics port: no credential, for a scraper on a private network.
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
        assert scraped.status_code == 200 and set(scrape(scraped.text)) >= FAMILIES
        # A worker serves its own events; the state gauges come from the API processes alone.
        worker = scrape(httpx.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=30).text)
        assert "pers_relay_gas_used" in worker and "pers_relayer_balance_eth" not in worker

        stop(redis)
        down = httpx.get(f"{base}/readyz", timeout=30)
        assert down.status_code == 503 and down.json()["failed"] == ["broker"], down.text
        assert down.json()["status"] == "unavailable" and down.json()["checks"]["chain"]["ok"]

        stop(anvil)
        down = httpx.get(f"{base}/readyz", timeout=30)
        assert down.status_code == 503 and down.json()["failed"] == ["broker", "chain"], down.text
        operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        status = httpx.get(f"{base}/v1/relayer/status", headers=operator, timeout=30)
        assert status.status_code == 200 and status.json()["networks"][0]["error"] is not None
        families = scrape(httpx.get(f"{base}/metrics", headers=operator, timeout=30).text)
        assert value(families, "pers_scrape_ok", source="chain:local") == 0
