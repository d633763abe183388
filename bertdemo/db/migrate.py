"""Database migrations: Alembic, with the environment inside the package (bertdemo/db/migrations).

`db.engine.init_db(engine)` calls `upgrade(engine)` at every start, so an app start always runs on
the newest schema. Databases made before migrations existed (by `Base.metadata.create_all`:
the tables of revision 0001 and no `alembic_version` table) are stamped 0001 first, then
upgraded, under a lock so that two processes starting at once migrate one after the other.
`python -m bertdemo migrate ...` (cli/migrate.py) runs any Alembic command through this module.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
BASELINE = "0001"  # the schema that `Base.metadata.create_all` made before there were migrations
# the tables of BASELINE: a database with these and no alembic_version predates migrations
BASELINE_TABLES = frozenset({"users", "examples", "label_events", "model_versions", "training_runs", "scores"})
# key of the PostgreSQL advisory lock that makes two processes starting at once migrate one after
# the other (the second then finds the database current); any fixed 64-bit number would do
_PG_LOCK_KEY = 0x6265727464656D6F  # "bertdemo"


class MigrationError(RuntimeError):
    """The database is in a state the migrations cannot safely take over."""


def alembic_config(*, connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config without alembic.ini: the scripts come from the package. With
    `connection`, commands run on it (inside its transaction); with `url`, on a new engine."""
    cfg = Config(stdout=sys.stdout)  # Config's default is the sys.stdout of import time
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # numbered revision files (0001_initial_schema.py); %% because the option is interpolated
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # the URL goes in attributes, not an option: options are %-interpolated, URLs may hold %40 etc.
    if connection is not None:
        cfg.attributes["connection"] = connection
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # only if versions/ were emptied
        raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision a database is at; None for an empty one and for one that predates migrations."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision` (default: the newest) in one transaction, adopting a database that
    predates migrations first. Does nothing, and takes no lock, when it is there already."""
    target = head_revision() if revision == "head" else revision
    with engine.connect() as conn:
        if current_revision(conn) == target:
            return
    with _locked_transaction(engine) as conn:
        # read again under the lock: another process may have migrated meanwhile
        if current_revision(conn) == target:
            return
        _adopt_pre_migration_schema(conn)
        command.upgrade(alembic_config(connection=conn), revision)
    log.info("database migrated to %s", target)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate back to `revision` ("base": drop every table) in one transaction."""
    with _locked_transaction(engine) as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def stamp(engine: Engine, revision: str) -> None:
    """Record `revision` as applied without running anything."""
    with _locked_transaction(engine) as conn:
        command.stamp(alembic_config(connection=conn), revision)


@contextlib.contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's migration lock until it ends:
    PostgreSQL gets a transaction-scoped advisory lock, SQLite takes its write lock up front
    (BEGIN IMMEDIATE; others wait up to the busy timeout). Commits on success, rolls back on error."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # pysqlite starts transactions lazily (before DML only): begin explicitly, so the DDL is
            # transactional and a second process waits instead of failing half-way
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _adopt_pre_migration_schema(conn: Connection) -> None:
    """A database made by the old `create_all` has the BASELINE tables and no version: stamp it
    BASELINE so the upgrade starts after it instead of failing on CREATE TABLE."""
    if current_revision(conn) is not None:
        return
    present = set(inspect(conn).get_table_names())
    found = present & BASELINE_TABLES
    if not found:
        return  # empty database (or only unrelated tables): the migrations create everything
    if found != BASELINE_TABLES:
        raise MigrationError(
            f"the database has some of bertdemo's tables ({', '.join(sorted(found))}) but not "
            f"{', '.join(sorted(BASELINE_TABLES - found))}, and no alembic_version: it was not made by "
            "bertdemo; refusing to migrate it. Point BERTDEMO_DB_URL at an empty database.")
    log.warning("the database predates migrations (no alembic_version table): recording it as revision %s",
                BASELINE)
    command.stamp(alembic_config(connection=conn), BASELINE)


def _next_rev_id() -> str:
    """Revisions are numbered 0001, 0002, ... so that file names sort in order."""
    ids = [s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    return f"{max((int(i) for i in ids if i.isdigit()), default=0) + 1:04d}"
