"""The "Suspicious labels" queue: confident learning (model/label_noise.py) over the labelled
examples and the serving version's stored scores, ranked in a background thread as soon as a
version serves with its scores (VersionWatch: at start and after each activation), so opening the
queue takes milliseconds instead of the ranking's 4-20 s on two cores. No Gradio here.

The ranking is kept per (version, number of examples): another version's is never served. A
request that comes before it is ready waits up to WAIT_S and is then told it is under way (and
since when); examples people changed since it was made leave it without a recomputation, and it
is made again in the background every REFRESH_S while the old one is still served."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from bertdemo.actions.warm import Warmed, scored_version
from bertdemo.db import examples
from bertdemo.errors import NotReady
from bertdemo.model.label_noise import find_suspicious
from bertdemo.services import Services
from bertdemo.training.registry import VersionInfo

REFRESH_S = 600.0  # labels move on: the ranking is made again in the background after this long
Key = tuple[int, int]  # (version id, number of examples)


class SuspiciousLabels:
    """The suspicious-labels ranking of the serving version, warmed in the background."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self.warmed: Warmed[Key, tuple[int, list[int]]] = Warmed("ranking the suspicious labels", self._rank)

    def _rank(self, key: Key) -> tuple[int, list[int]]:
        """(the newest history row it saw, the ids most suspicious first) of version key[0]."""
        with Session(self.engine) as s:
            newest = examples.newest_event_id(s)
            rows = [r for r in examples.scored_examples(s, key[0]) if r[2] is not None]
        return newest, find_suspicious(rows, self.labels)

    def _key(self, s: Session, version_id: int) -> Key:
        return version_id, examples.count_examples(s)

    def warm(self, info: VersionInfo) -> None:
        """Rank `info`'s labels in the background (VersionWatch calls it when `info` is scored)."""
        with Session(self.engine) as s:
            self.warmed.start(self._key(s, info.id))

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the rankings under way (tests, the bench)."""
        self.warmed.wait_all(timeout)

    def ids(self, version_id: int) -> list[int]:
        """The queue, most suspicious first, without the examples changed since it was ranked;
        NotReady while the version's scores are being stored or the ranking is under way. Opens its
        own sessions one at a time (the caller holds none: it may wait for the ranking)."""
        with Session(self.engine) as s:
            key = self._key(s, version_id)
        ready = self.warmed.peek(key)
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

    def ranked_by(self, version_name: str) -> str:
        """The "ranked by" line of the queue."""
        ready = self.warmed.latest()
        at = f", ranked at {ready.at:%H:%M} UTC" if ready is not None else ""
        return f"ranked by confident learning over {version_name}'s stored scores{at}"

