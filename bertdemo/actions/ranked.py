"""The ranked queues (Most uncertain, Breaking ties, Diverse uncertain, Model disagrees, Unlabeled),
kept in memory per (queue, active version, dataset, quick model fit) so `next_item` does not sort
every stored score of the version, or read every unlabelled id, on every call.

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
probabilities in Python (model/strategies.py), once per version. Diverse uncertain (BADGE) also
reads the version's sentence embeddings (`vectors_of`, loaded once per version file): its batch of
the next 50 is picked once per fit or scores watermark (0.1-0.3 s over 27k), then kept like the others,
so it is picked again when the quick model refits.
The cache is derived data that any request may recompute, not per-user state; it is correct
across app processes because every process checks the same watermark in the database.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.db import examples, keysets, versions
from bertdemo.model import strategies, vectors
from bertdemo.model.vectors import VectorIndex
from bertdemo.training.quick import QuickFit

RANKED_QUEUES = ("uncertain", "margin", "diverse", "disagree", "unlabeled")
# ranked by a model: the version's scores or the quick model
MODEL_QUEUES = ("uncertain", "margin", "diverse", "disagree")
STRATEGY = {"uncertain": "entropy", "margin": "margin"}
# the order of the default queue while anything is unlabelled ("informative"): the winner of the
# annotation simulation (bench/al_sim.py, bench/README.md): breaking ties by the fresh quick model beat
# entropy, stale entropy and random, and tied BADGE on the larger setting at a fraction of its work
DEFAULT_ORDER = "margin"
MAX_ENTRIES = 20  # (queue, version, dataset) entries kept (~1.5 MB each for 27k ids): 5 queues x 3 datasets + 5


def not_ranked_yet(name: str, quick_version: bool) -> str:
    """Why a model queue has nothing to rank while version `name` serves without stored scores (and
    no quick-model fit): what the person is told instead of "done"."""
    if quick_version:  # the first start's quick version is never re-scored: the fine-tune's scores follow
        return (f"{name} is the quick first version: the model queues rank by the fine-tuned version's scores, "
                "stored once it serves (the Train tab shows the run); use 'Unlabeled' or 'Text search' meanwhile.")
    return (f"{name} serves, but its scores are still being written (re-scoring, about a minute per 27k "
            "examples), so this queue has nothing to rank yet; use 'Unlabeled' or 'Text search' meanwhile, or "
            "try again shortly.")


class IdSet(Set[int]):
    """A read-only set of example ids over one sorted int64 array: 8 bytes an id where a frozenset
    of ints takes ~60 (a 300k-id queue: 2.4 MB instead of ~20 MB, times the cached entries).
    `small & ids` and `small - ids` iterate the small set; `mask` tests a whole array at once."""

    __slots__ = ("_sorted",)

    def __init__(self, ids: np.ndarray) -> None:
        # a sort, then duplicates dropped only where there are any: np.unique hashed every id first
        # (0.15-0.4 s for 300k ids, most of a queue's first call; the sort takes ~20 ms)
        arr = np.sort(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(arr) > 1 and not (arr[1:] != arr[:-1]).all():
            arr = arr[np.r_[True, arr[1:] != arr[:-1]]]
        self._sorted = arr

    def __contains__(self, x: object) -> bool:
        try:
            i = int(x)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            return False
        n = int(np.searchsorted(self._sorted, i))
        return n < len(self._sorted) and int(self._sorted[n]) == i

    def __iter__(self) -> Iterator[int]:
        return iter(self._sorted.tolist())

    def __len__(self) -> int:
        return len(self._sorted)

    @classmethod
    def _from_iterable(cls, it: Iterable[int]) -> set[int]:  # what & | - return: a plain set
        return set(it)

    def __and__(self, other: Iterable[int]) -> set[int]:
        """The members of `other` (a small set: the leases) in one array test, not a binary search
        per id from Python (2,800 done leases took 0.24 s beside a quick-model refit)."""
        ids = np.fromiter((int(i) for i in other), dtype=np.int64)
        return set(ids[self.mask(ids)].tolist())

    __rand__ = __and__

    def mask(self, ids: np.ndarray) -> np.ndarray:
        """(N,) bool: which of `ids` are members."""
        return np.isin(np.asarray(ids, dtype=np.int64), self._sorted, assume_unique=False)


@dataclass(frozen=True, eq=False)
class Ranked:
    """One queue's example ids, best first (an int64 array), and the same ids as a set (for
    counting what is left without walking the whole queue)."""

    ids: np.ndarray
    members: IdSet

    @classmethod
    def of(cls, ids: Iterable[int] | np.ndarray) -> Ranked:
        arr = ids if isinstance(ids, np.ndarray) else np.fromiter(ids, dtype=np.int64)
        arr = arr.astype(np.int64, copy=False).reshape(-1)
        return cls(arr, IdSet(arr))

    def without(self, gone: Iterable[int]) -> Ranked:
        """The same order without the ids in `gone`."""
        drop = np.fromiter(gone, dtype=np.int64)
        return Ranked.of(self.ids[~np.isin(self.ids, drop)]) if len(drop) else self


class StoredVectors:
    """`vectors_of` for RankedQueues: a version's stored sentence embeddings (`path_of(version id)`),
    loaded once per version and file (~0.1 s for 27k), None while the file is not written."""

    def __init__(self, path_of: Callable[[int], Path]) -> None:
        self.path_of = path_of
        self._cache: tuple[tuple, VectorIndex] | None = None
        self._lock = threading.Lock()

    def __call__(self, version_id: int) -> VectorIndex | None:
        path = self.path_of(version_id)
        try:
            key = (version_id, path.stat().st_mtime_ns)
        except FileNotFoundError:
            return None
        with self._lock:
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, vectors.load(path))
            return self._cache[1]


class RankedQueues:
    """Cache of the ranked queues, checked against the database's watermark on every read."""

    def __init__(self, labels: tuple[str, ...] = (),
                 vectors_of: Callable[[int], VectorIndex | None] | None = None) -> None:
        self.labels = labels  # the app's labels, in the order of a model's probabilities
        # a version id's stored sentence embeddings, None before its re-scoring wrote them (the diverse
        # queue then falls back to breaking ties)
        self.vectors_of = vectors_of or (lambda _vid: None)
        self._entries: OrderedDict[tuple, tuple[tuple, Ranked]] = OrderedDict()
        self._by: OrderedDict[tuple[int, int], tuple[Ranked, Ranked, Ranked]] = OrderedDict()  # unlabelled_by's
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

    def unlabelled_by(self, order: Ranked, unlabelled: Ranked) -> Ranked:
        """The Unlabeled queue's examples in a model queue's `order` (the simulation's winner: the
        default queue while anything is unlabelled), those the model has not scored after them in
        Unlabeled's own order. Two array membership tests (~20 ms for 300k), kept while both cached
        rankings are the same objects (a save gives Unlabeled a new one)."""
        key = (id(order), id(unlabelled))
        hit = self._by.get(key)
        if hit is not None and hit[0] is order and hit[1] is unlabelled:
            return hit[2]
        ids = np.concatenate([order.ids[unlabelled.members.mask(order.ids)],
                              unlabelled.ids[~order.members.mask(unlabelled.ids)]])
        result = Ranked(ids, unlabelled.members)
        with self._lock:
            self._by[key] = (order, unlabelled, result)  # holding both: their ids cannot be reused meanwhile
            while len(self._by) > 4:
                self._by.popitem(last=False)
        return result

    def _rank(self, s: Session, queue: str, version_id: int | None, dataset: str, quick: QuickFit | None
              ) -> np.ndarray | list[int]:
        if quick is not None and queue == "disagree":
            labelled = keysets.labelled(s, self.labels, dataset)
            return strategies.disagreeing(quick.ids, quick.probs, labelled.ids, labelled.classes)
        if queue == "diverse":
            return self._diverse(s, version_id, dataset, quick)
        if quick is not None:
            ids = quick.ids[strategies.rank_rows(quick.ids, quick.probs, STRATEGY[queue])]  # rank's order, as an array
            return ids[np.isin(ids, keysets.ids_of_dataset(s, dataset))] if dataset else ids
        # the version's stored scores, read in the queue's order from an index that leads with the
        # version (migration 0009): no score of another version is read or sorted
        if queue == "unlabeled":
            return examples.queue_ids(s, queue, version_id, dataset=dataset)
        return keysets.score_queue(s, queue, version_id, dataset, self.labels)

    def _diverse(self, s: Session, version_id: int | None, dataset: str, quick: QuickFit | None) -> np.ndarray:
        """The BADGE batch, then the rest by smallest margin, over the quick model's probabilities or
        the version's stored ones; by margin alone while the version's embeddings are not written.
        BADGE only ever looks at the BADGE_POOL smallest margins, so only those rows' probabilities
        are read from the stored scores (the rest of the order is the margin queue's)."""
        if quick is not None:
            ids, probs = np.asarray(quick.ids, dtype=np.int64), np.asarray(quick.probs)
            if dataset:
                keep = np.isin(ids, keysets.ids_of_dataset(s, dataset))
                ids, probs = ids[keep], probs[keep]
            rows = strategies.rank_rows(ids, probs, "margin")
            order = ids[rows]
            # BADGE's pool only: reading every row's vector (float16 -> float32) took ~2 s and 460 MB at 300k
            ids, probs = ids[rows[:strategies.BADGE_POOL]], probs[rows[:strategies.BADGE_POOL]]
        else:
            order = np.asarray(examples.queue_ids(s, "margin", version_id, dataset=dataset), dtype=np.int64)
            rows = versions.stored_probs(s, [version_id], order[:strategies.BADGE_POOL].tolist())[version_id] \
                if version_id is not None else {}
            ids = np.asarray([i for i in order[:strategies.BADGE_POOL].tolist() if i in rows], dtype=np.int64)
            probs = np.asarray([rows[i] for i in ids.tolist()], dtype=np.float64).reshape(len(ids), -1)
        index = self.vectors_of(quick.version_id if quick is not None else version_id) \
            if version_id is not None else None
        rows_of = index.rows_of(ids) if index is not None and len(ids) else None
        if rows_of is None or not (rows_of >= 0).any():
            return order
        has = rows_of >= 0  # examples added since the re-scoring have no embedding: after the batch, by margin
        batch = np.asarray(strategies.badge(ids[has], probs[has], index.rows(rows_of[has])), dtype=np.int64)
        return np.concatenate([batch, order[~np.isin(order, batch)]])

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
    gone = [i for i, (_v, label) in changed.items() if label is not None and i in ranked.members]
    return ranked.without(gone) if gone else ranked
