"""The "Suspicious labels" queue: confident learning (model/label_noise.py) over the labelled
examples and the serving version's stored scores, ranked in a background thread as soon as a
version serves with its scores (VersionWatch: at start and after each activation, once its
re-scoring is done), never on the request path: ranking 150k labelled rows takes tens of seconds.
No Gradio here.

The ranking is kept per version, in memory and in a file beside the version (SUSPICIOUS_FILE: the
ids and the newest history row it saw), so another app process, or this one after a restart, serves
it without ranking again; another version's is never served. A request that comes before any is
ready waits up to WAIT_S and is then told it is under way (and since when). Examples people changed
since it was made leave it without a recomputation, examples added since (an import) are not in it,
and it is made again in the background every REFRESH_S while the old one is still served."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.actions.warm import Ready, Warmed, scored_version
from bertdemo.db import examples
from bertdemo.errors import NotReady
from bertdemo.model.label_noise import find_suspicious
from bertdemo.services import Services
from bertdemo.training.registry import VersionInfo

log = logging.getLogger(__name__)
REFRESH_S = 600.0  # labels move on: the ranking is made again in the background after this long
SUSPICIOUS_FILE = "suspicious.npz"
Key = int  # the version id


class SuspiciousLabels:
    """The suspicious-labels ranking of the serving version, warmed in the background and stored."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self.warmed: Warmed[Key, tuple[int, list[int]]] = Warmed("ranking the suspicious labels", self._rank)
        self._stored: dict[tuple[int, int], Ready[Key, tuple[int, list[int]]]] = {}  # (version, mtime) -> file's

    def _file(self, version_id: int) -> Path:
        return self.services.registry.folder(self.services.registry.get(version_id)) / SUSPICIOUS_FILE

    def _rank(self, key: Key) -> tuple[int, list[int]]:
        """(the newest history row it saw, the ids most suspicious first) of version `key`, also
        written to the version's SUSPICIOUS_FILE (atomically: a reader sees the old or the new one)."""
        with Session(self.engine) as s:
            newest = examples.newest_event_id(s)
            rows = [r for r in examples.scored_examples(s, key) if r[2] is not None]
        ids = find_suspicious(rows, self.labels)
        try:
            _store(self._file(key), newest, ids)
        except OSError as exc:  # a folder it cannot write (read-only storage): served from memory only
            log.warning("the suspicious-labels ranking of version %s is not stored: %s", key, exc)
        return newest, ids

    def _from_file(self, version_id: int) -> Ready[Key, tuple[int, list[int]]] | None:
        """The stored ranking of `version_id` (made by this process or another), None when there is none."""
        path = self._file(version_id)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        hit = self._stored.get((version_id, mtime))
        if hit is None:
            with np.load(path) as data:
                value = (int(data["newest"]), data["ids"].tolist())
            hit = Ready(version_id, value, datetime.fromtimestamp(mtime / 1e9, UTC), 0.0)
            self._stored = {(version_id, mtime): hit}
        return hit

    def warm(self, info: VersionInfo) -> None:
        """Rank `info`'s labels in the background (VersionWatch calls it when `info` is scored),
        unless a ranking of it is stored already (then the refresh rule applies)."""
        stored = self._from_file(info.id)
        if stored is None or time.time() - stored.at.timestamp() > REFRESH_S:
            self.warmed.start(info.id, refresh=stored is not None)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the rankings under way (tests, the bench)."""
        self.warmed.wait_all(timeout)

    def ids(self, version_id: int) -> list[int]:
        """The queue, most suspicious first, without the examples changed since it was ranked;
        NotReady while the version's scores are being stored or the first ranking is under way. Opens
        its own sessions one at a time (the caller holds none: it may wait for the ranking)."""
        ready = self.warmed.peek(version_id)
        stored = self._from_file(version_id)
        if stored is not None and (ready is None or stored.at > ready.at):
            ready = stored  # written by another process, or by this one before a restart
        if ready is None:
            scored = scored_version(self.services)
            if scored is None or scored.id != version_id:
                raise NotReady("The serving version's scores are being stored (re-scoring after its activation); "
                               "the suspicious labels are ranked as soon as that is done.")
            ready = self.warmed.get(version_id)
        elif time.time() - ready.at.timestamp() > REFRESH_S:
            self.warmed.start(version_id, refresh=True)  # this request is answered with the current one
        newest, ids = ready.value
        with Session(self.engine) as s:
            changed = examples.changed_since(s, newest)
        return [i for i in ids if i not in changed]

    def ranked_by(self, version_name: str) -> str:
        """The "ranked by" line of the queue."""
        ready = self.warmed.latest()
        at = f", ranked at {ready.at:%H:%M} UTC" if ready is not None else ""
        return f"ranked by confident learning over {version_name}'s stored scores{at}"


def _store(path: Path, newest: int, ids: list[int]) -> None:
    """Write the ranking atomically: a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".suspicious-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, ids=np.asarray(ids, dtype=np.int64), newest=np.int64(newest))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
