"""Training runs' rows (bertdemo/db/runs.py) on each backend (tests/conftest.py's `engine`): a run is
opened running, its progress and outcome are written, a dead process's runs are closed, and they
read back as RunRecord."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from bertdemo.db import runs, versions
from bertdemo.errors import NotFound


def test_open_progress_finish_and_read(engine):
    with Session(engine) as s, s.begin():
        assert runs.latest_record(s) is None
        run_id = runs.open_run(s, "alice", {"epochs": 1.0, "reason": "after 50 new labels"})
    with Session(engine) as s, s.begin():
        runs.record_progress(s, run_id, 3, 10)
    with Session(engine) as s:
        r = runs.read_run(s, run_id)
        assert (r.status, r.user, r.step, r.total_steps, r.finished_at) == ("running", "alice", 3, 10, None)
        assert r.reason == "after 50 new labels" and r.config["epochs"] == 1.0
    history = ({"step": 1, "train_loss": 0.9}, {"step": 2, "train_loss": 0.7, "val_loss": 0.8})
    with Session(engine) as s, s.begin():
        runs.finish_run(s, run_id, runs.RunOutcome("succeeded", "Version v1 saved", 2, 2, history, None))
    with Session(engine) as s:
        r = runs.latest_record(s)
        assert (r.id, r.status, r.message, r.step, r.total_steps) == (run_id, "succeeded", "Version v1 saved", 2, 2)
        assert r.history == history and r.version_id is None and r.finished_at is not None
        with pytest.raises(NotFound, match="No training run with id 999"):
            runs.read_run(s, 999)


def test_a_dead_process_runs_are_closed_by_what_they_left(engine):
    with Session(engine) as s, s.begin():
        saved = runs.open_run(s, "t", {})
        lost = runs.open_run(s, "t", {})
        versions.add_version(s, name="v1", path="models/v1", base_model="b", created_by="t",
                             metrics={"macro_f1": 0.8}, run_id=saved)
    with Session(engine) as s, s.begin():
        assert runs.succeed_saved_runs(s) == [(saved, "v1")]
        assert runs.fail_stale_runs(s) == 1
    with Session(engine) as s:
        ok, failed = runs.read_run(s, saved), runs.read_run(s, lost)
        assert ok.status == "succeeded" and ok.version_id is not None
        assert ok.message == "Version v1 saved (macro-F1 0.8000); not activated; the app stopped before this run was recorded."
        assert failed.status == "failed" and failed.message == "the app stopped during this run"
        assert runs.unfinished_runs(s) == []
