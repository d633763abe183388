"""The "Suspicious labels" queue: confident learning (model/label_noise.py) over the labelled
examples and the serving version's stored scores, ranked in a background thread as soon as a
version serves with its scores (VersionWatch: at start and after each activation, once its
re-scoring is done), never on the request path: ranking 150k labelled rows takes tens of seconds,
in a child process for a large corpus (training/label_issues.py says why). No Gradio here.

The ranking is kept per version and per re-scoring of it (warm.scores_stamp: a version activated
again is scored anew), in memory and in a file beside the version (SUSPICIOUS_FILE: the ids, the
newest history row it saw and the scores' stamp), so another app process, or this one after a
restart, serves it without ranking again; another version's, or one made from the version's scores
before its latest re-scoring, is never served. A request that comes before any is
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

from bertdemo.actions.warm import Ready, Warmed, scored_version, scores_stamp
from bertdemo.db import examples
from bertdemo.errors import NotReady
from bertdemo.services import Services
from bertdemo.training import label_issues
from bertdemo.training.registry import VersionInfo

log = logging.getLogger(__name__)
REFRESH_S = 600.0  # labels move on: the ranking is made again in the background after this long
SUSPICIOUS_FILE = "suspicious.npz"
Key = tuple[int, int]  # (the version id, warm.scores_stamp of its scores)


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

    def _key(self, info: VersionInfo) -> Key:
        return info.id, scores_stamp(self.services, info)

    def _rank(self, key: Key) -> tuple[int, list[int]]:
        """(the newest history row it saw, the ids most suspicious first) of version `key`, also
        written to the version's SUSPICIOUS_FILE (atomically: a reader sees the old or the new one)."""
        version_id, stamp = key
        r = label_issues.rank(self.engine, version_id, self.labels)
        where = f"a child process, peak RSS {r.child_peak_mb:.0f} MB" if r.child_peak_mb else "this process"
        log.info("ranked the suspicious labels of %d labelled examples in %.1f s (%s)", r.rows, r.seconds, where)
        newest, ids = r.newest, r.ids
        try:
            _store(self._file(version_id), newest, ids, stamp)
        except OSError as exc:  # a folder it cannot write (read-only storage): served from memory only
            log.warning("the suspicious-labels ranking of version %s is not stored: %s", version_id, exc)
        return newest, ids

    def _from_file(self, key: Key) -> Ready[Key, tuple[int, list[int]]] | None:
        """The stored ranking of `key` (made by this process or another), None when there is none, or
        only one made from the version's scores before its latest re-scoring."""
        version_id, stamp = key
        path = self._file(version_id)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        hit = self._stored.get((version_id, mtime))
        if hit is None:
            with np.load(path) as data:  # a file from before the stamp was stored has none: stale
                made_from = int(data["scores_stamp"]) if "scores_stamp" in data.files else -1
                value = (int(data["newest"]), data["ids"].tolist())
            hit = Ready((version_id, made_from), value, datetime.fromtimestamp(mtime / 1e9, UTC), 0.0)
            self._stored = {(version_id, mtime): hit}
        return hit if hit.key == key else None

    def warm(self, info: VersionInfo) -> None:
        """Rank `info`'s labels in the background (VersionWatch calls it when `info` is scored),
        unless a ranking of it is stored already (then the refresh rule applies)."""
        key = self._key(info)
        stored = self._from_file(key)
        if stored is None or time.time() - stored.at.timestamp() > REFRESH_S:
            self.warmed.start(key, refresh=stored is not None)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the rankings under way (tests, the bench)."""
        self.warmed.wait_all(timeout)

    def ids(self, version_id: int) -> list[int]:
        """The queue, most suspicious first, without the examples changed since it was ranked;
        NotReady while the version's scores are being stored or the first ranking is under way. Opens
        its own sessions one at a time (the caller holds none: it may wait for the ranking)."""
        key = self._key(self.services.registry.get(version_id))
        ready = self.warmed.peek(key)
        stored = self._from_file(key)
        if stored is not None and (ready is None or stored.at > ready.at):
            ready = stored  # written by another process, or by this one before a restart
        if ready is None:
            scored = scored_version(self.services)
            if scored is None or scored.id != version_id:
                raise NotReady("The serving version's scores are being stored (re-scoring after its activation); "
                               "the suspicious labels are ranked as soon as that is done.")
            ready = self.warmed.get(key)
        elif time.time() - ready.at.timestamp() > REFRESH_S:
            self.warmed.start(key, refresh=True)  # this request is answered with the current one
        newest, ids = ready.value
        with Session(self.engine) as s:
            changed = examples.changed_since(s, newest)
        return [i for i in ids if i not in changed]

    def ranked_by(self, info: VersionInfo) -> str:
        """The "ranked by" line of the queue: when the ranking it serves of `info`'s scores was made."""
        key = self._key(info)
        made = [r for r in (self.warmed.peek(key), self._from_file(key)) if r is not None]
        at = f", ranked at {max(r.at for r in made):%H:%M} UTC" if made else ""
        return f"ranked by confident learning over {info.name}'s stored scores{at}"


def _store(path: Path, newest: int, ids: list[int], stamp: int) -> None:
    """Write the ranking atomically: a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".suspicious-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, ids=np.asarray(ids, dtype=np.int64), newest=np.int64(newest), scores_stamp=np.int64(stamp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
