"""Model versions and training runs (bertdemo.db.versions) against every backend of the `engine`
fixture (tests/conftest.py): a migrated SQLite file, and a PostgreSQL schema when BERTDEMO_DB_URL
points at a PostgreSQL database."""

from sqlalchemy.orm import Session

from bertdemo.db import runs, versions


def test_versions_activate_exactly_one(engine):
    with Session(engine) as s, s.begin():
        a = versions.add_version(s, name=versions.next_version_name(s), path="/a", base_model="m")
        b = versions.add_version(s, name=versions.next_version_name(s), path="/b", base_model="m")
        assert (a.name, b.name) == ("v1", "v2")
        versions.activate_version(s, a.id)
        versions.activate_version(s, b.id)
    with Session(engine) as s:
        assert versions.active_version(s).name == "v2"
        assert [v.is_active for v in versions.list_versions(s)] == [True, False]


def test_interrupted_runs_are_marked_failed(engine):
    with Session(engine) as s, s.begin():
        runs.create_run(s, "alice", {})
    with Session(engine) as s, s.begin():
        assert runs.fail_stale_runs(s) == 1
    with Session(engine) as s:
        run = runs.latest_run(s)
        assert run.status == "failed" and "stopped" in run.message and run.finished_at is not None
