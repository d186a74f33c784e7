"""`pers`: thin commands over the platform's services."""

import json
import os
import sys
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from backend.kit.errors import PersError
from backend.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from backend.runtime import Runtime
    from backend.tenants.models import TenantEnvironment

# Plain help: the rich layout labels flags `<bool>` as if they took a value.
app = typer.Typer(
    help="PERS: loyalty and rewards on an EVM ledger.", no_args_is_help=True, rich_markup_mode=None
)
contracts_app = typer.Typer(help="Build the Solidity contracts.", no_args_is_help=True)
chain_app = typer.Typer(help="Deploy the platform contracts.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints JSON.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(chain_app, name="chain")
app.add_typer(bench_app, name="bench")

console = Console(soft_wrap=True)  # keys and tokens stay on one line, whatever the terminal width
F = TypeVar("F", bound=Callable[..., Any])

NetworkOption = Annotated[
    str | None, typer.Option("--network", help="A network of hardhat-free-config.toml.")
]
RequiredNetwork = Annotated[str, typer.Option("--network", help="A network of hardhat-free-config.toml.")]
RpcOption = Annotated[str | None, typer.Option("--rpc-url", help="Overrides the network's configured URL.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def reports_errors(command: F) -> F:
    """A domain error ends the command with a one-line reason and exit status 1."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PersError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(1) from None

    return run  # type: ignore[return-value]


def _settings() -> Settings:
    """The environment's settings; what the processes write (data directory, logs) is the owner's only."""
    os.umask(0o077)
    settings = get_settings()
    settings.check_secrets()
    return settings


@contracts_app.command("build")
@reports_errors
def contracts_build(
    check: Annotated[bool, typer.Option("--check", help="Fail if committed artifacts are stale.")] = False,
) -> None:
    """Compile contracts/src with the pinned solc into contracts/build/."""
    from backend.chain import compiler

    settings = _settings()
    build_dir = settings.contracts_dir / "build"
    artifacts = compiler.build(settings.chain_config().compiler, settings.contracts_dir)
    if check:
        stale = compiler.stale(artifacts, build_dir)
        if stale:
            typer.echo(f"error: stale artifacts, run `pers contracts build`: {', '.join(stale)}", err=True)
            raise typer.Exit(1)
        console.print(f"{len(artifacts)} artifacts match their sources")
        return
    compiler.write(artifacts, build_dir)
    console.print(f"built {', '.join(a.name for a in artifacts)} into {build_dir}")


@chain_app.command("deploy")
@reports_errors
def chain_deploy(network: RequiredNetwork, rpc_url: RpcOption = None, as_json: JsonOption = False) -> None:
    """Deploy the platform contracts (idempotent: recorded addresses that still have code are reused)."""
    from backend.chain.client import connect
    from backend.chain.deploy import deploy_platform

    settings = _settings()
    if settings.chain_config().network(network).embedded:
        raise PersError(
            "the embedded network lives and dies with one process (`pers up` deploys on it itself): "
            "deploy to a network with a node, e.g. --network local",
            code="ephemeral_network",
        )
    deployment = deploy_platform(connect(settings, network, rpc_url))
    if as_json:
        typer.echo(json.dumps(deployment.as_json()))
        return
    table = Table(title=f"{deployment.network} (chain {deployment.chain_id})")
    table.add_column("contract")
    table.add_column("address")
    for name, address in deployment.contracts.items():
        table.add_row(name, address)
    console.print(table)
    console.print("deployed now" if deployment.deployed_now else "already deployed: nothing sent")


@bench_app.command("gas")
@reports_errors
def bench_gas(network: NetworkOption = None, rpc_url: RpcOption = None, as_json: JsonOption = False) -> None:
    """Gas per operation (single vs batched) and tenant onboarding (clones vs full deployment)."""
    from backend.bench import gas
    from backend.chain.client import connect

    result = gas.run(connect(_settings(), network, rpc_url))
    typer.echo(json.dumps(result, indent=None if as_json else 2))


@bench_app.command("relay")
@reports_errors
def bench_relay(
    single: Annotated[int, typer.Option(help="Operations sent one per request.")] = 2000,
    batch: Annotated[int, typer.Option(help="Operations sent in batches of 1,000.")] = 10_000,
    clients: Annotated[int, typer.Option(help="Concurrent clients for the single run.")] = 32,
    workers: Annotated[int, typer.Option(help="`pers worker` processes.")] = 1,
    baseline: Annotated[int, typer.Option(help="Mints in the plain web3.py loop.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Operations per second from HTTP request to mined: starts its own anvil, a fresh database on the
    local Postgres, the broker's queue, `pers api` and `pers worker`; compares with a plain web3.py loop
    and with pre-signed groups sent straight to the node."""
    from backend.bench import relay

    result = relay.run(single, batch, clients, workers, baseline)
    typer.echo(json.dumps(result, indent=None if as_json else 2))


@bench_app.command("indexer")
@reports_errors
def bench_indexer(
    events: Annotated[int, typer.Option(help="Transfer events to generate and index.")] = 1_000_000,
    database_url: Annotated[
        str, typer.Option(help="A Postgres server: the bench creates and drops its databases there.")
    ] = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    as_json: JsonOption = False,
) -> None:
    """Backfill speed of `pers indexer` with balances maintained, on an anvil of its own, against the raw
    pipeline limit (eth_getLogs + JSON parse + COPY) and web3.py's event decoding; peak memory."""
    from backend.bench import indexer as bench

    result = bench.run(events, database_url)
    typer.echo(json.dumps(result, indent=None if as_json else 2))


db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
relayer_app = typer.Typer(help="The relayer wallets that pay gas.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(relayer_app, name="relayer")


def _runtime(settings: Settings) -> "Runtime":
    from backend.kit.logging import configure
    from backend.runtime import Runtime, install
    from backend.worker import configure as configure_celery

    configure(settings.log_level)
    runtime = install(Runtime.from_settings(settings))
    configure_celery(settings.broker_url, settings.queue)
    return runtime


@app.command("up")
@reports_errors
def up(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    demo: Annotated[bool, typer.Option("--demo", help="Seed a demo tenant and print its keys.")] = False,
) -> None:
    """Run the platform in one process on the embedded defaults: SQLite, in-process EVM, in-process
    worker (Celery on its in-memory transport). Data in PERS_DATA_DIR."""
    import threading

    from pydantic import SecretStr

    from backend import mirror
    from backend.auth.credentials import new_secret
    from backend.kit import datadir, migrate
    from backend.tenants.service import redeploy_ephemeral
    from backend.worker import start_in_process
    from indexer import process as indexer_process

    settings = _settings()
    ensure_port_free(host, port)
    lock = datadir.hold(settings.data_dir, port)  # released when the process ends
    restarted = (settings.data_dir / "pers.db").exists()
    generated_token = None
    if settings.operator_token is None:
        generated_token = new_secret("op")
        settings.operator_token = SecretStr(generated_token)
    if "siwe_domains" not in settings.model_fields_set:
        settings.siwe_domains = [f"localhost:{port}", f"127.0.0.1:{port}"]
    runtime = _runtime(settings)
    migrate.upgrade(settings.sqlalchemy_url())
    network = settings.network_for("test") or settings.network
    deployment = runtime.platform(network)
    redeploy_ephemeral(runtime, network)
    stop = threading.Event()
    start_in_process(stop)
    indexer_process.start(mirror.follower(runtime, network), runtime.engine, stop)
    console.print(
        f"[bold]PERS[/] on {network} (chain {deployment.chain_id}), data in {settings.data_dir.resolve()}"
    )
    for name, address in deployment.contracts.items():
        console.print(f"  {name}: {address}")
    console.print(f"  API: http://{host}:{port}  docs: http://{host}:{port}/docs")
    if generated_token:
        why = "a new one each run, the previous run's no longer works" if restarted else "this run only"
        console.print(f"  operator token ({why}; set PERS_OPERATOR_TOKEN to keep one): {generated_token}")
    if demo:  # through the API, once it answers
        operator = settings.operator_token.get_secret_value()
        threading.Thread(target=_seed_demo, args=(_local_url(host, port), operator), daemon=True).start()
    sys.stdout.flush()
    from backend.app import create_app

    api = create_app(runtime)
    _metrics_port(settings, api.state.exposition)
    try:
        serve(api, host, port, settings.trusted_proxies)
    finally:
        stop.set()
        lock.close()
    console.print("stopped")


def _local_url(host: str, port: int) -> str:
    """Where this process serves, as a client on the same machine reaches it."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _print_demo_tenant(project_key: str) -> None:
    from backend.demo import mall

    console.print(f"  demo: the {mall.SLUG} tenant ({mall.ADMIN_EMAIL}), project key (test) {project_key}")


def _seed_demo(base: str, operator_token: str) -> None:
    """`--demo`: the mall scenario (backend/demo/mall.py), seeded through the API on the first run; later
    runs find its tenant and print its project key (secret keys and the admin password were shown once)."""
    import time

    import httpx

    from backend.demo import mall

    with httpx.Client(base_url=base, timeout=60) as client:
        while True:  # the server starts in this process's main thread
            try:
                client.get("/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        try:
            found = mall.existing(client, operator_token)
            if found is not None:
                key = next(e["projectKey"] for e in found["environments"] if e["environment"] == "test")
                console.print("  demo admin password and shop keys: shown on the first run only")
                _print_demo_tenant(key)
                return
            console.print("  demo: seeding the mall scenario through the API…")
            sys.stdout.flush()
            seeded = mall.run(client, operator_token)
        except (mall.ScenarioError, httpx.HTTPError) as exc:
            message = f"  demo: seeding failed ({exc}); start on an empty data directory to seed again"
            console.print(message, markup=False)
            return
        finally:
            sys.stdout.flush()
    _print_demo_tenant(seeded.project_key)
    console.print(f"  demo admin password (shown once): {seeded.admin_password}")
    for shop in (seeded.office, *seeded.shops):
        console.print(f"  {shop.name} secret key (shown once): {shop.key}")
    console.print("  demo ready; try:")
    for line in mall.walkthrough(seeded, base):
        console.print(f"    {line}", markup=False, highlight=False)
    sys.stdout.flush()


@app.command("api")
@reports_errors
def api(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Processes on the port (default PERS_API_WORKERS).")
    ] = None,
) -> None:
    """Serve the HTTP API (production: PERS_DATABASE_URL, PERS_BROKER_URL and the secrets set)."""
    settings = _production_settings(*API_SECRETS)
    processes = workers or settings.api_workers
    if processes > 1 and settings.redis_url is None:
        raise PersError(
            "several API processes share their rate limits through Redis: set PERS_REDIS_URL",
            code="missing_setting",
        )
    ensure_port_free(host, port)
    if processes == 1:
        api = api_app()
        _metrics_port(settings, api.state.exposition)
        serve(api, host, port, settings.trusted_proxies)
        return
    _share_metrics(settings.data_dir / "api-metrics")
    if settings.metrics_port is not None:  # served by this supervising process
        from backend.ops import metrics

        _metrics_port(settings, metrics.Exposition(metrics.StateCollector(_runtime(settings))))
    serve("backend.cli:api_app", host, port, settings.trusted_proxies, processes)


def _share_metrics(directory: Path) -> None:
    """For the API processes started next: their request metrics go to files in `directory`
    (prometheus_client's multiprocess mode, which they read from the environment), and whichever of
    them is scraped serves the sum of all. Emptied first: counters start from zero with the processes,
    as a single process's do. (This supervising process imports nothing heavy: it listens at once.)"""
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


API_SECRETS = ("PERS_OPERATOR_TOKEN", "PERS_MASTER_KEY", "PERS_JWT_SECRET")
HEALTHCHECK_SECONDS = 60  # how long an API process may take to answer its supervisor (see serve())


def api_app() -> "FastAPI":
    """One `pers api` process's application (uvicorn's factory in each of several processes)."""
    import gc

    from backend.app import create_app

    api = create_app(_runtime(_production_settings(*API_SECRETS)))
    # What exists by now (modules, routes, schemas, mappers: ≈ 280,000 objects) lives as long as the
    # process: frozen out of the collector's sight, a full collection walks only what requests made.
    # Walking it all again took ≈ 8 % of a request's CPU.
    gc.freeze()
    return api


def _metrics_port(settings: Settings, exposition: Any) -> None:
    """PERS_METRICS_PORT: the metrics without a credential, for a scraper on a private network."""
    from backend.ops import metrics

    if settings.metrics_port is not None:
        ensure_port_free(settings.metrics_host, settings.metrics_port)
        metrics.serve(exposition, settings.metrics_host, settings.metrics_port)


def _production_settings(*required: str) -> Settings:
    """The production processes share secrets across machines: generated development defaults won't do,
    and their jobs need a broker another process can read (the in-memory one lives in one process)."""
    settings = _settings()
    values = {
        "PERS_OPERATOR_TOKEN": settings.operator_token,
        "PERS_MASTER_KEY": settings.master_key,
        "PERS_JWT_SECRET": settings.jwt_secret,
    }
    missing = [name for name in required if values[name] is None]
    if settings.broker_url.startswith("memory://"):
        missing.append("PERS_BROKER_URL (amqp://… or redis://…, not the in-memory default)")
    if missing:
        raise PersError(f"set {', '.join(missing)} for the production processes", code="missing_secret")
    return settings


def ensure_port_free(host: str, port: int) -> None:
    """Checked before anything is printed or migrated, so a busy port is one line, not a banner."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        raise PersError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port",
            code="port_in_use",
        ) from None


@app.command("worker")
@reports_errors
def worker() -> None:
    """Run the Celery worker (one job at a time), the outbox sweeper and the relay's pump: several
    workers share the lanes (operations' and platform transactions' nonces) and the queues."""
    import threading

    from backend.ops.metrics import Exposition
    from backend.redemptions import tasks as redemptions
    from backend.relay import exchanges, pump
    from backend.tiers import tasks as tiers
    from backend.worker import celery_app, start_sweeper

    settings = _production_settings("PERS_MASTER_KEY")
    runtime = _runtime(settings)
    _metrics_port(settings, Exposition(None))  # the worker's events; state gauges come from the API
    stop = threading.Event()
    start_sweeper(stop)
    pump.start(runtime, stop)
    exchanges.start(runtime, stop)
    redemptions.start(runtime, stop)
    tiers.start(runtime, stop)
    try:
        celery_app.worker_main(
            ["worker", "--pool=solo", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
        )
    finally:
        stop.set()


@app.command("indexer")
@reports_errors
def indexer_command(network: NetworkOption = None, rpc_url: RpcOption = None) -> None:
    """Mirror a network's tenant contracts into the database (default PERS_NETWORK). One instance per
    network leads (a Postgres advisory lock); another waits and takes over when the leader stops."""
    import signal
    import threading

    from backend import mirror
    from indexer import process

    settings = _settings()
    name = network or settings.network
    if settings.chain_config().network(name).embedded:
        raise PersError(
            "the embedded network lives in one process: `pers up` indexes it itself", code="ephemeral_network"
        )
    runtime = _runtime(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    process.run(mirror.follower(runtime, name, rpc_url), runtime.engine, stop)


audit_app = typer.Typer(help="Audit the chain mirror against the chain.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
@reports_errors
def audit_verify(
    network: RequiredNetwork,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant's slug.")],
    rpc_url: Annotated[
        str | None,
        typer.Option("--rpc-url", help="A node you trust (default: the network's configured URL)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the mirror of a tenant's environments on NETWORK against a node: every holder's balance
    against balanceOf, every supply, every event mapped to an operation or flagged external. Exits 1
    on any mismatch, naming the holder, the token and both amounts."""
    from rich.progress import Progress
    from sqlalchemy import select

    from backend.audit import verify
    from backend.auth.principal import TenantScope
    from backend.chain.client import connect
    from backend.tenants.models import Tenant, TenantEnvironment

    settings = _settings()
    if settings.chain_config().network(network).embedded:
        raise PersError(
            "the embedded network lives in its `pers up` process: ask it (POST /v1/audit/verify)",
            code="ephemeral_network",
        )
    runtime = _runtime(settings)
    with runtime.sessions() as session:
        found = session.scalar(select(Tenant).where(Tenant.slug == tenant))
        if found is None:
            raise PersError(f"no tenant with the slug {tenant!r}", code="tenant_not_found")
        environments = session.scalars(
            select(TenantEnvironment.environment)
            .where(TenantEnvironment.tenant_id == found.id, TenantEnvironment.network == network)
            .order_by(TenantEnvironment.environment)
        ).all()
    if not environments:
        raise PersError(f"tenant {tenant} has no environment on {network}", code="network_not_used")
    chain = connect(settings, network, rpc_url)
    reports = {}
    tasks: dict[str, Any] = {}
    with Progress(console=Console(stderr=True), transient=True) as bar:
        for environment in environments:

            def progress(stage: str, done: int, total: int, environment: str = environment) -> None:
                name = f"{environment}: {stage}"
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], advance=done)

            scope = TenantScope(found.id, environment)
            reports[environment] = verify.verify(runtime.sessions, scope, lambda _: chain, progress)
    ok = all(r.ok for r in reports.values())
    if as_json:
        shown = {e: r.model_dump(mode="json", by_alias=True) for e, r in reports.items()}
        typer.echo(json.dumps({"tenant": tenant, "network": network, "ok": ok, "reports": shown}))
    else:
        _print_audit(tenant, network, reports)
    if not ok:
        raise typer.Exit(1)


def _print_audit(tenant: str, network: str, reports: dict[str, Any]) -> None:
    summary = Table(title=f"{tenant} on {network}", title_justify="left")
    for column in (
        "environment",
        "block",
        "holders",
        "supplies",
        "events",
        "mapped",
        "external",
        "unmatched",
    ):
        summary.add_column(column, justify="left" if column == "environment" else "right")
    for environment, r in reports.items():
        holders = f"{r.holders.checked} ({r.holders.mismatched} off)"
        supplies = f"{r.supplies.checked} ({r.supplies.mismatched} off)"
        events = r.events
        summary.add_row(
            environment,
            str(r.as_of_block),
            holders,
            supplies,
            str(events.checked),
            str(events.mapped),
            str(events.external),
            str(events.unmatched),
        )
    console.print(summary)
    for environment, r in reports.items():
        for m in r.mismatches:
            who = f"holder {m.holder}" if m.holder else "supply"
            console.print(
                f"[red]mismatch[/] {environment}: {who} of token {m.contract} id {m.chain_token_id}: "
                f"mirror {m.mirror}, chain {m.chain}"
            )
        for e in r.unmatched_events:
            console.print(
                f"[red]unmatched[/] {environment}: {e.name} at {e.tx_hash}:{e.log_index} carries ref {e.ref} "
                f"of signer {e.signer}, which no operation of the books has"
            )
    bad = sum(r.holders.mismatched + r.supplies.mismatched + r.events.unmatched for r in reports.values())
    console.print("[green]the mirror equals the chain[/]" if not bad else f"[red]{bad} problem(s)[/]")


@db_app.command("upgrade")
@reports_errors
def db_upgrade() -> None:
    """Apply the migrations to PERS_DATABASE_URL (default: SQLite in the data directory)."""
    from backend.kit import datadir, migrate

    settings = _settings()
    datadir.secure(settings.data_dir)
    migrate.upgrade(settings.sqlalchemy_url())
    console.print("database at the latest migration")


@tenant_app.command("create")
@reports_errors
def tenant_create(
    name: Annotated[str, typer.Option(help="The tenant's name.")],
    slug: Annotated[str | None, typer.Option(help="URL-safe id; default from the name.")] = None,
    admin_email: Annotated[
        str | None, typer.Option(help="First admin; default admin@<slug>.example.")
    ] = None,
    network_test: Annotated[
        str | None, typer.Option("--network-test", help="The test environment's network.")
    ] = None,
    network_live: Annotated[
        str | None, typer.Option("--network-live", help="The live environment's network.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a tenant and deploy its contracts now, against the configured database and networks
    (on the embedded network they deploy when `pers up` starts on this data directory)."""
    import re

    from pydantic import ValidationError

    from backend.kit import datadir, jobs, outbox
    from backend.kit.db import unit_of_work
    from backend.tenants import service
    from backend.tenants.schemas import TenantCreate

    settings = _settings()
    datadir.ensure_free(
        settings.data_dir, "create the tenant through its API (POST /v1/tenants, operator token) or stop it"
    )
    if network_test:
        settings.test_network = network_test
    if network_live:
        settings.live_network = network_live
    runtime = _runtime(settings)
    if runtime.engine.dialect.name == "sqlite":  # the embedded database is migrated on use
        from backend.kit import migrate

        migrate.upgrade(settings.sqlalchemy_url())
    slug = slug or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64]
    try:
        data = TenantCreate(name=name, slug=slug, admin_email=admin_email or f"admin@{slug}.example")
    except ValidationError as exc:
        raise PersError(f"invalid tenant: {exc.errors()[0]['msg']}", code="invalid_tenant") from None
    chains = settings.chain_config()
    with unit_of_work(runtime.sessions) as session:
        tenant, admin, password = service.create_tenant(session, settings, runtime.keystore, data)
        # The embedded chain would die with this command: `pers up` deploys those environments on its own.
        ephemeral = {
            str(e.id)
            for e in service.environments(session, tenant.id)
            if e.network and chains.network(e.network).embedded
        }
        job_ids = outbox.on_commit(session)
        jobs_now = [
            m.id
            for m in session.scalars(outbox.select_by_ids(job_ids))
            if m.payload.get("environment_id") not in ephemeral
        ]
    if ephemeral:
        typer.echo(
            "note: embedded-network environments deploy when `pers up` starts on this data directory",
            err=True,
        )
    for job_id in jobs_now:  # deploy here and now rather than through a worker
        try:
            jobs.run(runtime, job_id)
        except jobs.RetryLater as later:  # the job stays in the outbox for `pers worker`
            typer.echo(f"warning: deployment deferred to the worker: {later}", err=True)
    with unit_of_work(runtime.sessions) as session:
        environments = [_env_json(e) for e in service.environments(session, tenant.id)]
    if as_json:
        admin_json = {"email": admin.email, "password": password}
        result = {"id": str(tenant.id), "name": tenant.name, "slug": tenant.slug, "admin": admin_json}
        typer.echo(json.dumps({**result, "environments": environments}))
        return
    console.print(f"tenant {tenant.slug} ({tenant.id}); admin {admin.email} password {password}")
    for env in environments:
        where = f"{env['network']}: {env['status']} {env['rewards'] or ''}"
        console.print(f"  {env['environment']}: {env['projectKey']} on {where}")


@relayer_app.command("status")
@reports_errors
def relayer_status(as_json: JsonOption = False) -> None:
    """The relayer wallets of the networks in use: balances, nonces (chain, pending, the relay's own),
    and the relay's queue; the same as GET /v1/relayer/status."""
    from backend.kit.db import unit_of_work
    from backend.ops import relayer

    runtime = _runtime(_settings())
    with unit_of_work(runtime.sessions) as session:
        report = relayer.status(runtime, session)
    chains = runtime.settings.chain_config()
    if any(chains.network(n.network).embedded for n in report.networks):
        typer.echo(
            "note: an embedded network lives in its `pers up` process; this command started a fresh one "
            "(ask that process: GET /v1/relayer/status)",
            err=True,
        )
    if as_json:
        typer.echo(report.model_dump_json(by_alias=True))
        return
    for network in report.networks:  # one narrow table per network: a whole address fits 80 columns
        title = f"{network.network} (chain {network.chain_id}; {', '.join(network.environments)})"
        if network.error:
            console.print(f"{title}: [red]unreachable ({network.error})[/]")
            continue
        table = Table(title=title, title_justify="left", box=None, padding=(0, 1, 0, 0), pad_edge=False)
        table.add_column("address", no_wrap=True)
        for column in ("ETH", "nonce", "pending", "local", "gap"):
            table.add_column(column, justify="right", no_wrap=True)
        for w in network.wallets:
            local, gap = ("-" if v is None else str(v) for v in (w.local_nonce, w.nonce_gap))
            eth = f"{Decimal(w.balance_wei) / 10**18:.4f}"
            table.add_row(w.address, eth, str(w.chain_nonce), str(w.pending_nonce), local, gap)
        console.print(table)
    depth = "unknown (no relay)" if report.queue_depth is None else str(report.queue_depth)
    age = report.oldest_queued_age_seconds
    console.print(f"queue: {depth}; oldest queued: {'-' if age is None else f'{age:.1f} s'}")


@relayer_app.command("fund")
@reports_errors
def relayer_fund(
    network: NetworkOption = None,
    amount: Annotated[
        Decimal, typer.Option("--amount", help="Ether added to each relayer wallet.", min=0)
    ] = Decimal(10),
    rpc_url: RpcOption = None,
) -> None:
    """Add ether to the relayer wallets of a local development network (anvil); mainnets are refused."""
    from backend.chain.client import connect
    from backend.kit.db import unit_of_work
    from backend.ops import relayer

    settings = _settings()
    name = network or settings.network_for("test") or settings.network
    config = settings.chain_config().network(name)
    relayer.check_fundable(config)  # before any connection is made
    if config.embedded:
        raise PersError(
            "the embedded network lives in the `pers up` process, whose relayer is a funded dev account: "
            "fund a network with a node, e.g. --network local",
            code="ephemeral_network",
        )
    chain = connect(settings, name, rpc_url)
    wei = int(amount * 10**18)
    runtime = _runtime(settings)
    with unit_of_work(runtime.sessions) as session:
        addresses = relayer.wallet_addresses(session, chain)
    for address in addresses:
        balance = relayer.fund(chain, address, wei)
        console.print(f"{name} {address}: {Decimal(balance) / 10**18} ETH")


def _env_json(env: "TenantEnvironment") -> dict[str, Any]:
    return {
        "environment": env.environment,
        "network": env.network,
        "projectKey": env.project_key,
        "status": env.status,
        "failureReason": env.failure_reason,
        "rewards": env.rewards_address,
        "admin": env.admin_address,
    }


def serve(api: Any, host: str, port: int, trusted_proxies: list[str], processes: int = 1) -> None:
    """Serves until SIGINT/SIGTERM, then shuts down gracefully and returns (exit status 0). Forwarding
    headers count only from `trusted_proxies` (uvicorn would trust any from 127.0.0.1 by default).
    Several processes share one socket (uvicorn's supervisor; `api` is then the factory's import
    path): each has its own event loop, database pool and caches."""
    import signal
    from collections.abc import Iterator
    from contextlib import contextmanager

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from backend.kit.http_protocol import HttpProtocol

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after shutdown, which would end the process with 130/143.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or [],
        factory=processes > 1,
        workers=processes,
        http=HttpProtocol,
        # The supervisor kills a process that does not answer its ping in time, and a new one must
        # start Python and import the app before it can answer: on a loaded machine that took more than
        # uvicorn's 5 s, and a killed process's successor met the same fate (a restart loop that burnt
        # more CPU than the requests).
        timeout_worker_healthcheck=HEALTHCHECK_SECONDS,
    )
    if processes == 1:
        Server(config).run()
    else:
        Multiprocess(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    app()
