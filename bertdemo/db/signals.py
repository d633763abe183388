"""The queries of the stopping signals and the learning curve (issue 25): the stopping pool (drawn
once, migration 0011), each version's predicted classes on it, the stored scores that stand in for a
version saved before the pool existed, and the versions' figures in creation order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from bertdemo.db.engine import chunks
from bertdemo.db.keysets import id_array
from bertdemo.db.models import Example, ModelVersion, PoolPrediction, Score, StoppingPool, now

PREFERRED_DATASET = "general"  # tweets on other topics: not the labelling target, whose labelled examples
# every version trains on and so predicts alike whatever else changed


@dataclass(frozen=True)
class VersionRow:
    """One version's stored figures, as the learning curve and the kappa series read them."""
    id: int
    name: str
    metrics: dict  # FitResult.metrics(): macro_f1, per_dataset, train_size, ...
    train_config: dict  # TrainConfig.to_dict(), with "kind" for a quick version


# --------------------------------------------------------------------------- the pool
def pool_ids(s: Session) -> list[int]:
    """The stopping pool's example ids, ascending; [] before it is drawn."""
    return id_array(s, select(StoppingPool.example_id).order_by(StoppingPool.example_id)).tolist()


def pool_size(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(StoppingPool)) or 0


def pool_candidates(s: Session) -> tuple[np.ndarray, np.ndarray]:
    """(preferred, rest): sorted int64 ids of the examples a pool is drawn from first (unlabelled or
    of the "general" dataset: see PREFERRED_DATASET) and of the others."""
    preferred_if = or_(Example.label.is_(None), Example.dataset == PREFERRED_DATASET)
    preferred = id_array(s, select(Example.id).where(preferred_if).order_by(Example.id))
    rest = id_array(s, select(Example.id).where(~preferred_if).order_by(Example.id))
    return preferred, rest


def add_pool(s: Session, example_ids: Sequence[int]) -> None:
    """Store the drawn pool (one multi-row INSERT); a second draw racing this one fails on the key."""
    at = now()
    if example_ids:
        s.execute(insert(StoppingPool), [{"example_id": int(i), "drawn_at": at} for i in example_ids])


# --------------------------------------------------------------------------- predictions on it
def save_pool_predictions(s: Session, version_id: int, example_ids: Sequence[int], predicted: Sequence[str]) -> None:
    """Replace `version_id`'s predicted classes on the pool (a retried save writes them again)."""
    s.execute(delete(PoolPrediction).where(PoolPrediction.version_id == version_id))
    if example_ids:
        s.execute(insert(PoolPrediction), [{"version_id": version_id, "example_id": int(i), "predicted": p}
                                           for i, p in zip(example_ids, predicted)])


def pool_predictions(s: Session) -> dict[int, dict[int, str]]:
    """{version id: {example id: predicted class}} of every version with stored pool predictions."""
    out: dict[int, dict[int, str]] = {}
    q = select(PoolPrediction.version_id, PoolPrediction.example_id, PoolPrediction.predicted)
    for vid, eid, pred in s.execute(q):
        out.setdefault(int(vid), {})[int(eid)] = pred
    return out


def stand_in_predictions(s: Session, version_ids: Sequence[int],
                         example_ids: Sequence[int]) -> dict[int, dict[int, str]]:
    """{version id: {example id: predicted class}} from the stored scores (written when a version was
    activated and re-scored every example) of these versions on these examples: what stands in for
    the pool predictions of a version saved before the pool existed. A version with none is absent."""
    out: dict[int, dict[int, str]] = {}
    if not version_ids:
        return out
    q = select(Score.version_id, Score.example_id, Score.predicted).where(Score.version_id.in_(list(version_ids)))
    for chunk in chunks(sorted({int(i) for i in example_ids})):
        for vid, eid, pred in s.execute(q.where(Score.example_id.in_(chunk))):
            out.setdefault(int(vid), {})[int(eid)] = pred
    return out


# --------------------------------------------------------------------------- versions
def version_rows(s: Session) -> list[VersionRow]:
    """Every version's figures, in creation order (oldest first)."""
    q = select(ModelVersion.id, ModelVersion.name, ModelVersion.metrics, ModelVersion.train_config)
    return [VersionRow(int(i), n, dict(m or {}), dict(c or {}))
            for i, n, m, c in s.execute(q.order_by(ModelVersion.id))]
