"""What several app processes on one database coordinate through: the training lock (one run at a
time across every process), the running run's row another process shows, and the serving version's
id each process polls to pick up an activation made elsewhere.

The lock needs no table (so no migration): on PostgreSQL a session-level advisory lock held on a
dedicated connection for the run's duration (the server releases it when the process dies and its
connection closes); on SQLite, whose processes share one machine, a `flock` on a file beside the
database (the kernel releases it when the process dies); an in-memory SQLite database is one
process's, so a lock in that process does."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from bertdemo.db.engine import sqlite_path
from bertdemo.db.models import ModelVersion
from bertdemo.db.runs import RunRecord, unfinished_runs

log = logging.getLogger(__name__)
# first half of the advisory lock's two-int key (the second is the hash of the schema, so apps on
# two schemas of one database, e.g. tests, do not share it); the migration lock uses another key
PG_TRAINING_KEY = 0x62657274  # "bert"
_PG_TRY = text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))")
_PG_UNLOCK = text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))")
# held by any session of this database (a two-int advisory key has objsubid 2; hashtext's int4 goes
# through int8 to oid as PostgreSQL stores it: the 32 bits unsigned)
_PG_HELD = text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = CAST(:k AS oid) AND objid = ((hashtext(current_schema())::int8 + 4294967296) % 4294967296)::oid)")
LOCK_SUFFIX = ".training.lock"  # the SQLite lock file: beside the database file, e.g. bertdemo.sqlite3.training.lock
_PROCESS_LOCKS: dict[str, threading.Lock] = {}  # in-memory SQLite: one lock per URL in this process
RETRIES = 3  # a SQLite probe (held_elsewhere) holds the file lock for microseconds: try again before saying busy


class TrainingLock:
    """One training run at a time across every process on one database. `acquire` never waits;
    the holder (this object) may acquire it again (counted: Services.start holds it over the start
    while the run it starts takes it too), and it is released when the count returns to 0."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._guard = threading.Lock()
        self._count = 0
        self._conn: Connection | None = None  # PostgreSQL: the connection that holds the lock
        self._fd: int | None = None  # SQLite: the open, locked file
        self._local: threading.Lock | None = None  # in-memory SQLite: the process's lock
        self.backend = engine.dialect.name
        file = sqlite_path(engine.url.render_as_string(hide_password=False)) if self.backend == "sqlite" else None
        self.path: Path | None = file.with_name(file.name + LOCK_SUFFIX) if file is not None else None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._count > 0

    def acquire(self) -> bool:
        """Take the lock (or count once more when this object holds it); False when another
        process (or another TrainingLock) holds it. Never waits."""
        with self._guard:
            if self._count:
                self._count += 1
                return True
            for attempt in range(RETRIES):
                if self._take():
                    self._count = 1
                    return True
                if self.backend == "postgresql":
                    break  # pg_locks probes take no lock: busy means busy
                time.sleep(0.02 * (attempt + 1))
            return False

    def release(self) -> None:
        """Give back one acquire; the lock itself goes with the last."""
        with self._guard:
            if not self._count:
                return
            self._count -= 1
            if not self._count:
                self._drop()

    @contextlib.contextmanager
    def holding(self) -> Iterator[bool]:
        """`with lock.holding() as mine:` True when the lock is this object's for the block."""
        mine = self.acquire()
        try:
            yield mine
        finally:
            if mine:
                self.release()

    def held_elsewhere(self) -> bool:
        """True when someone else holds the lock (a run in another process). Takes nothing on
        PostgreSQL (reads pg_locks); on SQLite it takes and drops the file lock at once."""
        if self._count:
            return False
        if self.backend == "postgresql":
            with self.engine.connect() as conn:
                return bool(conn.execute(_PG_HELD, {"k": PG_TRAINING_KEY}).scalar())
        if self.path is None:
            return self._process_lock().locked()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the flock taken above
        return False

    # ------------------------------------------------------------------ per backend
    def _take(self) -> bool:
        if self.backend == "postgresql":
            # autocommit: the connection sits idle for the whole run, never "idle in transaction"
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if conn.execute(_PG_TRY, {"k": PG_TRAINING_KEY}).scalar():
                self._conn = conn
                return True
            conn.close()
            return False
        if self.path is None:
            lock = self._process_lock()
            if lock.acquire(blocking=False):
                self._local = lock
                return True
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # flock, not fcntl's POSIX locks: it belongs to this open file, so two objects in one
            # process exclude each other too, and closing another descriptor of the file keeps it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute(_PG_UNLOCK, {"k": PG_TRAINING_KEY})
                conn.close()
            except Exception:  # the connection is gone: so is its lock
                log.warning("releasing the training lock failed; dropping its connection", exc_info=True)
                conn.invalidate()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        if self._local is not None:
            lock, self._local = self._local, None
            lock.release()

    def _process_lock(self) -> threading.Lock:
        return _PROCESS_LOCKS.setdefault(str(self.engine.url), threading.Lock())


def running_elsewhere(s: Session) -> RunRecord | None:
    """The newest run still open in the database (the one the lock's holder runs), or None."""
    open_runs = sorted(unfinished_runs(s), key=lambda r: r.id)
    return RunRecord.of(open_runs[-1]) if open_runs else None


def active_version_id(s: Session) -> int | None:
    """The serving version's id as the database has it (a few rows: what every process polls)."""
    return s.scalar(select(ModelVersion.id).where(ModelVersion.is_active.is_(True)).limit(1))
