"""The stopping pool's predictions (issue 25): after a version is saved, its predicted class on each
example of the stopping pool, a fixed random sample drawn once (the first time a version is saved
after migration 0011), so that actions/stopping.py compares consecutive versions on the same
examples. The runner and the quick first version call `record_pool_quietly`: a failure here is
logged and never fails their run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.db import keysets, signals

log = logging.getLogger(__name__)
BATCH = 256  # texts per predict_proba call: bounded memory on a large pool
POOL_SEED = 25  # the draw's seed: the same corpus draws the same pool

Proba = Callable[[list[str]], np.ndarray]  # predict_proba: texts -> (n, labels) probabilities


def draw(preferred: np.ndarray, rest: np.ndarray, size: int, seed: int = POOL_SEED) -> list[int]:
    """`size` ids, sorted: a seeded random sample of `preferred` (unlabelled or "general" examples,
    db/signals.py), topped up with a sample of `rest` when those are too few; every id when there are
    fewer than `size` in all."""
    rng = np.random.default_rng(seed)
    picked = rng.permutation(preferred)[:size].tolist()
    if len(picked) < size:
        picked += rng.permutation(rest)[:size - len(picked)].tolist()
    return sorted(int(i) for i in picked)


def ensure_pool(engine: Engine, settings: Settings) -> list[int]:
    """The stopping pool's example ids, drawn and stored first if there is none yet ([] on an empty
    corpus). Two processes drawing at once: the second's insert fails on the key and it reads the
    first's pool."""
    with Session(engine) as s:
        ids = signals.pool_ids(s)
        if ids:
            return ids
        preferred, rest = signals.pool_candidates(s)
    ids = draw(preferred, rest, settings.stop_pool_size)
    try:
        with Session(engine) as s, s.begin():
            signals.add_pool(s, ids)
    except IntegrityError:
        with Session(engine) as s:
            return signals.pool_ids(s)
    if ids:
        log.info("drew the stopping pool: %d examples", len(ids))
    return ids


def predicted_classes(proba: Proba, texts: Sequence[str], labels: Sequence[str], batch: int = BATCH) -> list[str]:
    """The top class of each text under `proba`, `batch` texts per call."""
    out: list[str] = []
    for start in range(0, len(texts), batch):
        p = np.asarray(proba(list(texts[start:start + batch])))  # (batch, labels)
        out += [labels[int(j)] for j in p.argmax(axis=1)]
    return out


def record_pool(engine: Engine, settings: Settings, version_id: int, proba: Proba) -> int:
    """Predict the stopping pool (drawn first if there is none) with `proba` and store the predicted
    classes for `version_id`, replacing any it had. Returns the number of examples predicted."""
    ids = ensure_pool(engine, settings)
    if not ids:
        return 0
    with Session(engine) as s:
        texts = keysets.texts_by_id(s, ids)
    predicted = predicted_classes(proba, [texts.get(i, "") for i in ids], settings.labels)
    with Session(engine) as s, s.begin():
        signals.save_pool_predictions(s, version_id, ids, predicted)
    return len(ids)


def record_pool_quietly(engine: Engine, settings: Settings, version_id: int, proba: Proba) -> int:
    """`record_pool`, logging a failure instead of raising it (0 then): a version saved stays saved,
    and the stopping signals fall back on its stored scores, or leave it out and say so."""
    try:
        return record_pool(engine, settings, version_id, proba)
    except Exception:  # the signals are a reading of the run, never a reason to fail it
        log.exception("could not store the stopping pool's predictions of version id %d", version_id)
        return 0
