"""One writer of the mirror per network: a Postgres session-level advisory lock, held on a connection
of its own for as long as the process leads. A standby waits on it; when the leader dies its
connection closes and Postgres releases the lock to the next. On SQLite the one process leads.

The lock is the election, not the only safety: every chunk also checks the cursor it starts from."""

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = structlog.get_logger()
RETRY = 1.0  # seconds between a standby's attempts


def lock_key(network: str) -> int:
    digest = hashlib.sha256(f"pers-indexer:{network}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    """Whether this process still holds the lock (its connection answers)."""

    def __init__(self, connection: Connection | None) -> None:
        self.connection = connection

    def __call__(self) -> bool:
        if self.connection is None:
            return True
        try:
            self.connection.execute(select(1))
            self.connection.commit()
            return True
        except DBAPIError:
            return False


@contextmanager
def leadership(engine: Engine, network: str, stop: threading.Event) -> Iterator[Leadership | None]:
    """Leadership of `network`, once won (None if `stop` was set while waiting); released on exit."""
    if engine.dialect.name != "postgresql":
        yield Leadership(None)
        return
    key = lock_key(network)
    connection = engine.connect()
    try:
        waiting = False
        while not connection.execute(select(func.pg_try_advisory_lock(key))).scalar():
            if not waiting:
                log.info("indexer.standby", network=network)
                waiting = True
            connection.rollback()  # no transaction left open while waiting
            if stop.wait(RETRY):
                yield None
                return
        connection.commit()
        log.info("indexer.leader", network=network)
        yield Leadership(connection)
    finally:
        try:
            connection.execute(select(func.pg_advisory_unlock(key)))
            connection.commit()
        except DBAPIError:
            pass  # the connection died: the lock went with it
        connection.close()
