"""Alembic migrations (bertdemo/db/migrations, bertdemo.db.migrate) on every backend of the `engine`
fixtures: a database from before migrations is adopted without losing rows, the models and the
migrations cannot drift apart, and every revision downgrades and upgrades again."""

from __future__ import annotations

import multiprocessing
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.cli import migrate as migrate_cli
from bertdemo.db import examples, migrate, search, versions
from bertdemo.db.engine import init_db, make_engine
from bertdemo.db.models import Base, Example, text_key

LABELS = ("negative", "neutral", "positive")

# A frozen copy of the schema that `store.Base.metadata.create_all` made before there were
# migrations (bertdemo/store.py at commit 536008d): what databases deployed then contain.
# Never change it to follow bertdemo/db/models.py: it stands for databases that exist.
LEGACY = MetaData()
Table("users", LEGACY,
      Column("id", Integer, primary_key=True),
      Column("name", String(64), nullable=False, unique=True),
      Column("role", String(16), nullable=False),
      Column("password_hash", String(256), nullable=False),
      Column("created_at", DateTime, nullable=False))
Table("examples", LEGACY,
      Column("id", Integer, primary_key=True),
      Column("text", Text, nullable=False),
      Column("raw_text", Text, nullable=False),
      Column("text_key", String(40), nullable=False, unique=True),
      Column("external_id", String(64), index=True),
      Column("source", String(16), nullable=False),
      Column("meta", JSON, nullable=False),
      Column("created_at", DateTime, nullable=False),
      Column("label", String(32), index=True),
      Column("version", Integer, nullable=False),
      Column("updated_at", DateTime),
      Column("updated_by", String(64)))
Table("label_events", LEGACY,
      Column("id", Integer, primary_key=True),
      Column("example_id", Integer, ForeignKey("examples.id"), nullable=False, index=True),
      Column("label", String(32)),
      Column("previous_label", String(32)),
      Column("user", String(64), nullable=False),
      Column("source", String(16), nullable=False),
      Column("created_at", DateTime, nullable=False, index=True),
      Column("version", Integer, nullable=False))
Table("model_versions", LEGACY,
      Column("id", Integer, primary_key=True),
      Column("name", String(32), nullable=False, unique=True),
      Column("path", Text, nullable=False),
      Column("base_model", Text, nullable=False),
      Column("created_at", DateTime, nullable=False),
      Column("created_by", String(64), nullable=False),
      Column("metrics", JSON, nullable=False),
      Column("report", Text, nullable=False),
      Column("train_config", JSON, nullable=False),
      Column("is_active", Boolean, nullable=False),
      Column("run_id", Integer, ForeignKey("training_runs.id")))
Table("training_runs", LEGACY,
      Column("id", Integer, primary_key=True),
      Column("status", String(16), nullable=False, index=True),
      Column("user", String(64), nullable=False),
      Column("started_at", DateTime, nullable=False),
      Column("finished_at", DateTime),
      Column("config", JSON, nullable=False),
      Column("step", Integer, nullable=False),
      Column("total_steps", Integer, nullable=False),
      Column("message", Text, nullable=False),
      Column("history", JSON, nullable=False),
      Column("version_id", Integer))
Table("scores", LEGACY,
      Column("example_id", Integer, ForeignKey("examples.id"), primary_key=True),
      Column("version_id", Integer, ForeignKey("model_versions.id"), primary_key=True),
      Column("probs", JSON, nullable=False),
      Column("predicted", String(32), nullable=False),
      Column("confidence", Float, nullable=False),
      Column("entropy", Float, nullable=False, index=True))

T0 = datetime(2025, 3, 1, 12, 30, 5)


def differences(engine, metadata: MetaData = Base.metadata) -> list:
    """What `alembic revision --autogenerate` would write to turn the database into `metadata`."""
    with engine.connect() as conn:
        opts = {"compare_type": True, "include_name": search.outside_models}  # as in migrations/env.py
        return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)


