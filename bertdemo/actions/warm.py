"""Derived data that takes seconds to compute, made before anyone asks: Warmed computes one value
per key in a background thread (the suspicious-labels ranking, per version), so a request finds
it ready or is told how long it has been under way instead of waiting in silence; VersionWatch
notices when a version serves with its scores stored (at start and after each activation, once
its re-scoring is done) and calls the warm-ups. No Gradio here.

Values are keyed by the version they were computed from, so a stale one is never served: a
request for a key gets a value of that key or a NotReady saying what is being computed."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from bertdemo.db import versions
from bertdemo.errors import NotReady, UserError
from bertdemo.model.vectors import VECTORS_FILE
from bertdemo.services import Services
from bertdemo.training.registry import VersionInfo
from bertdemo.training.runner import BACKGROUND_NICE

log = logging.getLogger(__name__)
WAIT_S = 1.5  # a request waits this long for a computation under way before it is told to come back
POLL_S = 2.0  # how often VersionWatch looks at the serving version (one cheap query)
K = TypeVar("K")
V = TypeVar("V")


def behind_predictions() -> None:
    """Lower the calling thread's CPU priority (Linux: per thread), as the runner's background work
    does, so people's predictions get the cores first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: the same priority
        pass


@dataclass(frozen=True)
class Ready(Generic[K, V]):
    """A computed value and when it was made."""

    key: K
    value: V
    at: datetime  # UTC, when it was ready
    seconds: float  # how long it took


