"""`pers`: thin commands over the platform's services."""

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from backend.kit.errors import PersError
from backend.settings import Settings, get_settings

app = typer.Typer(help="PERS: loyalty and rewards on an EVM ledger.", no_args_is_help=True)
contracts_app = typer.Typer(help="Build the Solidity contracts.", no_args_is_help=True)
chain_app = typer.Typer(help="Deploy and inspect the platform contracts.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints JSON.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")
app.add_typer(chain_app, name="chain")
app.add_typer(bench_app, name="bench")

console = Console()
F = TypeVar("F", bound=Callable[..., Any])

NetworkOption = Annotated[
    str | None, typer.Option("--network", help="A network of hardhat-free-config.toml.")
]
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
    return get_settings()


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
def chain_deploy(
    network: NetworkOption = None, rpc_url: RpcOption = None, as_json: JsonOption = False
) -> None:
    """Deploy the platform contracts (idempotent: recorded addresses that still have code are reused)."""
    from backend.chain.client import connect
    from backend.chain.deploy import deploy_platform

    deployment = deploy_platform(connect(_settings(), network, rpc_url))
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


@app.command("up")
@reports_errors
def up(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Run the platform in one process on the embedded defaults (in-process EVM, data in PERS_DATA_DIR)."""
    from backend.app import create_app
    from backend.chain.client import connect
    from backend.chain.deploy import deploy_platform
    from backend.kit.logging import configure

    settings = _settings()
    configure(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.keystore()  # creates the development master key on first run
    chain = connect(settings)
    deployment = deploy_platform(chain)
    data_dir = settings.data_dir.resolve()
    console.print(f"[bold]PERS[/] on {chain.network.name} (chain {chain.chain_id}), data in {data_dir}")
    for name, address in deployment.contracts.items():
        console.print(f"  {name}: {address}")
    console.print(f"  API: http://{host}:{port}  docs: http://{host}:{port}/docs")
    sys.stdout.flush()
    serve(create_app(chain), host, port)
    console.print("stopped")


def serve(api: Any, host: str, port: int) -> None:
    """Serves until SIGINT/SIGTERM, then shuts down gracefully and returns (exit status 0)."""
    import signal
    from collections.abc import Iterator
    from contextlib import contextmanager

    import uvicorn

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

    Server(uvicorn.Config(api, host=host, port=port, log_level="warning")).run()


if __name__ == "__main__":
    app()