def revision(engine) -> str | None:
    with engine.connect() as conn:
        return migrate.current_revision(conn)


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def fill_legacy(engine) -> dict[str, int]:
    """Rows in every table of a pre-migration database, written with the old schema only."""
    t = LEGACY.tables
    with engine.begin() as c:
        c.execute(insert(t["users"]), [{"name": "ann", "role": "admin", "password_hash": auth.hash_password(
            "password1"), "created_at": T0}])
        c.execute(insert(t["examples"]), [
            {"text": f"text {i}", "raw_text": f"@x text {i}", "text_key": text_key(f"text {i}"),
             "external_id": str(i), "source": "dataset", "meta": {"i": i}, "created_at": T0,
             "label": LABELS[i % 3], "version": 1, "updated_at": T0, "updated_by": "dataset"} for i in range(1, 4)])
        c.execute(insert(t["label_events"]), [
            {"example_id": i, "label": LABELS[i % 3], "previous_label": None, "user": "dataset", "source": "dataset",
             "created_at": T0, "version": 1} for i in range(1, 4)])
        c.execute(insert(t["training_runs"]), [{"status": "succeeded", "user": "system", "started_at": T0,
                                                "finished_at": T0, "config": {"epochs": 2}, "step": 10,
                                                "total_steps": 10, "message": "ok", "history": [{"step": 10}]}])
        c.execute(insert(t["model_versions"]), [{"name": "v1", "path": "/models/v1", "base_model": "m",
                                                 "created_at": T0, "created_by": "system", "metrics": {"f1": 0.8},
                                                 "report": "", "train_config": {}, "is_active": True, "run_id": 1}])
        c.execute(insert(t["scores"]), [{"example_id": i, "version_id": 1, "probs": [0.2, 0.3, 0.5],
                                         "predicted": "positive", "confidence": 0.5, "entropy": 1.0}
                                        for i in range(1, 4)])
    return row_counts(engine)


def row_counts(engine) -> dict[str, int]:
    with engine.connect() as c:
        return {name: c.scalar(select(func.count()).select_from(t)) for name, t in LEGACY.tables.items()}


def test_revision_0001_is_the_schema_of_deployed_databases(bare_engine):
    migrate.upgrade(bare_engine, migrate.BASELINE)
    assert revision(bare_engine) == "0001"
    assert differences(bare_engine, LEGACY) == []
    assert tables(bare_engine) == set(migrate.BASELINE_TABLES) | {"alembic_version"}


def test_a_database_from_before_migrations_is_adopted_and_keeps_every_row(bare_engine):
    LEGACY.create_all(bare_engine)  # what the old store.init_db did
    before = fill_legacy(bare_engine)
    assert "alembic_version" not in tables(bare_engine)

    init_db(bare_engine)

    assert revision(bare_engine) == migrate.head_revision()
    assert row_counts(bare_engine) == before and all(before.values())
    assert {"login_attempts", "alembic_version"} <= tables(bare_engine)
    assert differences(bare_engine) == []
    # the old rows work with the new code
    assert auth.authenticate(bare_engine, "ann", "password1")
    with Session(bare_engine) as s, s.begin():
        ex = s.get(Example, 1)
        assert (ex.meta, ex.created_at, ex.label) == ({"i": 1}, T0, "neutral")
        examples.set_label(s, 1, "negative", "ann", "annotator", LABELS, expected_version=1)
        assert versions.active_version(s).name == "v1" and examples.score_of(s, 1, 1).probs == [0.2, 0.3, 0.5]
    init_db(bare_engine)  # current: nothing to do
    assert row_counts(bare_engine)["label_events"] == 4


def test_models_and_migrations_agree(engine):
    """Fails when a model in bertdemo/db/models.py changes without a migration: add a revision
    (`bertdemo migrate revision --autogenerate -m "what changed"`) and check it."""
    assert revision(engine) == migrate.head_revision()
    assert differences(engine) == []


