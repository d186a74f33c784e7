"""Migrations apply from empty on SQLite and Postgres, and match the models exactly (`alembic check`)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from backend.kit import migrate
from backend.kit.db import make_engine
from backend.models import metadata
from tests.conftest import throwaway_postgres


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with throwaway_postgres() as url:
        yield url


def test_migrations_apply_from_empty_without_drift(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {t.name for t in metadata.sorted_tables} | {"alembic_version"} == tables
    migrate.check(empty_database)  # raises when models and migrations disagree
    migrate.upgrade(empty_database)  # at head: a second run is a no-op
