"""Bulk writes of the mirror. A chunk (events, balance changes, holdings, supplies, new contracts,
headers, the cursor) is written in ONE transaction, which first checks the cursor still stands where
the chunk starts: a replayed or concurrent chunk changes nothing. Events and balance changes go by
`COPY` on Postgres and multi-row inserts on SQLite.

Holdings and supplies are kept in memory by the leader (the only writer), loaded on first use and
dropped whenever a transaction fails, so a chunk costs no read of them. On Postgres the fetch workers
hand the rows over already encoded as `COPY` text with their summed deltas (`encode`): the leader only
streams them."""

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, text, tuple_, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from backend.kit.db import utcnow
from indexer.decoder import CHANGE_COLUMNS, EVENT_COLUMNS, Created, Decoded
from indexer.models import BalanceChange, BlockHeader, Cursor, Event, Holding, Supply, TenantContract

Key = tuple[str, int, str]  # (contract, token id, holder)
TokenKey = tuple[str, int]
LOAD_BATCH = 500


@dataclass
class Encoded:
    """Decoded rows as `COPY` text (Postgres), with their deltas summed by holding."""

    events: bytes
    changes: bytes
    deltas: dict[Key, int]


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def encode(decoded: Decoded) -> Encoded:
    """`COPY` text of the rows. Their fields are numbers, hex strings and event names, which need no
    escaping, or None; only an event's `data` (JSON, which may quote any string) is escaped."""
    events = "".join(
        "\t".join(["\\N" if v is None else str(v) for v in row[:-1]])
        + (
            "\t\\N\n"
            if row[-1] is None
            else "\t" + json.dumps(row[-1], separators=(",", ":")).translate(_ESCAPES) + "\n"
        )
        for row in decoded.events
    )
    changes = "".join("\t".join(map(str, row)) + "\n" for row in decoded.changes)
    return Encoded(events.encode(), changes.encode(), deltas(decoded))


def deltas(decoded: Decoded) -> dict[Key, int]:
    summed: dict[Key, int] = defaultdict(int)
    for change in decoded.changes:
        summed[(change[5], change[6], change[7])] += change[8]
    return summed


class StaleCursor(Exception):
    """The cursor moved under us (another writer, or a replay): nothing was written."""


@dataclass(frozen=True)
class Header:
    number: int
    hash: str
    parent_hash: str


@dataclass(frozen=True)
class Position:
    block_number: int  # -1: nothing indexed
    block_hash: str | None


