"""Text search from an index instead of a LIKE scan (bertdemo/db/search.py).

SQLite: an FTS5 table with the trigram tokenizer over examples.raw_text and examples.text
(external content: it stores the index only, the texts stay in examples), filled once here and kept
in step by three triggers; an update that leaves both texts alone (a label) does not touch it.
PostgreSQL: GIN trigram indexes (pg_trgm) on the same columns, which ILIKE '%...%' uses. Where the
extension cannot be created (not installed, no privilege) or SQLite lacks FTS5/trigram, the search
scans as before and this says so in the log. None of these objects are in the ORM models.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy.exc import DBAPIError

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("bertdemo.db.migrations")

# frozen copies of the names in bertdemo/db/search.py (a migration must not change when the code does)
FTS = "examples_fts"
TRGM = {"ix_examples_raw_text_trgm": "raw_text", "ix_examples_text_trgm": "text"}
SQLITE_UP = [
    (f"CREATE VIRTUAL TABLE {FTS} USING fts5(raw_text, text, content='examples', content_rowid='id', "
     "tokenize='trigram')"),
    f"""CREATE TRIGGER {FTS}_ai AFTER INSERT ON examples BEGIN
        INSERT INTO {FTS}(rowid, raw_text, text) VALUES (new.id, new.raw_text, new.text); END""",
    f"""CREATE TRIGGER {FTS}_ad AFTER DELETE ON examples BEGIN
        INSERT INTO {FTS}({FTS}, rowid, raw_text, text) VALUES ('delete', old.id, old.raw_text, old.text); END""",
    f"""CREATE TRIGGER {FTS}_au AFTER UPDATE OF raw_text, text ON examples BEGIN
        INSERT INTO {FTS}({FTS}, rowid, raw_text, text) VALUES ('delete', old.id, old.raw_text, old.text);
        INSERT INTO {FTS}(rowid, raw_text, text) VALUES (new.id, new.raw_text, new.text); END""",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",  # index the rows already there
]


def upgrade() -> None:
    bind = op.get_bind()
    try:
        # a savepoint: on PostgreSQL a failed statement would otherwise abort the whole migration
        with bind.begin_nested():
            if bind.dialect.name == "sqlite":
                for statement in SQLITE_UP:
                    bind.exec_driver_sql(statement)
            elif bind.dialect.name == "postgresql":
                _pg_trigram_indexes(bind)
    except DBAPIError as exc:
        log.warning("text search will scan with LIKE: no search index could be made on %s (%s)",
                    bind.dialect.name, str(exc.orig).splitlines()[0])


def _pg_trigram_indexes(bind) -> None:
    bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # the operator class by its schema: the extension may live outside the search_path's first schema
    schema = bind.exec_driver_sql("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                                  "ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'").scalar_one()
    for name, column in TRGM.items():
        bind.exec_driver_sql(f'CREATE INDEX {name} ON examples USING gin ({column} "{schema}".gin_trgm_ops)')


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("ai", "ad", "au"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {FTS}_{trigger}")
        bind.exec_driver_sql(f"DROP TABLE IF EXISTS {FTS}")
    elif bind.dialect.name == "postgresql":
        for name in TRGM:
            bind.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
        # the extension stays: other databases' objects or schemas may use it
