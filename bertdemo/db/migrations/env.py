"""Alembic environment: run by Alembic for every command, from bertdemo.db.migrate.

No alembic.ini: bertdemo.db.migrate builds the Config. It passes either an open connection
(`config.attributes["connection"]`, used by `db.engine.init_db` so that the whole migration runs
in the caller's transaction and under its lock) or a database URL (`config.attributes["url"]`, the
command line). The models' metadata is the autogenerate target, so `python -m bertdemo migrate
check` and `revision --autogenerate` compare the database with bertdemo/db/models.py.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bertdemo.db.engine import make_engine
from bertdemo.db.models import Base
from bertdemo.db.search import outside_models

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=outside_models,  # the text search's FTS5 table and trigram indexes (db/search.py)
    )


def run_migrations_offline() -> None:
    """`--sql`: print the SQL instead of running it."""
    context.configure(url=config.attributes.get("url") or config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():  # a no-op inside the caller's transaction
            context.run_migrations()
        return
    engine = make_engine(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
