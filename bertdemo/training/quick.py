"""The quick model: a logistic regression on the active version's stored sentence embeddings (the
re-scoring pass writes them beside the version, model/vectors.py), fitted on the current labels
in about a second, so the uncertainty queues and the suggestion follow the labels people give
between two fine-tunes (ActiveTigger, Label Sleuth and Prodigy's textcat.teach keep such a fast
model in the loop). Fitting only: when to refit and what reads the fit is actions/quick_model.py.

Human labels are weighted as in training (training/weights.py with TrainConfig's defaults: the
crowd's confidence within its class, the general tweets' share), and an item whose annotators
disagree and that nobody adjudicated is left out, as training leaves it out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import examples, keysets
from bertdemo.db.decisions import awaiting_adjudication
from bertdemo.errors import NotReady
from bertdemo.model import strategies, vectors
from bertdemo.training.config import TrainConfig
from bertdemo.training.weights import example_weights

MIN_LABELS = 10  # labelled examples with an embedding a fit needs (and two classes among them)
# lbfgs to a loose tolerance: ~30 iterations from scratch, ~6 from the previous fit; the ranking
# agrees with a fit to 1e-4 on all but the ties (bench/README.md, "quick model")
TOLERANCE, MAX_ITER = 1e-3, 100
# labelled rows a fit reads at most (lbfgs copies them in float64: 50k x 384 is ~150 MB); beyond it,
# every label a person gave and a seeded uniform sample of the imported ones (their class shares kept)
MAX_ROWS = 50_000


@dataclass(frozen=True, eq=False)
class QuickFit:
    """One fit of the quick model and its probabilities for every example with an embedding.
    `ids` and the rows of `probs` are parallel."""

    version_id: int  # the version whose embeddings it was fitted on: it is stale once another serves
    version_name: str
    ids: np.ndarray  # (N,) example ids
    probs: np.ndarray  # (N, C) float32, C = the app's labels in their order
    labels_used: int  # labelled examples it was fitted on
    mark: int  # the newest label history row when it was fitted (labels after it are not in it)
    fitted_at: datetime  # UTC
    seconds: float  # wall time of reading + fitting + scoring
    serial: int = 0  # which fit of this process (the ranked queues' cache key)
    model: object = field(default=None, repr=False)  # the fitted LogisticRegression (warm start of the next)
    # the embeddings file it read (its mtime): a re-scoring that writes a new one makes the fit stale
    embeddings_stamp: int = 0
    _rows: vectors.RowLookup = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rows", vectors.RowLookup(self.ids))

    def probs_of(self, example_id: int) -> np.ndarray | None:
        n = int(self._rows.rows_of([example_id])[0])
        return None if n < 0 else self.probs[n]

    def ranked(self, strategy: str) -> list[int]:
        """Every example with an embedding, most informative first (model/strategies.py)."""
        return strategies.rank(self.ids, self.probs, strategy)


def fit_quick(engine: Engine, vectors_file: Path, version: tuple[int, str], labels: tuple[str, ...],
              previous: QuickFit | None = None, serial: int = 0) -> QuickFit:
    """Fit the quick model on `version`'s (id, name) embeddings in `vectors_file` and the current
    labels; NotReady when the file is not written yet or there are too few labels. `previous`, a
    fit on the same version, starts the solver where it ended (a refit after a few labels takes a
    few iterations)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    try:
        stamp = vectors_file.stat().st_mtime_ns
    except FileNotFoundError:
        raise NotReady(f"The sentence embeddings of {version[1]} are not stored yet (they come with re-scoring).") \
            from None
    index = vectors.load(vectors_file)
    x, y, w, mark = _training_rows(engine, index, labels)
    if len(y) < MIN_LABELS or len(np.unique(y)) < 2:
        raise NotReady(f"The quick model needs at least {MIN_LABELS} labelled examples of two classes; have "
                       f"{len(y)} of {len(np.unique(y))}.")
    warm = previous is not None and previous.version_id == version[0] and previous.model is not None
    model = previous.model if warm else LogisticRegression(tol=TOLERANCE, max_iter=MAX_ITER, warm_start=True)
    if warm and set(np.unique(y)) != set(model.classes_):  # a class appeared or vanished: start afresh
        model = LogisticRegression(tol=TOLERANCE, max_iter=MAX_ITER, warm_start=True)
    # one BLAS thread: two threads on two shared cores spin against each other (the fit took 10-50 s
    # instead of 0.5 s here), and the serving path keeps the other core
    with threadpool_limits(1):
        model.fit(x, y, sample_weight=w)
        probs = np.zeros((len(index), len(labels)), dtype=np.float32)  # a class nobody labelled: 0
        for a in range(0, len(index), vectors.CHUNK_ROWS):  # bounded memory: never the whole matrix in float64
            probs[a:a + vectors.CHUNK_ROWS, model.classes_] = model.predict_proba(
                index.rows(np.arange(a, min(a + vectors.CHUNK_ROWS, len(index)))))
    return QuickFit(version[0], version[1], index.ids, probs, labels_used=len(y), mark=mark,
                    fitted_at=datetime.now(UTC), seconds=time.perf_counter() - started, serial=serial, model=model,
                    embeddings_stamp=stamp)


def _training_rows(engine: Engine, index: vectors.VectorIndex, labels: tuple[str, ...]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(embeddings (n, d), class indices (n,), loss weights (n,), newest history row) of the
    labelled examples that have an embedding, weighted as a run with TrainConfig's defaults is."""
    config = TrainConfig()
    with Session(engine) as s:
        mark = examples.newest_event_id(s)  # read first: a label saved meanwhile counts towards the next fit
        # the labels as arrays (a dict of 150k ORM rows took ~1 s at 300k, beside the first queue calls)
        current = keysets.labelled(s, labels)
        keep = current.classes >= 0  # a label outside the app's: not trained on
        waiting = np.fromiter(awaiting_adjudication(s), dtype=np.int64)  # no final label yet: training leaves these out too
        if len(waiting):
            keep &= ~np.isin(current.ids, waiting)
        labelled, classes = current.ids[keep], current.classes[keep]
        ids = index.ids[np.isin(index.ids, labelled)].tolist()  # in the embeddings' order
        if len(ids) > MAX_ROWS:  # bounded memory at any corpus size: every person's label, a sample of the rest
            people = {i for _e, i, *_rest in examples.human_events(s)}
            ids = _bounded(ids, people)
        inputs = keysets.weight_inputs(s, ids)
    rows = index.rows_of(ids)
    y = classes[np.searchsorted(labelled, np.asarray(ids, dtype=np.int64))].astype(np.int64)
    if not len(ids):
        return np.zeros((0, index.vectors.shape[1]), np.float32), y, np.zeros(0, np.float32), mark
    confidences = inputs.confidences if config.confidence_weighted else [None] * len(ids)
    w = example_weights(confidences, inputs.datasets, y, config.general_weight, config.keep_class_shares)
    return index.rows(rows), y, w, mark


def _bounded(ids: list[int], people: set[int]) -> list[int]:
    """At most MAX_ROWS of `ids` (or all of `people`'s, if more): those a person labelled, then a
    seeded sample of the others, in their order."""
    mine = [i for i in ids if i in people]
    rest = np.asarray([i for i in ids if i not in people], dtype=np.int64)
    take = max(0, MAX_ROWS - len(mine))
    keep = set(mine) | set(np.random.default_rng(0).choice(rest, min(take, len(rest)), replace=False).tolist())
    return [i for i in ids if i in keep]
