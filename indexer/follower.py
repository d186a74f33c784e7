"""The follower: one network's tenant contracts, from its cursor to the node's head and on.

Each step first checks the block under the cursor is still the node's (a parent-hash walk over the
kept headers finds the common ancestor otherwise, and everything above it is reverted), then fetches
block ranges in parallel threads and writes them in order, one transaction per chunk. Ranges grow
while answers are small and shrink on errors, timeouts and large answers; a failed range is retried
(split, after a backoff) until it succeeds, so no range is ever skipped and no chunk half written.

Discovery: the factory's `TenantContractCreated` logs are fetched with the contracts' logs; one whose
creator is the platform's deployer adds the new contract, whose logs are then fetched for the rest of
the chunk (and for chunks already fetched without it) before the chunk is written."""

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from indexer.decoder import Created, created, decode
from indexer.rpc import NodeUnavailable, Rpc, RpcError
from indexer.store import Header, Position, StaleCursor, Store

log = structlog.get_logger()
OWNER = "0x8da5cb5b"  # owner()


@dataclass(frozen=True)
class Options:
    confirmations: int = 0  # an operation is confirmed this many blocks below the head
    poll_interval: float = 1.0  # seconds between looks at the head once caught up
    fetchers: int = 3  # range fetches in flight
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


class Stopped(Exception):
    pass


class Reorged(Exception):
    """The node's chain changed under a fetch: the step ends and the next one repairs the mirror."""


class DeepReorg(Exception):
    """No kept header is on the node's chain any more: the reorg is deeper than the window."""


