"""Database plumbing: the declarative base, the exact-integer column type, engines and sessions.

One owner commits: the request's session dependency (or a task's unit of work) commits or rolls
back; services only `flush()`."""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Dialect,
    MetaData,
    Numeric,
    String,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

UINT256_MAX = 2**256 - 1
POOL_SIZE, MAX_OVERFLOW = 10, 10
PING_IDLE_AFTER = 5.0  # seconds a Postgres connection lies idle before its next checkout pings it
POOL_CAPACITY = POOL_SIZE + MAX_OVERFLOW  # connections one engine hands out at most

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def among(column: ColumnElement[Any], dialect: str, name: str = "ids") -> ColumnElement[bool]:
    """`column` is one of the list given as parameter `name` when the statement runs: one array
    parameter on Postgres (a thousand placeholders cost more to render, convert and parse than the
    statement costs to run, and the statement's text is the same whatever the list's length, so it
    is built once), an expanding `IN (…)` elsewhere (SQLite)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Uint256(TypeDecorator[int]):
    """A uint256 as NUMERIC(78, 0) on Postgres and as decimal text on SQLite; `int` in Python."""

    impl = String(78)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0))
        return dialect.type_descriptor(String(78))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT256_MAX:
            raise ValueError(f"not a uint256: {value!r}")
        return Decimal(value) if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class Timestamped:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=POOL_SIZE,
            max_overflow=MAX_OVERFLOW,
        )

        @event.listens_for(engine, "connect")
        def sqlite_pragmas(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "savepoint")
        def begin_before_savepoint(connection: Any, _: str | None) -> None:
            # pysqlite begins its transaction at the first write: a SAVEPOINT before any would begin a
            # deferred one that its RELEASE commits (a unit of work cut in two), and whose write after a
            # read fails at once ("database is locked") if another thread committed in between. A real
            # transaction holding the write lock first keeps the savepoint inside the unit of work.
            if not connection.connection.dbapi_connection.in_transaction:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW)

    @event.listens_for(engine, "checkin")
    def idle_since(_: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(connection: Any, record: Any, _: Any) -> None:
        # A connection that served a moment ago is alive: a ping on every checkout was a round trip
        # per request. One idle for `PING_IDLE_AFTER` may have outlived a database restart: a failed
        # ping makes the pool replace it (a fresh connection has no `idle_since`).
        if time.monotonic() - record.info.get("idle_since", float("inf")) < PING_IDLE_AFTER:
            return
        try:
            connection.execute("SELECT 1")
            connection.rollback()
        except psycopg.OperationalError as exc:
            raise DisconnectionError("the connection did not answer its ping") from exc

    @event.listens_for(engine, "connect")
    def binary_lists(connection: Any, _: Any) -> None:
        # Array parameters (`among`, the pump's outcomes) go in binary: psycopg's default for a list
        # is text, each element dumped and quoted in Python (a thousand UUIDs: 1.9 ms, binary 0.3 ms).
        connection.adapters.register_dumper(list, ListBinaryDumper)

    return engine


def read_snapshot(session: Session) -> None:
    """Every read of the session's transaction from one snapshot, whatever commits meanwhile:
    REPEATABLE READ on Postgres; on SQLite a deferred BEGIN, which WAL holds to the snapshot of its
    first read (pysqlite itself begins only at the first write: each read alone saw the latest commit)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        session.connection().exec_driver_sql("BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A worker task's transaction: committed when the block ends, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def scratch_database(server_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new Postgres database on the server of `server_url` (tests and benchmarks), dropped afterwards:
    empty, or a copy of the database named `template` (which nobody may be connected to)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_dsn = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
