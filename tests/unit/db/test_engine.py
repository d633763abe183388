"""The engine (bertdemo.db.engine) against every backend of the `engine` fixture
(tests/conftest.py): a migrated SQLite file, and a PostgreSQL schema when BERTDEMO_DB_URL points at
a PostgreSQL database."""

import pytest


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