class Store:
    def __init__(self, network: str, chain_id: int) -> None:
        self.network, self.chain_id = network, chain_id
        self.amounts: dict[Key, int] = {}
        self.supplies: dict[TokenKey, tuple[int, int]] = {}  # supply, holders

    def forget(self) -> None:
        """After a failed transaction the memory may be ahead of the database."""
        self.amounts.clear()
        self.supplies.clear()

    # --- reads -------------------------------------------------------------------------------------

    def position(self, session: Session) -> Position:
        row = session.get(Cursor, self.network)
        if row is None:
            return Position(-1, None)
        if row.chain_id != self.chain_id:
            raise RuntimeError(
                f"the mirror of {self.network} is of chain {row.chain_id}, the node serves {self.chain_id}"
            )
        return Position(row.block_number, row.block_hash)

    def contracts(self, session: Session) -> dict[str, int]:
        """Known tenant contracts and the block each was created in."""
        rows = session.execute(
            select(TenantContract.address, TenantContract.block_number).where(
                TenantContract.chain_id == self.chain_id
            )
        )
        return {address: block for address, block in rows}

    def headers(self, session: Session) -> dict[int, str]:
        rows = session.execute(
            select(BlockHeader.number, BlockHeader.hash).where(BlockHeader.chain_id == self.chain_id)
        )
        return {number: block_hash for number, block_hash in rows}

    # --- writes ------------------------------------------------------------------------------------

    def write_chunk(
        self,
        session: Session,
        start: Position,
        end: Header,
        head: int,
        parts: Sequence[Decoded | Encoded],
        created: Sequence[Created],
        headers: Sequence[Header],
        keep_headers_from: int,
    ) -> None:
        """Everything of blocks (start, end] in the caller's transaction; raises `StaleCursor` (writing
        nothing) unless the cursor is at `start`."""
        if self._postgres(session):
            # Asynchronous commit (docs/indexer.md, "Writing a chunk"): a server crash may lose the
            # last chunks, but each whole and with the cursor that re-fetches it.
            session.execute(text("SET LOCAL synchronous_commit = off"))
        self._claim(session, start)
        if created:
            session.execute(
                insert(TenantContract),
                [
                    {
                        "chain_id": self.chain_id,
                        "address": c.address,
                        "tenant_key": c.tenant_key,
                        "kind": c.kind,
                        "block_number": c.block_number,
                    }
                    for c in created
                ],
            )
        summed: dict[Key, int] = defaultdict(int)
        for part in parts:
            if isinstance(part, Decoded) and self._postgres(session):
                part = encode(part)
            self._copy(session, Event, EVENT_COLUMNS, part.events)
            self._copy(session, BalanceChange, CHANGE_COLUMNS, part.changes)
            for key, delta in (part.deltas if isinstance(part, Encoded) else deltas(part)).items():
                summed[key] += delta
        self._apply(session, summed)
        if headers:
            session.execute(
                insert(BlockHeader),
                [
                    {
                        "chain_id": self.chain_id,
                        "number": h.number,
                        "hash": h.hash,
                        "parent_hash": h.parent_hash,
                    }
                    for h in headers
                ],
            )
        session.execute(
            delete(BlockHeader).where(
                BlockHeader.chain_id == self.chain_id, BlockHeader.number < keep_headers_from
            )
        )
        self._move(session, end.number, end.hash, head)

    def revert(self, session: Session, ancestor: int, ancestor_hash: str | None, head: int) -> None:
        """Undoes every block above `ancestor`: their events, balance changes, contracts and headers
        go, and their deltas come off holdings and supplies; the cursor returns to the ancestor."""
        self._lock(session)
        deltas: dict[Key, int] = defaultdict(int)
        rows = session.execute(
            select(
                BalanceChange.contract, BalanceChange.token_id, BalanceChange.holder, BalanceChange.delta
            ).where(BalanceChange.chain_id == self.chain_id, BalanceChange.block_number > ancestor)
        )
        for contract, token_id, holder, delta in rows:
            deltas[(contract, token_id, holder)] -= delta
        self._apply(session, deltas)
        for table in (Event, BalanceChange):
            session.execute(
                delete(table).where(table.chain_id == self.chain_id, table.block_number > ancestor)
            )
        session.execute(
            delete(TenantContract).where(
                TenantContract.chain_id == self.chain_id, TenantContract.block_number > ancestor
            )
        )
        session.execute(
            delete(BlockHeader).where(BlockHeader.chain_id == self.chain_id, BlockHeader.number > ancestor)
        )
        self._move(session, ancestor, ancestor_hash, head)

    def _lock(self, session: Session) -> Cursor | None:
        return session.scalar(select(Cursor).where(Cursor.network == self.network).with_for_update())

    def _claim(self, session: Session, start: Position) -> None:
        row = self._lock(session)
        now_at = Position(-1, None) if row is None else Position(row.block_number, row.block_hash)
        if now_at != start:
            raise StaleCursor(f"cursor at {now_at}, chunk starts at {start}")
        if row is None:
            session.add(
                Cursor(
                    network=self.network,
                    chain_id=self.chain_id,
                    block_number=-1,
                    head_number=-1,
                    updated_at=utcnow(),
                )
            )
            session.flush()

    def _move(self, session: Session, number: int, block_hash: str | None, head: int) -> None:
        session.execute(
            update(Cursor)
            .where(Cursor.network == self.network)
            .values(block_number=number, block_hash=block_hash, head_number=head, updated_at=utcnow())
        )

    def touch(self, session: Session, head: int) -> None:
        """Records the node's head (for lag) when there is nothing new to write."""
        session.execute(
            update(Cursor).where(Cursor.network == self.network).values(head_number=head, updated_at=utcnow())
        )

    def _postgres(self, session: Session) -> bool:
        return session.get_bind().dialect.name == "postgresql"

    def _copy(
        self, session: Session, table: Any, columns: Sequence[str], rows: bytes | Sequence[Sequence[Any]]
    ) -> None:
        """`COPY` of encoded rows on Postgres; a multi-row insert on SQLite."""
        if not rows:
            return
        if isinstance(rows, bytes):
            cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY {table.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write(rows)
            return
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])

    def _apply(self, session: Session, deltas: dict[Key, int]) -> None:
        """Adds `deltas` to holdings, and their sums to supplies with the holder counts that follow."""
        deltas = {key: delta for key, delta in deltas.items() if delta}
        if not deltas:
            return
        self._load(session, deltas)
        tokens: dict[TokenKey, list[int]] = {}
        holdings = []
        for key, delta in deltas.items():
            before = self.amounts[key]
            after = before + delta
            if after < 0:
                raise RuntimeError(f"balance of {key} would go below zero: the mirror is missing events")
            self.amounts[key] = after
            holdings.append((self.chain_id, *key, after))
            token = tokens.setdefault((key[0], key[1]), [0, 0])
            token[0] += delta
            token[1] += (after > 0) - (before > 0)
        supplies = []
        for token_key, (supply_delta, holders_delta) in tokens.items():
            supply, holders = self.supplies[token_key]
            self.supplies[token_key] = (supply + supply_delta, holders + holders_delta)
            supplies.append((self.chain_id, *token_key, supply + supply_delta, holders + holders_delta))
        self._upsert(session, Holding, holdings)
        self._upsert(session, Supply, supplies)

    def _load(self, session: Session, deltas: dict[Key, int]) -> None:
        missing = [key for key in deltas if key not in self.amounts]
        for start in range(0, len(missing), LOAD_BATCH):
            batch = missing[start : start + LOAD_BATCH]
            rows = session.execute(
                select(Holding.contract, Holding.token_id, Holding.holder, Holding.amount).where(
                    Holding.chain_id == self.chain_id,
                    tuple_(Holding.contract, Holding.token_id, Holding.holder).in_(batch),
                )
            )
            for contract, token_id, holder, amount in rows:
                self.amounts[(contract, token_id, holder)] = amount
            for key in batch:
                self.amounts.setdefault(key, 0)
        tokens = {(key[0], key[1]) for key in deltas if (key[0], key[1]) not in self.supplies}
        if tokens:
            found = session.execute(
                select(Supply.contract, Supply.token_id, Supply.supply, Supply.holders).where(
                    Supply.chain_id == self.chain_id,
                    tuple_(Supply.contract, Supply.token_id).in_(list(tokens)),
                )
            )
            for address, token, total, holders in found:
                self.supplies[(address, token)] = (total, holders)
            for token_key in tokens:
                self.supplies.setdefault(token_key, (0, 0))

    def _upsert(self, session: Session, table: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows (in the table's column order) inserted, or replacing the row of the same key: on
        Postgres through `COPY` into a temporary table and one `INSERT … ON CONFLICT`."""
        columns = [c.name for c in table.__table__.columns]
        keys = [c.name for c in table.__table__.primary_key.columns]
        values = [c for c in columns if c not in keys]
        if not self._postgres(session):
            statement = sqlite.insert(table)
            update = {c: statement.excluded[c] for c in values}
            session.connection().execute(
                statement.on_conflict_do_update(index_elements=keys, set_=update),
                [dict(zip(columns, row, strict=True)) for row in rows],
            )
            return
        name, stage = table.__tablename__, f"{table.__tablename__}_stage"
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {name}) ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY {stage} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
        conflict = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {assignments}"
        cursor.execute(f"INSERT INTO {name} SELECT * FROM {stage} {conflict}")