class Warmed(Generic[K, V]):
    """One value of `compute(key)` kept at a time (the newest key's), computed in a background
    thread; each key computed at most once at a time. Derived data, shared by every user."""

    def __init__(self, what: str, compute: Callable[[K], V]) -> None:
        self.what = what  # what the computation does, for messages: "ranking the suspicious labels"
        self._compute = compute
        self._ready: Ready[K, V] | None = None
        self._ready_began = 0.0  # when the computation of _ready started
        self._pending: dict[K, tuple[float, threading.Event]] = {}  # key -> (time.time started, done)
        self._errors: dict[K, str] = {}  # the last failure of a key, told to the requests that waited for it
        self._lock = threading.Lock()
        self.last_seconds: float | None = None  # how long the last computation took (for "about N s")

    def peek(self, key: K) -> Ready[K, V] | None:
        """The value of `key` if it is ready, else None (never another key's)."""
        ready = self._ready
        return ready if ready is not None and ready.key == key else None

    def start(self, key: K, refresh: bool = False) -> bool:
        """Compute `key` in a background thread unless it is under way, or ready (`refresh`: compute
        it again while the ready value is still served); True when one started."""
        with self._lock:
            if key in self._pending or (self.peek(key) is not None and not refresh):
                return False
            self._pending[key] = (time.time(), threading.Event())
            self._errors.pop(key, None)
        threading.Thread(target=self._run, args=(key,), name=f"warm-{self.what[:24]}", daemon=True).start()
        return True

    def wait(self, key: K, timeout: float | None = None) -> Ready[K, V] | None:
        """Wait up to `timeout` for `key`'s computation under way; its value, or None."""
        pending = self._pending.get(key)
        if pending is not None:
            pending[1].wait(timeout)
        return self.peek(key)

    def wait_all(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` in all for every computation under way (tests, benches)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for key in list(self._pending):
            self.wait(key, None if deadline is None else max(0.0, deadline - time.monotonic()))

    def latest(self) -> Ready[K, V] | None:
        """The newest value, whatever its key (for saying when it was made)."""
        return self._ready

    def get(self, key: K, wait_s: float = WAIT_S) -> Ready[K, V]:
        """`key`'s value: at once when ready, else start it (if not under way) and wait up to
        `wait_s`; NotReady saying since when it runs when that is not enough."""
        ready = self.peek(key)
        if ready is not None:
            return ready
        self.start(key)
        ready = self.wait(key, wait_s)
        if ready is not None:
            return ready
        error = self._errors.get(key)
        if error is not None and key not in self._pending:
            raise NotReady(error)
        raise NotReady(self.waiting(key))

    def waiting(self, key: K) -> str:
        """What a request is told while `key` is computed: "ranking ... (started 12 s ago, ...)"."""
        pending = self._pending.get(key)
        ago = f"started {time.time() - pending[0]:.0f} s ago" if pending else "starting"
        took = f"; the last one took {self.last_seconds:.0f} s" if self.last_seconds else ""
        return f"{self.what[:1].upper()}{self.what[1:]}... ({ago}{took}). Try again in a few seconds."

    def _run(self, key: K) -> None:
        behind_predictions()
        started, began = time.perf_counter(), self._pending[key][0]
        try:
            value = self._compute(key)
            seconds = time.perf_counter() - started
            with self._lock:
                if began >= self._ready_began:  # an older computation ending last must not replace a newer one
                    self._ready, self._ready_began = Ready(key, value, datetime.now(UTC), seconds), began
                self.last_seconds = seconds
        except UserError as exc:  # too few labels and the like: said to whoever asks
            self._errors[key] = str(exc)
        except Exception as exc:  # a background thread must log; the request says it failed
            log.exception("%s failed", self.what)
            self._errors[key] = f"{self.what[:1].upper()}{self.what[1:]} failed ({type(exc).__name__}); see the log."
        finally:
            with self._lock:
                done = self._pending.pop(key, None)
            if done is not None:
                done[1].set()


def scored_version(services: Services) -> VersionInfo | None:
    """The serving version once its scores are stored (None before a version serves, and while an
    activation's re-scoring writes them): what the warm-ups compute from."""
    info = services.registry.active_version()
    if info is None:
        return None
    busy = services.jobs.records.activity()
    if busy is not None and busy.version == info.name and busy.phase.name == "scoring":
        return None
    with Session(services.engine) as s:
        return info if versions.has_scores(s, info.id) else None


def scores_stamp(services: Services, info: VersionInfo) -> int:
    """Which re-scoring of `info` its stored scores come from: its embeddings file's mtime in ns
    (written anew at the end of every pass), 0 before any. A version activated again is re-scored
    (new examples imported meanwhile get scores): what was derived from its old scores is stale."""
    try:
        return services.registry.folder(info).joinpath(VECTORS_FILE).stat().st_mtime_ns
    except OSError:
        return 0


class VersionWatch:
    """Calls each of `warm_ups` with the serving version once its scores are stored: at start and
    after each activation, also of the version already serving, once its re-scoring is done (a daemon
    thread looks every POLL_S; `check` does one look, for tests)."""

    def __init__(self, services: Services, warm_ups: list[Callable[[VersionInfo], None]]) -> None:
        self.services = services
        self.warm_ups = warm_ups
        self._seen: tuple[int, int] | None = None  # (version id, scores_stamp) last warmed
        self._thread: threading.Thread | None = None

    def check(self) -> VersionInfo | None:
        """Call the warm-ups when a version newly serves with its scores; that version or None."""
        info = scored_version(self.services)
        if info is None:
            return None
        seen = (info.id, scores_stamp(self.services, info))
        if seen == self._seen:
            return None
        self._seen = seen
        for warm_up in self.warm_ups:
            warm_up(info)
        return info

    def start(self) -> None:
        """Look now and every POLL_S in a daemon thread (once; it ends when this object is gone)."""
        if self._thread is None:
            self._thread = threading.Thread(target=_watch, args=(weakref.ref(self),), name="version-watch",
                                            daemon=True)
            self._thread.start()


def _watch(ref: weakref.ref) -> None:
    """VersionWatch's loop; holds it only weakly, so a demo built and dropped (tests) ends it."""
    while (watch := ref()) is not None:
        try:
            watch.check()
        except Exception:  # a database gone away (a test's) or busy: look again later
            log.debug("version watch", exc_info=True)
        del watch
        time.sleep(POLL_S)
