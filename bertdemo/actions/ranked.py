"""The ranked queues (Most uncertain, Breaking ties, Model disagrees, Unlabeled), kept in memory per
(queue, active version, dataset, quick model fit) so `next_item` does not sort every stored score
of the version, or read every unlabelled id, on every call.

Ranking ~27k stored scores in SQL took ~130 ms a call; with 20 people asking at once that was
seconds of waiting (bench/README.md, bench_team). A version's model never changes, so its stored
score of an example never changes either: the ranking of a version moves only when rows are added
(the re-scoring after an activation commits chunk by chunk, or new examples were scored), which
the count of stored scores shows, read on every call (one COUNT). "Model disagrees" depends on the
current labels as well, so it is also re-read after any label change (the newest history row).
Unlabeled changes with every save, so it is brought up to date instead: the examples changed since
the cached copy (a few, read by the history's ids) leave it once labelled.
Between two versions the quick model (actions/quick_model.py, a logistic regression refitted every
few labels) ranks the model queues instead: its fit never changes once made, so its rankings are
keyed by the fit and kept until the next one ("Model disagrees" is re-read after a label change).
Breaking ties has no column of its own: a version's margins are computed from its stored
probabilities in Python (model/strategies.py), once per version.
The cache is derived data that any request may recompute, not per-user state; it is correct
across app processes because every process checks the same watermark in the database.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.db import examples, versions
from bertdemo.model import strategies
from bertdemo.training.quick import QuickFit

RANKED_QUEUES = ("uncertain", "margin", "disagree", "unlabeled")
MODEL_QUEUES = ("uncertain", "margin", "disagree")  # ranked by a model: the version's scores or the quick model
STRATEGY = {"uncertain": "entropy", "margin": "margin"}
MAX_ENTRIES = 16  # (queue, version, dataset) entries kept (~1.5 MB each for 27k ids): 4 queues x 3 datasets + 4


@dataclass(frozen=True)
class Ranked:
    """One queue's example ids, best first, and the same ids as a set (for counting what is left
    without walking the whole queue)."""

    ids: tuple[int, ...]
    members: frozenset[int]

    @classmethod
    def of(cls, ids: list[int]) -> Ranked:
        return cls(tuple(ids), frozenset(ids))


class RankedQueues:
    """Cache of the ranked queues, checked against the database's watermark on every read."""

    def __init__(self, labels: tuple[str, ...] = ()) -> None:
        self.labels = labels  # the app's labels, in the order of a model's probabilities
        self._entries: OrderedDict[tuple, tuple[tuple, Ranked]] = OrderedDict()
        self._lock = threading.Lock()  # one computation per key at a time: the others wait for its result

    def get(self, s: Session, queue: str, version_id: int | None, dataset: str = "",
            quick: QuickFit | None = None) -> Ranked:
        """The ranked ids of `queue` (one of RANKED_QUEUES) for `version_id`, of `dataset` when given;
        a model queue by `quick`'s probabilities when a fit is given."""
        quick = quick if queue in MODEL_QUEUES else None
        key = (queue, None if queue == "unlabeled" else version_id, dataset, quick.serial if quick else None)
        stamp = self._stamp(s, queue, quick)
        hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with self._lock:
            hit = self._entries.get(key)  # another request may have just computed it
            if hit is not None and hit[0] == stamp:
                return hit[1]
            ranked = _labelled_since(s, hit, stamp) if queue == "unlabeled" and hit is not None else None
            if ranked is None:
                ranked = Ranked.of(self._rank(s, queue, version_id, dataset, quick))
            self._entries[key] = (stamp, ranked)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
            return ranked

    def _rank(self, s: Session, queue: str, version_id: int | None, dataset: str, quick: QuickFit | None
              ) -> list[int]:
        if quick is not None and queue == "disagree":
            return strategies.disagreements(quick.ids, quick.probs, self.labels, examples.current_labels(s, dataset))
        if quick is not None:
            ids = quick.ranked(STRATEGY[queue])
            if dataset:
                of = examples.datasets_of(s, ids)
                ids = [i for i in ids if of.get(i) == dataset]
            return ids
        if queue == "margin":  # no column to sort by in SQL: the stored probabilities, ranked here
            rows = versions.score_rows(s, version_id, dataset) if version_id is not None else []
            probs = np.array([p for _i, p in rows], dtype=np.float64).reshape(len(rows), -1)
            return strategies.rank([i for i, _p in rows], probs, "margin")
        return examples.queue_ids(s, queue, version_id, dataset=dataset)

    @staticmethod
    def _stamp(s: Session, queue: str, quick: QuickFit | None = None) -> tuple:
        """What the ranking depends on, read cheaply: the stored scores' count (score queues) or the
        examples' count (unlabeled: an import adds unlabelled rows without a history row); for
        disagree and unlabeled also the newest label change. A quick fit never changes: only its
        disagreements move, with the labels."""
        if quick is not None:
            return (examples.newest_event_id(s),) if queue == "disagree" else ()
        if queue == "unlabeled":
            return examples.count_examples(s), examples.newest_event_id(s)
        count = examples.score_count(s)
        return (count, examples.newest_event_id(s)) if queue == "disagree" else (count,)


def _labelled_since(s: Session, hit: tuple[tuple, Ranked], stamp: tuple) -> Ranked | None:
    """The cached Unlabeled queue brought up to `stamp` without re-reading it: the examples changed
    since drop out once they have a label. None (read it again) when examples were added or a
    change took a label away from one the queue does not hold (an undo: it goes back in order)."""
    (count, newest), ranked = hit
    if stamp[0] != count or stamp[1] < newest:
        return None
    changed = examples.states(s, sorted(examples.changed_since(s, newest)))
    if any(label is None and i not in ranked.members for i, (_v, label) in changed.items()):
        return None
    gone = {i for i, (_v, label) in changed.items() if label is not None} & ranked.members
    if not gone:
        return ranked
    return Ranked(tuple(i for i in ranked.ids if i not in gone), ranked.members - gone)
