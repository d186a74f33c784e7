"""The embedded database (SQLite): a unit of work stays one transaction around its savepoints, which
pysqlite on its own would commit at their release (and whose write after another thread's commit
would fail with "database is locked")."""

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.kit.db import make_engine


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
