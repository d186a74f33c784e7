"""Alembic environment: the database is the one PERS is configured for (or one given by the caller)."""

from alembic import context
from sqlalchemy.engine import Connection

from backend.kit.db import make_engine
from backend.models import metadata
from backend.settings import get_settings


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().sqlalchemy_url()
    engine = make_engine(url)
    with engine.connect() as connection:
        run(connection)
    engine.dispose()
