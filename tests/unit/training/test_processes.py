"""Two app processes on one database, as two Services in one test process on one data dir (each
its own engine, registry and runner; their training locks exclude each other as two processes'
do, tests/unit/db/test_locks.py): a second start is refused naming the run, the other shows it
and does not close it at its own start; an activation in one is served by the other, without
re-scoring. tests/api/test_two_processes.py does the same with two real app processes on PostgreSQL."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.db.models import TrainingRun
from bertdemo.errors import Busy, Conflict
from bertdemo.services import Services
from bertdemo.training import processes, runner
from bertdemo.training.config import TrainConfig, TrainingCancelled
from bertdemo.training.registry import pick_up
from tests.support import TINY_TRAIN, wait_for

QUICK = TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 2}))


def test_a_second_start_in_another_process_is_refused_and_shown(tmp_path, tiny_csv, monkeypatch):
    settings = Settings(serving="bf16", data_dir=tmp_path / "rt", dataset_path=tiny_csv, datasets=("airline",),
                        bootstrap=False, pickup_seconds=0)
    a, b = Services.create(settings), Services.create(settings)
    a.ensure_dataset()
    started = threading.Event()

    def waits_for_cancel(*_a, should_stop, **_kw):
        started.set()
        while not should_stop():
            time.sleep(0.01)
        raise TrainingCancelled("training was cancelled at step 1 of 2")

    monkeypatch.setattr(runner, "fit", waits_for_cancel)
    monkeypatch.setattr(processes, "ELSEWHERE_EVERY_S", 0.0)
    run_id = a.jobs.start(QUICK, user="alice")
    assert started.wait(60)
    with pytest.raises(Busy, match=rf"run #{run_id} \(started by alice\) is in progress in another app process"):
        b.jobs.start(QUICK, user="bob")
    with pytest.raises(Busy, match=rf"#{run_id}"):
        b.jobs.run_sync(QUICK, user="bob")
    st = b.jobs.status()  # the Train tab and the status line of the other process
    assert st.running and st.run_id == run_id and "another app process" in st.message
    with pytest.raises(Conflict, match="another app process"):
        b.jobs.cancel()
    b.start()  # a process starting meanwhile leaves the run open (only a dead process's runs are closed)
    with Session(a.engine) as s:
        assert s.get(TrainingRun, run_id).status == "running"
    assert a.jobs.cancel() is True
    assert a.jobs.wait(30).state == "cancelled"
    assert wait_for(lambda: not b.jobs.status().running, timeout=10, what="the other process seeing the end")
    monkeypatch.undo()
    assert b.jobs.run_sync(QUICK, user="bob").state == "succeeded"  # free again: b may train now
    # ... and while b holds it (starting: no run yet), a may not
    with pytest.raises(Busy, match="in progress in another app process"), b.jobs.lock.holding():
        a.jobs.start(QUICK, user="alice")
    for services in (a, b):
        services.engine.dispose()


def test_an_activation_in_another_process_is_served_without_rescoring(two_versions, tmp_path):
    data = tmp_path / "rt"
    shutil.copytree(two_versions, data)
    settings = Settings(serving="bf16", data_dir=data, bootstrap=False, pickup_seconds=0.2)
    a, b = Services.create(settings), Services.create(settings)
    a.start()
    b.start()
    assert a.registry.active().name == b.registry.active().name == "v2"
    assert pick_up(b.registry) is None  # nothing changed
    v1 = next(v for v in a.registry.versions() if v.name == "v1")
    a.jobs.activate(v1.id, user="boss", reason="a rollback")  # a re-scores in the background
    started = time.monotonic()
    wait_for(lambda: b.registry.active().name == "v1", timeout=30, interval=0.1, what="b serving v1")
    picked_in = time.monotonic() - started
    assert b.registry.active_id() == v1.id and b.registry.active_version().name == "v1"
    assert b.registry.active().predict(["the crew was lovely"])[0].label in settings.labels
    a.jobs.wait_rescore(120)
    b.jobs.wait_rescore(60)
    assert a.jobs.last_rescore == ("v1", a.jobs.last_rescore[1]) and b.jobs.last_rescore is None  # scored once
    assert picked_in < 15, picked_in
    a.jobs.activate(next(v for v in a.registry.versions() if v.name == "v2").id)
    wait_for(lambda: b.registry.active().name == "v2", timeout=30, interval=0.1, what="b serving v2 again")
    for services in (a, b):
        services.engine.dispose()
