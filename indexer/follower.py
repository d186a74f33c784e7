"""The follower: one network's tenant contracts, from its cursor to the node's head and on.

Each step first checks the block under the cursor is still the node's (a parent-hash walk over the
kept headers finds the common ancestor otherwise, and everything above it is reverted), then has
block ranges fetched and decoded ahead by the fetch workers (`indexer.chunks`: processes over HTTP,
threads for the embedded EVM) and writes them in order, one transaction per chunk. Ranges are sized by
the density of logs just seen; a failed range is retried (split, after a backoff) until it succeeds, so
no range is ever skipped and no chunk half written.

Discovery: the factory's `TenantContractCreated` logs are fetched with the contracts' logs; one whose
creator is the platform's deployer adds the new contract, whose logs are then fetched for the rest of
the chunk (and for chunks already fetched without it) before the chunk is written."""

import gc
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from indexer.chunks import (
    Chunk,
    Context,
    Halt,
    Reorged,
    Stopped,
    Worker,
    backoff,
    headers_of,
    in_process,
    start_process,
)
from indexer.rpc import HttpRpc, NodeUnavailable, Rpc, RpcError
from indexer.store import Position, StaleCursor, Store

log = structlog.get_logger()
OWNER = "0x8da5cb5b"  # owner()


@dataclass(frozen=True)
class Options:
    confirmations: int = 0  # an operation is confirmed this many blocks below the head
    poll_interval: float = 1.0  # seconds between looks at the head once caught up
    fetchers: int = 3  # fetch workers, each with one range in flight
    initial_range: int = 1  # blocks; then sized by the density of logs seen (a dense start stays small)
    max_range: int = 10_000
    target_logs: int = 5_000  # a range answering more than this shrinks; far fewer, it grows
    reorg_window: int = 64  # headers kept below the head; a deeper reorg stops the follower
    max_backoff: float = 10.0


@dataclass(frozen=True)
class Progress:
    """Told to the hooks after each write: the operations' view of the mirror."""

    network: str
    chain_id: int
    cursor: int  # the mirror holds every block up to here
    head: int
    safe: int  # blocks up to here are at the confirmation depth


Hook = Callable[[Progress], None]


class DeepReorg(Exception):
    """No kept header is on the node's chain any more: the reorg is deeper than the window."""


