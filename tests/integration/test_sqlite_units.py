"""The embedded database (SQLite): a unit of work stays one transaction around its savepoints, which
pysqlite on its own would commit at their release (and whose write after another thread's commit
would fail with "database is locked")."""

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.kit.db import make_engine, read_snapshot


def test_a_savepoint_released_does_not_commit_the_unit_of_work(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'units.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE purchases (n INTEGER)")

    def seen() -> int:
        with engine.connect() as other:
            return int(other.exec_driver_sql("SELECT count(*) FROM purchases").scalar_one())

    with Session(engine) as session:
        session.execute(text("SELECT count(*) FROM purchases"))  # a read first, as a request does
        with session.begin_nested():
            session.execute(text("INSERT INTO purchases VALUES (1)"))
        assert seen() == 0  # released, yet not committed
        with session.begin_nested():
            session.execute(text("INSERT INTO purchases VALUES (2)"))
        session.rollback()
    assert seen() == 0  # the unit of work was undone as a whole
    engine.dispose()


def test_a_read_snapshot_holds_while_another_connection_commits(tmp_path: Path) -> None:
    """What the audit's verification reads (the mirror's balances, then its block) must be one view:
    without the snapshot, pysqlite's reads each see the latest commit, and an indexer committing a
    block between two of them made the report disagree with the chain (seen under load)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'snapshot.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE blocks (n INTEGER)")
        connection.exec_driver_sql("INSERT INTO blocks VALUES (1)")

    def latest(session: Session) -> int:
        return int(session.execute(text("SELECT max(n) FROM blocks")).scalar_one())

    def commit_block(n: int) -> None:
        with engine.begin() as other:
            other.exec_driver_sql(f"INSERT INTO blocks VALUES ({n})")

    for snapshot in (False, True):  # pysqlite's own reads move on; the snapshot's do not
        with Session(engine) as session:
            if snapshot:
                read_snapshot(session)
            first = latest(session)
            commit_block(first + 1)
            assert latest(session) == (first if snapshot else first + 1), snapshot
    engine.dispose()
