"""Processes the benches start and wait for: an anvil of their own, `pers api` (and workers) on a free
port. Every process started here is stopped by the context that started it."""

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from web3 import Web3

from backend.kit.errors import PersError
from backend.settings import PROJECT_ROOT

# `pers api` settings that lift the rate limits: a bench is one client sending many requests.
LIMITS = {
    name: "1000000"
    for name in (
        "RATE_LIMIT_PER_KEY",
        "RATE_LIMIT_PER_ADDRESS",
        "RATE_LIMIT_AUTH_FAILURES",
        "RATE_LIMIT_SIGNIN_PER_ADDRESS",
        "SIGNIN_FAILURES_PER_ADDRESS",
    )
}
ANVIL = PROJECT_ROOT / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(check: Any, what: str, timeout: float = 120) -> Any:
    """`check()`'s first true answer, polled every 50 ms; a bench error after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise PersError(f"bench: {what} did not happen", code="bench_failed")
        time.sleep(0.05)


@contextmanager
def anvil() -> Iterator[tuple[str, int]]:
    """An anvil on a free port: its URL and pid."""
    binary = str(ANVIL) if ANVIL.exists() else shutil.which("anvil")
    if binary is None:
        raise PersError("anvil not found: run `npm ci` in contracts/", code="bench_failed")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--silent"], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: Web3(Web3.HTTPProvider(url)).is_connected(), "anvil start", 30)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def pers_processes(env: dict[str, str], port: int, workers: int, logs: Path) -> Iterator[dict[str, int]]:
    """Runs `pers api` and `workers` workers (after `pers db upgrade`); yields their pids by name."""
    pers = [sys.executable, "-m", "backend.cli"]
    upgrade = subprocess.run(
        [*pers, "db", "upgrade"], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    if upgrade.returncode:
        raise PersError(f"bench: pers db upgrade failed: {upgrade.stderr[-500:]}", code="bench_failed")
    commands = [("api", [*pers, "api", "--port", str(port)])]
    commands += [(f"worker{i}", [*pers, "worker"]) for i in range(workers)]
    procs = []
    try:
        for name, command in commands:
            out = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
            procs.append((subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=out), out))
        try:  # the port answers once an API process has imported the app: a minute or more when busy
            wait(lambda: reachable(port) or procs[0][0].poll() is not None, "pers api start", 180)
        finally:
            if procs[0][0].poll() is not None:
                raise PersError(
                    f"bench: pers api exited: {(logs / 'api.log').read_text()[-800:]}", code="bench_failed"
                )
        yield {name: proc.pid for (name, _), (proc, _) in zip(commands, procs, strict=True)}
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, out in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            out.close()


def reachable(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def postgres_backends(server_url: str, db_url: str) -> list[int]:
    """The Postgres server processes serving the bench's database."""
    query = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
    with psycopg.connect(server_url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        return [row[0] for row in connection.execute(query, (db_url.rsplit("/", 1)[1],))]
