"""Fetch workers: a range of blocks made ready to write. A worker fetches the range's headers (every
block of the reorg window, the ends elsewhere) and its logs, checks that the headers link and every log
is of its header's block, keeps the platform's contract creations, decodes the logs and, on Postgres,
encodes the rows as `COPY` text. Over HTTP the workers are processes, so fetching, JSON parsing,
decoding and encoding use the second core while the leader writes the previous chunk; for the embedded
EVM they are threads. The leader keeps the cursor check, discovery and the one transaction per chunk.

A range the node refuses (too many results, range too large) is halved at once; a node that does not
answer is retried after a backoff, then the range halved; a single block is retried until it succeeds.
Nothing is skipped. A set `halt` makes a retrying worker give up (`Stopped`)."""

import itertools
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from indexer.decoder import Created, Decoded, created, decode
from indexer.rpc import HttpRpc, NodeUnavailable, Rpc, RpcError
from indexer.store import Encoded, Header, encode

log = structlog.get_logger()

Rows = Decoded | Encoded


class Stopped(Exception):
    pass


class Reorged(Exception):
    """The node's chain changed under a fetch: the step ends and the next one repairs the mirror."""


class Halt(Protocol):
    """A `threading.Event` or a `multiprocessing.Event`."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def set(self) -> None: ...

    def clear(self) -> None: ...


@dataclass(frozen=True)
class Context:
    chain_id: int
    factory: str  # lowercase
    deployer: str  # the factory's owner: only its creations belong to the platform
    copy: bool  # encode rows as COPY text (Postgres)
    max_backoff: float


@dataclass
class Part:
    """The rows of some contracts' logs over a chunk's blocks."""

    rows: Rows
    created: list[Created]  # the platform's contract creations among them
    logs: int  # logs the node answered


@dataclass
class Chunk:
    lo: int
    hi: int
    addresses: frozenset[str]  # the contracts whose logs `parts` hold
    headers: dict[int, Header]
    parts: list[Part]


def backoff(failures: int, limit: float) -> float:
    return float(min(limit, 0.1 * 2 ** min(failures, 10)))


def headers_of(rpc: Rpc, numbers: list[int]) -> dict[int, Header]:
    answers = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    headers = {}
    for number, block in zip(numbers, answers, strict=True):
        if block is None:
            raise Reorged(f"block {number} is no longer on the node")
        headers[number] = Header(number, block["hash"], block["parentHash"])
    return headers


class Worker:
    def __init__(self, context: Context, rpc: Rpc, halt: Halt) -> None:
        self.context, self.rpc, self.halt = context, rpc, halt

    def chunk(self, lo: int, hi: int, addresses: frozenset[str], window: int) -> Chunk:
        """Blocks lo..hi: headers first, then the logs of `addresses` (the factory among them)."""
        numbers = sorted({lo, hi, *range(max(lo, window), hi + 1)})
        headers = self._retrying(lambda: headers_of(self.rpc, numbers))
        for a, b in itertools.pairwise(numbers):
            if b == a + 1 and headers[b].parent_hash != headers[a].hash:
                raise Reorged(f"headers {a} and {b} do not link: the chain changed while fetching")
        return Chunk(lo, hi, addresses, headers, [self.part(lo, hi, addresses, headers)])

    def part(self, lo: int, hi: int, addresses: frozenset[str], headers: dict[int, Header]) -> Part:
        """The rows of `addresses`' logs over lo..hi, which must be of the blocks `headers` names."""
        logs = self.logs(lo, hi, addresses)
        for entry in logs:
            header = headers.get(int(entry["blockNumber"], 16))
            if header is not None and header.hash != entry["blockHash"]:
                raise Reorged(
                    f"a log of block {header.number} is of another block: the chain changed while fetching"
                )
        factory, deployer = self.context.factory, self.context.deployer
        mine = []
        kept = []
        for entry in logs:  # of the factory's logs, only the platform's creations belong to the mirror
            if entry["address"].lower() != factory:
                kept.append(entry)
            elif (found := created(entry)) is not None and found.creator == deployer:
                mine.append(found)
                kept.append(entry)
        decoded = decode(self.context.chain_id, kept)
        return Part(encode(decoded) if self.context.copy else decoded, mine, len(logs))

    def logs(self, lo: int, hi: int, addresses: frozenset[str]) -> list[dict[str, Any]]:
        failures = 0
        while True:
            self._check_halt()
            query = {"fromBlock": hex(lo), "toBlock": hex(hi), "address": sorted(addresses)}
            try:
                logs: list[dict[str, Any]] = self.rpc.call("eth_getLogs", [query])
                return logs
            except RpcError as exc:  # too many results, range too large, or a bad day
                failures += 1
                split = True
                log.info("indexer.range_refused", lo=lo, hi=hi, error=exc.message[:200])
            except NodeUnavailable as exc:  # down, or too slow for this range: try again, then smaller
                failures += 1
                split = failures >= 2
                log.info("indexer.node_unavailable", lo=lo, hi=hi, error=str(exc)[:200])
            if hi > lo and split:
                mid = (lo + hi) // 2
                return self.logs(lo, mid, addresses) + self.logs(mid + 1, hi, addresses)
            self.halt.wait(backoff(failures, self.context.max_backoff))

    def _retrying(self, call: Callable[[], Any]) -> Any:
        failures = 0
        while True:
            self._check_halt()
            try:
                return call()
            except (RpcError, NodeUnavailable) as exc:
                failures += 1
                log.info("indexer.node_unavailable", error=str(exc)[:200])
                self.halt.wait(backoff(failures, self.context.max_backoff))

    def _check_halt(self) -> None:
        if self.halt.is_set():
            raise Stopped


_worker: Worker | None = None  # a worker process's own


def start_process(context: Context, url: str, timeout: float, halt: Halt) -> None:
    """A forked worker process's initializer: it lets go of the sockets it inherited (the leader's
    database connections: the leader's lock must end with the leader), leaves when the leader is gone,
    and opens its own connections to the node."""
    global _worker
    devnull = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                os.dup2(devnull, int(name))  # the number stays taken: no object of the parent's reuses it
        except OSError:  # the listing's own descriptor, closed since
            pass
    parent = os.getppid()
    threading.Thread(target=_leave_with, args=(parent,), daemon=True).start()
    _worker = Worker(context, HttpRpc(url, timeout), halt)


def _leave_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def in_process(method: str, *args: Any) -> Any:
    """`Worker.<method>(*args)` on the worker process's own worker."""
    assert _worker is not None, "start_process did not run in this process"
    return getattr(_worker, method)(*args)