@dataclass
class Follower:
    network: str
    rpc: Rpc
    sessions: sessionmaker[Session]
    factory: str
    options: Options = field(default_factory=Options)
    hooks: Sequence[Hook] = ()
    is_leader: Callable[[], bool] = lambda: True

    def __post_init__(self) -> None:
        self.factory = self.factory.lower()
        self.size = min(self.options.initial_range, self.options.max_range)
        self.stop = threading.Event()
        self.halt: Halt = threading.Event()  # set to end the fetches of an abandoned step
        self.pool: Executor | None = None
        self.worker: Worker | None = None  # the threads' worker; processes each have their own
        self.chain_id = -1
        self.deployer = ""
        self.store = Store(self.network, self.chain_id)  # replaced once the chain id is known

    # --- the loop -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follows until `stop` is set or leadership is lost; node and database failures back off."""
        self.stop = stop
        failures = 0
        try:
            while not stop.is_set() and self.is_leader():
                try:
                    if self.chain_id < 0:
                        self._start()
                    progressed = self.step()
                    failures = 0
                except Stopped:
                    return
                except (RpcError, NodeUnavailable, StaleCursor, Reorged, DeepReorg) as exc:
                    failures += 1
                    log.warning("indexer.retry", network=self.network, error=str(exc)[:300])
                except Exception as exc:
                    failures += 1
                    log.exception("indexer.error", network=self.network)
                    if isinstance(exc, BrokenProcessPool):  # a worker died: start new ones
                        self._close()
                else:
                    if not progressed:
                        stop.wait(self.options.poll_interval)
                    continue
                self.store.forget()  # its memory may be ahead of a transaction that failed
                stop.wait(backoff(failures, self.options.max_backoff))
        finally:
            self._close()

    def _start(self) -> None:
        self.chain_id = int(self.rpc.call("eth_chainId", []), 16)
        owner = self.rpc.call("eth_call", [{"to": self.factory, "data": OWNER}, "latest"])
        self.deployer = "0x" + owner[-40:].lower()
        self.store = Store(self.network, self.chain_id)
        log.info("indexer.start", network=self.network, chain_id=self.chain_id, factory=self.factory)

    def step(self) -> bool:
        """One look at the node: a reorg repaired, or new blocks written, or nothing (False)."""
        with self.sessions() as session:
            position = self.store.position(session)
            kept = self.store.headers(session)
            contracts = self.store.contracts(session)
        head = int(self.rpc.call("eth_blockNumber", []), 16)
        if self._repair(position, kept, head):
            return True
        if position.block_number >= head:
            with self.sessions() as session, session.begin():
                self.store.touch(session, head)
            self._tell(position.block_number, head)
            return False
        self._follow(position, set(contracts), head)
        return True

    # --- reorgs -------------------------------------------------------------------------------------

    def _repair(self, position: Position, kept: dict[int, str], head: int) -> bool:
        """Reverts to the common ancestor when the block under the cursor left the node's chain."""
        if position.block_number < 0:
            return False
        if position.block_number <= head:
            header = headers_of(self.rpc, [position.block_number])[position.block_number]
            if header.hash == position.block_hash:
                return False
        candidates = sorted((n for n in kept if n <= min(head, position.block_number)), reverse=True)
        canonical = headers_of(self.rpc, candidates)
        ancestor = next((n for n in candidates if canonical[n].hash == kept[n]), None)
        if ancestor is None:
            raise DeepReorg(
                f"no kept header of {self.network} is on the node's chain ({self.options.reorg_window} kept)"
            )
        log.warning("indexer.reorg", network=self.network, cursor=position.block_number, ancestor=ancestor)
        with self.sessions() as session, session.begin():
            self.store.revert(session, ancestor, kept[ancestor], head)
        self._tell(ancestor, head)
        return True

    # --- fetching and writing ----------------------------------------------------------------------

    def _workers(self) -> Executor:
        """The fetch workers, started once the chain is known: processes when the node is over HTTP
        (forked, each with its own connections), threads sharing the embedded EVM otherwise."""
        if self.pool is None:
            with self.sessions() as session:
                copy = session.get_bind().dialect.name == "postgresql"
            context = Context(self.chain_id, self.factory, self.deployer, copy, self.options.max_backoff)
            if isinstance(self.rpc, HttpRpc):
                gc.freeze()  # the leader's objects stay out of the collector: their pages stay shared
                forked = multiprocessing.get_context("fork")
                self.halt, self.worker = forked.Event(), None
                timeout = self.rpc.client.timeout.read or 30.0
                self.pool = ProcessPoolExecutor(
                    self.options.fetchers,
                    mp_context=forked,
                    initializer=start_process,
                    initargs=(context, self.rpc.url, timeout, self.halt),
                )
            else:
                self.halt = threading.Event()
                self.worker = Worker(context, self.rpc, self.halt)
                self.pool = ThreadPoolExecutor(
                    self.options.fetchers, thread_name_prefix=f"fetch-{self.network}"
                )
        return self.pool

    def _close(self) -> None:
        if self.pool is not None:
            self.halt.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _submit(self, method: str, *args: Any) -> Future[Any]:
        pool = self._workers()
        if self.worker is None:
            return pool.submit(in_process, method, *args)
        return pool.submit(getattr(self.worker, method), *args)

    def _result(self, future: Future[Any]) -> Any:
        """The future's result; a stop meanwhile halts the workers (a retrying one raises `Stopped`)."""
        while True:
            try:
                return future.result(timeout=0.2)
            except TimeoutError:
                if self.stop.is_set():
                    self.halt.set()

    def _follow(self, position: Position, contracts: set[str], head: int) -> None:
        """Blocks (cursor, head] in chunks fetched ahead by the workers and written in order."""
        window = head - self.options.reorg_window + 1
        next_lo = position.block_number + 1
        in_flight: deque[Future[Chunk]] = deque()
        self._workers()
        self.halt.clear()
        try:
            while in_flight or next_lo <= head:
                while len(in_flight) < self.options.fetchers and next_lo <= head:
                    hi = min(next_lo + self.size - 1, head)
                    addresses = frozenset(contracts | {self.factory})
                    in_flight.append(self._submit("chunk", next_lo, hi, addresses, window))
                    next_lo = hi + 1
                chunk: Chunk = self._result(in_flight.popleft())
                self._resize(chunk.hi - chunk.lo + 1, sum(part.logs for part in chunk.parts))
                position = self._write(chunk, position, contracts, head, window)
                if self.stop.is_set() or not self.is_leader():
                    break
        finally:
            self.halt.set()  # fetches still running give up at their next retry
            for future in in_flight:
                future.cancel()
        self._tell(position.block_number, head)

    def _write(
        self, chunk: Chunk, position: Position, contracts: set[str], head: int, window: int
    ) -> Position:
        first = chunk.headers[chunk.lo]
        if position.block_hash is not None and first.parent_hash != position.block_hash:
            raise Reorged(f"block {chunk.lo} does not follow the cursor's block")
        created = [c for part in chunk.parts for c in part.created]
        new = [c for c in created if c.address not in contracts]
        contracts.update(c.address for c in new)
        missing = frozenset(contracts) - chunk.addresses  # discovered since the chunk was fetched
        if missing:
            chunk.parts.append(self._result(self._submit("part", chunk.lo, chunk.hi, missing, chunk.headers)))
        end = chunk.headers[chunk.hi]
        keep = [h for n, h in sorted(chunk.headers.items()) if n >= window]
        with self.sessions() as session, session.begin():
            self.store.write_chunk(
                session,
                position,
                end,
                head,
                [part.rows for part in chunk.parts],
                new,
                keep,
                head - self.options.reorg_window,
            )
        return Position(end.number, end.hash)

    def _resize(self, blocks: int, logs: int) -> None:
        """Next ranges aim at `target_logs` answers at the density just seen, at most twice the range
        just written (ranges in flight must not compound their growth)."""
        aim = 2 * blocks if logs == 0 else blocks * self.options.target_logs // logs
        self.size = max(1, min(self.options.max_range, 2 * blocks, aim))

    # --- hooks --------------------------------------------------------------------------------------

    def _tell(self, cursor: int, head: int) -> None:
        progress = Progress(
            self.network, self.chain_id, cursor, head, min(cursor, head - self.options.confirmations)
        )
        for hook in self.hooks:
            try:
                hook(progress)
            except Exception:
                log.exception("indexer.hook_failed", network=self.network)