def test_the_drift_check_sees_a_model_change_without_a_migration(engine):
    changed = MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["users"].append_column(Column("email", String(128)))
    changed.tables["examples"].c.raw_text.type = String(500)
    Index("ix_scores_predicted", changed.tables["scores"].c.predicted)
    Table("notes", changed, Column("id", Integer, primary_key=True))
    kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in differences(engine, changed)}
    assert {"add_column", "modify_type", "add_index", "add_table"} <= kinds


def test_downgrade_to_base_and_upgrade_again(engine):
    with Session(engine) as s, s.begin():
        examples.import_examples(s, [examples.NewExample("kept", "kept", "neutral")], "import", "ann", LABELS)
    migrate.downgrade(engine, "0001")
    assert "login_attempts" not in tables(engine) and row_counts(engine)["examples"] == 1
    migrate.downgrade(engine, "base")
    assert tables(engine) <= {"alembic_version"} and revision(engine) is None
    init_db(engine)
    assert revision(engine) == migrate.head_revision() and differences(engine) == []


def _start(url: str, barrier, results) -> None:  # noqa: ANN001 - multiprocessing objects
    engine = make_engine(url)
    barrier.wait()
    try:
        init_db(engine)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - e.g. "table users already exists" would be the bug
        results.put(repr(exc))


def test_processes_starting_at_once_migrate_one_after_the_other(db_url):
    """Several app processes starting on an empty database: one migrates, the others wait for
    its lock and then find the database current."""
    ctx = multiprocessing.get_context("fork")  # no re-import of the test session: well under a second
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_start, args=(db_url, barrier, results)) for _ in range(3)]
    [p.start() for p in procs]
    [p.join(60) for p in procs]
    [p.kill() for p in procs if p.is_alive()]
    assert [results.get(timeout=1) for _ in procs] == ["ok"] * 3
    engine = make_engine(db_url)
    try:
        assert revision(engine) == migrate.head_revision() and differences(engine) == []
    finally:
        engine.dispose()


def test_a_failed_migration_changes_nothing(bare_engine):
    LEGACY.create_all(bare_engine)
    fill_legacy(bare_engine)
    with bare_engine.begin() as c:  # a stray table in the way of revision 0002
        c.exec_driver_sql("CREATE TABLE login_attempts (x INTEGER)")
    with pytest.raises(DBAPIError, match="login_attempts"):
        init_db(bare_engine)
    # one transaction: not even the stamp of 0001 is left behind
    assert "alembic_version" not in tables(bare_engine) and revision(bare_engine) is None
    assert all(row_counts(bare_engine).values())


def test_a_database_with_only_some_of_the_tables_is_refused(bare_engine):
    LEGACY.tables["users"].create(bare_engine)
    with pytest.raises(migrate.MigrationError, match="not made by bertdemo"):
        init_db(bare_engine)
    assert tables(bare_engine) == {"users"}  # nothing was changed


def test_command_line(db_url, monkeypatch, capsys):
    monkeypatch.setenv("BERTDEMO_DB_URL", db_url)
    assert migrate_cli.main(["upgrade", "head"]) == 0
    assert capsys.readouterr().out.strip() == f"database at {migrate.head_revision()}"
    assert migrate_cli.main(["current"]) == 0
    assert f"{migrate.head_revision()} (head)" in capsys.readouterr().out
    assert migrate_cli.main(["history"]) == 0
    assert "<base> -> 0001" in capsys.readouterr().out
    assert migrate_cli.main(["check"]) == 0
    assert "No new upgrade operations detected" in capsys.readouterr().out


