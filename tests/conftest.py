"""Shared fixtures: real EVMs (the embedded py-evm and an anvil node), each with the platform
deployed once per session and a clean chain per test (evm_snapshot / evm_revert).

Services come from the environment (PERS_TEST_RPC_URL) or are started here. A tier whose binary
is missing is skipped with a loud reason locally; under CI=true any skip fails the run."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import kombu
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from backend.chain.client import Chain, connect, dev_account
from backend.chain.deploy import ContractKind, CreditSpec, TokenKind, create_tenant_contracts, deploy_platform
from backend.kit import migrate
from backend.kit.db import scratch_database
from backend.settings import PROJECT_ROOT, Settings
from tests.platform import Platform

ANVIL = PROJECT_ROOT / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
IN_CI = os.environ.get("CI") == "true"
REWARD_ID, STATUS_ID = 1, 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(reason: str) -> None:
    """Skips locally; fails under CI, where every tier must run."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


class Server:
    """A private server process on a fixed port that a fault test stops and starts again (anvil,
    a broker): nobody else uses it, so restarting it disturbs no one."""

    def __init__(self, command: list[str], port: int, what: str) -> None:
        self.command, self.port, self.what = command, port, what
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                pytest.fail(f"{self.what} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean stop (anvil writes its `--state` file on the way out)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


@contextmanager
def running_anvil(state: Path | None = None) -> Iterator[Server]:
    """A fresh anvil node on a free port (its chain kept in `state` across restarts), stopped afterwards."""
    if not ANVIL.exists():
        missing(f"anvil not found at {ANVIL}: run `npm ci` in contracts/")
    port = free_port()
    command = [str(ANVIL), "--port", str(port), "--silent"]
    node = Server([*command, "--state", str(state)] if state else command, port, "anvil")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@contextmanager
def private_redis() -> Iterator[Server]:
    """A Redis server of the test's own (no persistence: a restart loses every message it held)."""
    redis = shutil.which("redis-server")
    if redis is None:
        missing("redis-server is not installed (the fault tests restart a private broker)")
    port = free_port()
    server = Server(
        [str(redis), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        port,
        "redis-server",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    if url := os.environ.get("PERS_TEST_RPC_URL"):
        yield url
        return
    with running_anvil() as node:
        yield f"http://127.0.0.1:{node.port}"


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("pers-data"), master_key=None, relayer_key=None, rpc_url=None
    )


@dataclass
class Tenant:
    """A chain with the platform deployed and one tenant onboarded."""

    chain: Chain
    factory: str
    credit: str
    capped_credit: str
    rewards: str
    admin: LocalAccount
    minter: LocalAccount
    holders: list[LocalAccount]


def _onboard(chain: Chain) -> Tenant:
    factory = deploy_platform(chain).contracts["TokenFactory"]
    admin = dev_account(1)
    minter = Account.from_key(Web3.keccak(text="pers-test-minter"))
    specs = (
        CreditSpec(bytes(32), "Acme Points", "ACME"),
        CreditSpec(b"\1" * 32, "Capped", "CAP", decimals=2, max_supply=1000),
    )
    created, _ = create_tenant_contracts(
        chain,
        factory,
        Web3.keccak(text="acme:test"),
        admin.address,
        [minter.address],
        "ipfs://acme/{id}",
        specs,
    )
    rewards = created[ContractKind.REWARDS][0]
    registry = chain.contract("RewardsToken", rewards)
    for token_id, kind in ((REWARD_ID, TokenKind.REWARD), (STATUS_ID, TokenKind.STATUS)):
        tx = registry.functions.registerId(token_id, kind).transact({"from": admin.address})
        chain.w3.eth.wait_for_transaction_receipt(tx)
    credit, capped = created[ContractKind.CREDIT]
    # Holders are funded dev accounts, so they can also send transactions of their own.
    holders = [dev_account(i) for i in (2, 3, 4)]
    return Tenant(chain, factory, credit, capped, rewards, admin, minter, holders)


@pytest.fixture(scope="session")
def embedded_tenant(settings: Settings) -> Tenant:
    return _onboard(connect(settings, "embedded"))


@pytest.fixture(scope="session")
def anvil_tenant(settings: Settings, anvil_url: str) -> Tenant:
    return _onboard(connect(settings, "local", anvil_url))


@contextmanager
def clean(world: Tenant) -> Iterator[Tenant]:
    """The tenant's chain as onboarding left it, restored afterwards."""
    # Unlocked dev accounts sign `transact` calls on both nodes; anvil unlocks them by default.
    world.chain.w3.eth.default_account = world.admin.address
    snapshot = world.chain.rpc("evm_snapshot")
    yield world
    world.chain.rpc("evm_revert", snapshot)


@pytest.fixture(params=["embedded", "anvil"])
def tenant(request: pytest.FixtureRequest) -> Iterator[Tenant]:
    """Each test runs on both EVMs, from the same clean state."""
    with clean(request.getfixturevalue(f"{request.param}_tenant")) as world:
        yield world


@pytest.fixture
def anvil(anvil_tenant: Tenant) -> Iterator[Tenant]:
    """Anvil alone, for what only a JSON-RPC node can set up (`anvil_setCode` for EIP-7702 delegations)."""
    with clean(anvil_tenant) as world:
        yield world


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_databases.close()
    if IN_CI and _skipped:
        print(f"\nCI=true: {len(_skipped)} skipped test(s) count as failures: {_skipped[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def service_url(variable: str, default: str, port: int, what: str) -> str:
    """A service from PERS_TEST_* or the machine's default; missing means skipped (failed under CI)."""
    url = os.environ.get(variable)
    if url:
        return url
    if not reachable("127.0.0.1", port):
        missing(f"{what} is not running on 127.0.0.1:{port} (run scripts/services or set {variable})")
    return default


# Databases that live as long as the test session (the migrated template), dropped when it ends.
_session_databases = ExitStack()
_templates: dict[str, str] = {}  # server URL -> the name of its database at the migrations' head


def _migrated_template(base: str) -> str:
    """A database migrated once per session: copying it is far cheaper than migrating each new one."""
    if base not in _templates:
        url = _session_databases.enter_context(scratch_database(base, "pers_template"))
        migrate.upgrade(url)  # its connections are closed afterwards: a template must have none
        _templates[base] = url.rsplit("/", 1)[1]
    return _templates[base]


@contextmanager
def throwaway_postgres(migrated: bool = False) -> Iterator[str]:
    """A new database on the test server, dropped afterwards: empty, or `migrated` to the head."""
    base = service_url(
        "PERS_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test", 5432, "PostgreSQL"
    )
    with scratch_database(base, "pers_test", _migrated_template(base) if migrated else None) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database at the migrations' head (`pers db upgrade` on it has nothing to do)."""
    with throwaway_postgres(migrated=True) as url:
        yield url


@pytest.fixture(scope="session")
def broker_url() -> str:
    return service_url("PERS_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//", 5672, "RabbitMQ")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return service_url("PERS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379, "Redis")


OPERATOR_TOKEN = "op_test_" + uuid.uuid4().hex
# The shared stacks serve many tests from one address; the limits have tests of their own.
GENEROUS_LIMITS = {
    "rate_limit_per_key": 100_000,
    "rate_limit_per_address": 100_000,
    "rate_limit_auth_failures": 100_000,
    "rate_limit_signin_per_address": 100_000,
    "signin_failures_per_address": 100_000,
}
# Webhook retries within moments, so a test sees the backoff without waiting for it.
STACK_SETTINGS = {**GENEROUS_LIMITS, "webhook_retry_base_ms": 50}


@pytest.fixture(scope="session")
def embedded_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """`pers up`'s stack in this process: SQLite, the embedded EVM, Celery on its in-memory transport."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from backend.app import create_app
    from backend.kit.logging import configure as configure_logging
    from backend.runtime import Runtime, install
    from backend.worker import configure, start_in_process

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("embedded"),
        operator_token=SecretStr(OPERATOR_TOKEN),
        siwe_domains=["testserver"],
        broker_url="memory://",
        **STACK_SETTINGS,
    )
    configure_logging("warning")
    runtime = install(Runtime.from_settings(settings))
    configure(settings.broker_url, settings.queue)
    migrate.upgrade(settings.sqlalchemy_url())
    runtime.platform("embedded")
    stop = threading.Event()
    start_in_process(stop)
    with TestClient(create_app(runtime)) as client:
        yield Platform(client, OPERATOR_TOKEN, runtime.chain("embedded").w3, "testserver")
    stop.set()


PERS = [sys.executable, "-m", "backend.cli"]


@dataclass
class Stack:
    """The production processes on given services: `pers api` and `pers worker` processes (which a
    fault test may kill and start again), their logs under `data`."""

    platform: Platform
    env: dict[str, str]
    data: Path
    workers: list["subprocess.Popen[bytes]"]

    def start_worker(self) -> "subprocess.Popen[bytes]":
        log = open(self.data / f"worker-{len(self.workers)}.log", "w")  # noqa: SIM115
        worker = subprocess.Popen([*PERS, "worker"], env=self.env, cwd=PROJECT_ROOT, stdout=log, stderr=log)
        log.close()  # the child holds its own descriptor
        self.workers.append(worker)
        return worker


@contextmanager
def production_stack(
    data: Path, database_url: str, broker_url: str, redis_url: str, rpc_url: str, workers: int = 1, **env: str
) -> Iterator[Stack]:
    """`pers db upgrade`, then `pers api` and `workers` `pers worker` processes on the given services, driven
    over HTTP; every process is stopped afterwards. `env` adds PERS_* settings."""
    port = free_port()
    queue = f"pers-test-{uuid.uuid4().hex[:8]}"  # other runs on this broker keep to their own
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PERS_")}
    environ.update(
        PERS_DATA_DIR=str(data),
        PERS_DATABASE_URL=database_url,
        PERS_BROKER_URL=broker_url,
        PERS_QUEUE=queue,
        PERS_REDIS_URL=redis_url,
        PERS_NETWORK="local",
        PERS_LOCAL_RPC_URL=rpc_url,
        PERS_RELAY_RESEND_AFTER="1",  # the relay fault tests stop and drop transactions
        PERS_RELAY_REPLACE_AFTER="4",
        PERS_OPERATOR_TOKEN=OPERATOR_TOKEN,
        PERS_MASTER_KEY=uuid.uuid4().hex + uuid.uuid4().hex,
        PERS_JWT_SECRET=uuid.uuid4().hex,
        PERS_SIWE_DOMAINS=f'["127.0.0.1:{port}"]',
        **{f"PERS_{name.upper()}": str(value) for name, value in STACK_SETTINGS.items()},
        **{f"PERS_{name.upper()}": value for name, value in env.items()},
    )
    upgrade = subprocess.run(
        [*PERS, "db", "upgrade"], env=environ, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert upgrade.returncode == 0, upgrade.stderr
    api_log = open(data / "api.log", "w")  # noqa: SIM115
    api = subprocess.Popen(
        [*PERS, "api", "--port", str(port)],
        env=environ,
        cwd=PROJECT_ROOT,
        stdout=api_log,
        stderr=subprocess.STDOUT,
    )
    api_log.close()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    stack = Stack(Platform(client, OPERATOR_TOKEN, w3, f"127.0.0.1:{port}", environ), environ, data, [])
    try:
        for _ in range(workers):
            stack.start_worker()
        deadline = time.monotonic() + 180  # a loaded machine imports slowly
        while not reachable("127.0.0.1", port):
            assert api.poll() is None, (data / "api.log").read_text()
            assert time.monotonic() < deadline, "pers api did not start"
            time.sleep(0.1)
        yield stack
    finally:
        client.close()
        for proc in [api, *stack.workers]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [api, *stack.workers]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not broker_url.startswith("redis"):
            with kombu.Connection(broker_url) as connection:
                connection.default_channel.queue_delete(queue)


@pytest.fixture(scope="session")
def production_platform(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, broker_url: str, redis_url: str
) -> Iterator[Platform]:
    """The production processes: `pers db upgrade`, `pers worker` and `pers api` on Postgres, RabbitMQ,
    Redis and a fresh anvil, driven over HTTP."""
    data = tmp_path_factory.mktemp("production")
    with (
        running_anvil() as node,
        production_stack(data, postgres_url, broker_url, redis_url, f"http://127.0.0.1:{node.port}") as stack,
    ):
        yield stack.platform


@pytest.fixture(params=["embedded", "production"])
def platform(request: pytest.FixtureRequest) -> Platform:
    """Each API scenario runs on `pers up`'s embedded stack and on the production processes."""
    found: Platform = request.getfixturevalue(f"{request.param}_platform")
    return found
