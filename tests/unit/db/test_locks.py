"""The training lock (db/locks.py) on SQLite and PostgreSQL: one holder at a time across engines
(as across processes), counted re-entry by its holder, released when the holding process dies,
seen from outside without being taken; and the two queries other processes poll."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy.orm import Session

from bertdemo.config import REPO_ROOT
from bertdemo.db import locks, runs, versions
from bertdemo.db.engine import make_engine
from bertdemo.db.locks import TrainingLock
from tests.support import wait_for


@pytest.fixture
def other(engine, db_url):
    """A second engine on the same database: another process's, as far as the lock can tell."""
    e = make_engine(db_url)
    yield e
    e.dispose()


def test_one_holder_at_a_time(engine, other):
    a, b = TrainingLock(engine), TrainingLock(other)
    assert not a.held_elsewhere() and not b.held_elsewhere()
    assert a.acquire()
    assert a.held and not b.acquire()
    assert b.held_elsewhere() and not a.held_elsewhere()  # a holds it: not "elsewhere" for a
    assert a.acquire()  # its holder counts
    a.release()
    assert not b.acquire()  # still held once
    a.release()
    assert not a.held and not b.held_elsewhere()
    assert b.acquire() and a.held_elsewhere()
    b.release()
    with a.holding() as mine:
        assert mine and not b.acquire()
        with b.holding() as theirs:
            assert not theirs
    assert b.acquire()
    b.release()


def test_two_objects_on_one_engine_exclude_each_other(engine):
    """Two runners in one process on one database (tests, the CLI beside the app) are two holders."""
    a, b = TrainingLock(engine), TrainingLock(engine)
    assert a.acquire() and not b.acquire()
    a.release()
    assert b.acquire()
    b.release()


def test_sqlite_lock_file_sits_beside_the_database(engine):
    lock = TrainingLock(engine)
    if engine.dialect.name != "sqlite":
        assert lock.path is None
        return
    db_file = make_engine(str(engine.url)).url.database
    assert str(lock.path) == db_file + locks.LOCK_SUFFIX


def test_released_when_the_holding_process_dies(engine, db_url):
    """SIGKILL: no finally runs; the kernel (flock) or the server (the connection closes) frees it."""
    code = textwrap.dedent(f"""
        import sys, time
        from bertdemo.db.engine import make_engine
        from bertdemo.db.locks import TrainingLock
        assert TrainingLock(make_engine({db_url!r})).acquire()
        print("held", flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                             env=os.environ | {"PYTHONPATH": str(REPO_ROOT)})
    try:
        assert child.stdout.readline().strip() == "held"
        mine = TrainingLock(engine)
        assert mine.held_elsewhere() and not mine.acquire()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert wait_for(mine.acquire, timeout=10, interval=0.2, what="the dead process's lock freed")
    mine.release()


def test_the_polled_queries(engine):
    with Session(engine) as s, s.begin():
        assert locks.active_version_id(s) is None and locks.running_elsewhere(s) is None
        v1 = versions.add_version(s, name="v1", path="models/v1", base_model="b", created_by="t").id
        v2 = versions.add_version(s, name="v2", path="models/v2", base_model="b", created_by="t").id
        versions.activate_version(s, v2)
        first = runs.open_run(s, "alice", {})
        second = runs.open_run(s, "bob", {"reason": "retrain every 20 labels"})
    with Session(engine) as s, s.begin():
        assert locks.active_version_id(s) == v2
        run = locks.running_elsewhere(s)
        assert (run.id, run.user, run.reason) == (second, "bob", "retrain every 20 labels")
        versions.activate_version(s, v1)
        runs.finish_run(s, second, runs.RunOutcome("failed", "x"))
    with Session(engine) as s:
        assert locks.active_version_id(s) == v1
        assert locks.running_elsewhere(s).id == first