def test_0003_makes_the_registrys_absolute_version_paths_relative(bare_engine):
    """Rows written by the registry before 0003 held absolute folders (<data dir>/models/<name>):
    they become "models/<name>", so a moved data directory serves; a folder elsewhere (an imported
    model) keeps its absolute path. The activations table starts empty."""
    migrate.upgrade(bare_engine, "0002")
    rows = [("v1", "/srv/old/runtime/models/v1"), ("v2", "/home/x/data dir/models/v2"),
            ("v3", "/opt/imported/my-bert"), ("v4", "models/v4"), ("v5", "C:\\bertdemo\\runtime\\models\\v5")]
    with bare_engine.begin() as conn:
        for name, path in rows:
            conn.execute(text("INSERT INTO model_versions (name, path, base_model, created_at, created_by, metrics, "
                              "report, train_config, is_active) VALUES (:n, :p, 'base', :t, 'test', '{}', '', "
                              "'{}', false)"), {"n": name, "p": path, "t": datetime(2026, 11, 30)})
    migrate.upgrade(bare_engine)
    with bare_engine.connect() as conn:
        got = dict(conn.execute(text("SELECT name, path FROM model_versions")).all())
        assert conn.execute(text("SELECT count(*) FROM activations")).scalar() == 0
    assert got == {"v1": "models/v1", "v2": "models/v2", "v3": "/opt/imported/my-bert", "v4": "models/v4",
                   "v5": "models/v5"}
    migrate.downgrade(bare_engine, "0002")  # drops activations, keeps the rows
    assert "activations" not in inspect(bare_engine).get_table_names()


def test_0006_records_the_dataset_of_existing_examples(bare_engine):
    """Before 0006 the only bundled set was the airline tweets (source "dataset"); CSV imports
    (source "import") become dataset "import"."""
    migrate.upgrade(bare_engine, "0005")
    with bare_engine.begin() as conn:
        for n, source in enumerate(("dataset", "dataset", "import")):
            conn.execute(text("INSERT INTO examples (text, raw_text, text_key, source, meta, created_at, version) "
                              "VALUES (:t, :t, :k, :s, '{}', :at, 0)"),
                         {"t": f"tweet {n}", "k": f"k{n}", "s": source, "at": datetime(2026, 11, 30)})
    migrate.upgrade(bare_engine)
    with bare_engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(text("SELECT source, dataset FROM examples ORDER BY id"))]
    assert got == [("dataset", "airline"), ("dataset", "airline"), ("import", "import")]
    migrate.downgrade(bare_engine, "0005")
    assert "dataset" not in {c["name"] for c in inspect(bare_engine).get_columns("examples")}


def test_0009_gives_the_stored_scores_their_margin(bare_engine):
    """Scores stored before 0009 get their margin (top class minus the runner-up) from their stored
    probabilities, so the Breaking ties queue ranks them in SQL like the new ones."""
    migrate.upgrade(bare_engine, "0008")
    with bare_engine.begin() as conn:
        conn.execute(text("INSERT INTO model_versions (name, path, base_model, created_at, created_by, metrics, "
                          "report, train_config, is_active) VALUES ('v1', 'models/v1', 'base', :t, 'test', '{}', "
                          "'', '{}', true)"), {"t": datetime(2026, 12, 1)})
        for n, probs in enumerate(("[0.2, 0.5, 0.3]", "[0.9, 0.05, 0.05]", "[0.34, 0.33, 0.33]")):
            conn.execute(text("INSERT INTO examples (text, raw_text, text_key, source, meta, created_at, version) "
                              "VALUES (:t, :t, :k, 'dataset', '{}', :at, 0)"),
                         {"t": f"tweet {n}", "k": f"k{n}", "at": datetime(2026, 12, 1)})
            conn.execute(text("INSERT INTO scores (example_id, version_id, probs, predicted, confidence, entropy) "
                              "VALUES (:e, 1, :p, 'x', 0.5, 1.0)"), {"e": n + 1, "p": probs})
    migrate.upgrade(bare_engine)
    with bare_engine.connect() as conn:
        got = [round(m, 6) for (m,) in conn.execute(text("SELECT margin FROM scores ORDER BY example_id"))]
    assert got == [0.2, 0.85, 0.01]
    migrate.downgrade(bare_engine, "0008")
    assert "margin" not in {c["name"] for c in inspect(bare_engine).get_columns("scores")}
