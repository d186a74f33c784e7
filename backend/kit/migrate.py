"""Applying and checking Alembic migrations from code (`pers db upgrade`, tests)."""

from alembic import command
from alembic.config import Config

from backend.settings import PROJECT_ROOT


def config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(config(url), revision)


def check(url: str) -> None:
    """Raises when the models and the migrations disagree (`alembic check`)."""
    command.check(config(url))
