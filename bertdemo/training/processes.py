"""What one app process sees of the others on its database: a training run another process runs
(RunElsewhere, for the status line and the Train tab), and an activation another process made
(ActivationWatcher: a daemon thread that polls the serving version's id and serves the same one,
off the request path)."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db.locks import TrainingLock, running_elsewhere
from bertdemo.db.runs import RunRecord
from bertdemo.model import int8
from bertdemo.training.follow_up import Ticket
from bertdemo.training.records import JobStatus, Phase

log = logging.getLogger(__name__)
ELSEWHERE_EVERY_S = 2.0  # how often status() looks for a run in another process (the Train tab polls every 1 s)
GRAPH_WAIT_S = 900.0  # how long a process that picked up an activation waits for the activating one's int8 build
GRAPH_POLL_S = 2.0


class RunElsewhere:
    """The run another process holds the training lock for, read from its row at most every
    ELSEWHERE_EVERY_S (a lock probe and, while one runs, one query)."""

    def __init__(self, engine: Engine, lock: TrainingLock) -> None:
        self.engine, self.lock = engine, lock
        self._seen: tuple[float, JobStatus | None] = (-ELSEWHERE_EVERY_S, None)  # (when looked, what was seen)

    def status(self, fresh: bool = False) -> JobStatus | None:
        """A running JobStatus of that run (its step as its process last wrote it), or None."""
        looked, st = self._seen
        if not fresh and time.monotonic() - looked < ELSEWHERE_EVERY_S:
            return st
        st = None
        try:
            if self.lock.held_elsewhere():
                with Session(self.engine) as s:
                    run = running_elsewhere(s)
                st = (JobStatus(state="running", message="A training run is in progress in another app process "
                                                         "on this database.") if run is None else _status_of(run))
        except Exception:  # a status poll must answer; the database may be busy
            log.debug("looking for a run in another process failed", exc_info=True)
        self._seen = (time.monotonic(), st)
        return st


def _status_of(run: RunRecord) -> JobStatus:
    phase = Phase("training", run.step, run.total_steps, "steps") if run.total_steps else Phase("preparing")
    return JobStatus(state="running", run_id=run.id, step=run.step, total_steps=run.total_steps, phase=phase,
                     started=run.started_at.timestamp(), reason=run.reason,
                     message=f"Training run #{run.id} (started by {run.user}) is in progress in another app "
                             "process on this database.")


def await_graph(folder: Path, ticket: Ticket, timeout: float = GRAPH_WAIT_S) -> bool:
    """Wait until the version's int8 graph and its gate are in `folder` (the activating process
    builds them: two builds of one folder would race and cost ~40 s of CPU each), at most
    `timeout` seconds (then this process builds it: the other may have died). False when
    `ticket` was abandoned meanwhile."""
    d = folder / int8.FOLDER
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ticket.abandoned:
            return False
        if (d / int8.GATE_FILE).is_file() and (d / int8.INT8_FILE).is_file():
            return True
        time.sleep(GRAPH_POLL_S)
    log.warning("no int8 graph appeared in %s within %.0f s: building it here", d, timeout)
    return True


class ActivationWatcher:
    """Serves what another process activated, within `interval` seconds: `pick_up()` (the
    registry's: load and swap when the database's serving version is not this process's) in a
    daemon thread, then `follow(info, clf)` (the runner's background work after a swap)."""

    def __init__(self, pick_up: Callable[[], tuple | None], follow: Callable[..., None], interval: float) -> None:
        self.pick_up, self.follow, self.interval = pick_up, follow, interval
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One look; True when another version serves here now."""
        picked = self.pick_up()
        if picked is None:
            return False
        self.follow(*picked)
        return True

    def start(self) -> ActivationWatcher:
        """Look every `interval` seconds in a daemon thread (once; none when interval is 0). It
        holds this object weakly and ends when it is gone (a test's Services)."""
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=_watch, args=(weakref.ref(self), self.interval),
                                            name="activation-watch", daemon=True)
            self._thread.start()
        return self


def _watch(ref: weakref.ref, interval: float) -> None:
    while True:
        time.sleep(interval)
        watcher = ref()
        if watcher is None:
            return
        try:
            watcher.check()
        except Exception:  # a database gone away (a test's) or busy: look again later
            log.debug("activation watch", exc_info=True)
        del watcher