@dataclass
class Fetched:
    lo: int
    hi: int
    addresses: frozenset[str]
    logs: list[dict[str, Any]]
    headers: dict[int, Header]


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
        self.halt = threading.Event()  # set to end the fetches of an abandoned step
        self.chain_id = -1
        self.deployer = ""
        self.store = Store(self.network, self.chain_id)  # replaced once the chain id is known

    # --- the loop -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follows until `stop` is set or leadership is lost; node and database failures back off."""
        self.stop = stop
        failures = 0
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
            except Exception:
                failures += 1
                log.exception("indexer.error", network=self.network)
            else:
                if not progressed:
                    stop.wait(self.options.poll_interval)
                continue
            self.store.forget()  # its memory may be ahead of a transaction that failed
            stop.wait(self._backoff(failures))

    def _start(self) -> None:
        self.chain_id = int(self.rpc.call("eth_chainId", []), 16)
        owner = self.rpc.call("eth_call", [{"to": self.factory, "data": OWNER}, "latest"])
        self.deployer = "0x" + owner[-40:].lower()
        self.store = Store(self.network, self.chain_id)
        log.info("indexer.start", network=self.network, chain_id=self.chain_id, factory=self.factory)

    def _backoff(self, failures: int) -> float:
        return float(min(self.options.max_backoff, 0.1 * 2 ** min(failures, 10)))

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
            header = self._headers([position.block_number])[position.block_number]
            if header.hash == position.block_hash:
                return False
        candidates = sorted((n for n in kept if n <= min(head, position.block_number)), reverse=True)
        canonical = self._headers(candidates)
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

    def _follow(self, position: Position, contracts: set[str], head: int) -> None:
        """Blocks (cursor, head] in chunks fetched ahead in parallel and written in order."""
        window = head - self.options.reorg_window + 1
        next_lo = position.block_number + 1
        in_flight: deque[Future[Fetched]] = deque()
        self.halt.clear()
        with ThreadPoolExecutor(self.options.fetchers, thread_name_prefix=f"fetch-{self.network}") as pool:
            try:
                while in_flight or next_lo <= head:
                    while len(in_flight) < self.options.fetchers and next_lo <= head:
                        hi = min(next_lo + self.size - 1, head)
                        addresses = frozenset(contracts | {self.factory})
                        in_flight.append(pool.submit(self._fetch, next_lo, hi, addresses, window))
                        next_lo = hi + 1
                    chunk = in_flight.popleft().result()
                    position = self._write(chunk, position, contracts, head, window)
                    if self.stop.is_set() or not self.is_leader():
                        break
            finally:
                self.halt.set()  # fetches still running give up at their next retry
                for future in in_flight:
                    future.cancel()
        self._tell(position.block_number, head)

    def _write(
        self, chunk: Fetched, position: Position, contracts: set[str], head: int, window: int
    ) -> Position:
        logs = self._complete(chunk, contracts)
        new = [c for c in self._creations(logs) if c.address not in contracts]
        if new:
            contracts.update(c.address for c in new)
            logs = self._complete(chunk, contracts)
        self._check(chunk, position, logs)
        # Of the factory's logs, only the platform's creations belong to the mirror.
        logs = [e for e in logs if e["address"].lower() != self.factory or self._creations([e])]
        end = chunk.headers[chunk.hi]
        keep = [h for n, h in sorted(chunk.headers.items()) if n >= window]
        with self.sessions() as session, session.begin():
            self.store.write_chunk(
                session,
                position,
                end,
                head,
                decode(self.chain_id, logs),
                new,
                keep,
                head - self.options.reorg_window,
            )
        return Position(end.number, end.hash)

    def _complete(self, chunk: Fetched, contracts: set[str]) -> list[dict[str, Any]]:
        """The chunk's logs with those of contracts it was fetched without (discovered since)."""
        missing = frozenset(contracts) - chunk.addresses
        if missing:
            chunk.logs = sorted(
                chunk.logs + self._logs(chunk.lo, chunk.hi, missing),
                key=lambda entry: (int(entry["blockNumber"], 16), int(entry["logIndex"], 16)),
            )
            chunk.addresses |= missing
        return chunk.logs

    def _creations(self, logs: list[dict[str, Any]]) -> list[Created]:
        mine = (created(entry) for entry in logs if entry["address"].lower() == self.factory)
        return [event for event in mine if event is not None and event.creator == self.deployer]

    def _check(self, chunk: Fetched, position: Position, logs: list[dict[str, Any]]) -> None:
        """The chunk continues the cursor's chain, its headers link up, its logs are of those blocks."""
        first = chunk.headers[chunk.lo]
        if position.block_hash is not None and first.parent_hash != position.block_hash:
            raise Reorged(f"block {chunk.lo} does not follow the cursor's block")
        numbers = sorted(chunk.headers)
        for a, b in itertools.pairwise(numbers):
            if b == a + 1 and chunk.headers[b].parent_hash != chunk.headers[a].hash:
                raise Reorged(f"headers {a} and {b} do not link: the chain changed while fetching")
        for entry in logs:
            header = chunk.headers.get(int(entry["blockNumber"], 16))
            if header is not None and header.hash != entry["blockHash"]:
                raise Reorged(
                    f"a log of block {header.number} is of another block: the chain changed while fetching"
                )

    def _fetch(self, lo: int, hi: int, addresses: frozenset[str], window: int) -> Fetched:
        """Headers first (every block in the window, the ends elsewhere), then the logs."""
        numbers = sorted({lo, hi, *range(max(lo, window), hi + 1)})
        headers = self._retrying(lambda: self._headers(numbers))
        logs = self._logs(lo, hi, addresses)
        self._resize(hi - lo + 1, len(logs))
        return Fetched(lo, hi, addresses, logs, headers)

    def _resize(self, blocks: int, logs: int) -> None:
        """Next ranges aim at `target_logs` answers at the density just seen, at most twice the range
        just fetched (fetches finishing together must not compound their growth)."""
        aim = 2 * blocks if logs == 0 else blocks * self.options.target_logs // logs
        self.size = max(1, min(self.options.max_range, 2 * blocks, aim))

    def _headers(self, numbers: list[int]) -> dict[int, Header]:
        answers = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        headers = {}
        for number, block in zip(numbers, answers, strict=True):
            if block is None:
                raise Reorged(f"block {number} is no longer on the node")
            headers[number] = Header(number, block["hash"], block["parentHash"])
        return headers

    def _logs(self, lo: int, hi: int, addresses: frozenset[str]) -> list[dict[str, Any]]:
        """`eth_getLogs` for blocks lo..hi; an error halves the range (after a backoff when the node
        did not answer), a single block is retried until it succeeds."""
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
            self.size = max(1, self.size // 2)
            if hi > lo and split:
                mid = (lo + hi) // 2
                return self._logs(lo, mid, addresses) + self._logs(mid + 1, hi, addresses)
            self.stop.wait(self._backoff(failures))

    def _retrying(self, call: Callable[[], Any]) -> Any:
        failures = 0
        while True:
            self._check_halt()
            try:
                return call()
            except (RpcError, NodeUnavailable) as exc:
                failures += 1
                log.info("indexer.node_unavailable", error=str(exc)[:200])
                self.stop.wait(self._backoff(failures))

    def _check_halt(self) -> None:
        if self.stop.is_set() or self.halt.is_set():
            raise Stopped

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
