"""Model versions and per-version scores: register, activate, list; store the active model's scores
for the queues. Training runs' rows are in db/runs.py."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bertdemo.db.engine import chunks
from bertdemo.db.models import Activation, ModelVersion, Score, now
from bertdemo.errors import NotFound


# --------------------------------------------------------------------------- versions
def next_version_name(s: Session) -> str:
    n = s.scalar(select(func.count()).select_from(ModelVersion)) or 0
    return f"v{n + 1}"


def add_version(s: Session, **fields: object) -> ModelVersion:
    v = ModelVersion(**fields)
    s.add(v)
    s.flush()
    return v


def active_version(s: Session) -> ModelVersion | None:
    return s.scalar(select(ModelVersion).where(ModelVersion.is_active.is_(True)))


def activate_version(s: Session, version_id: int, user: str = "system", reason: str = "") -> ModelVersion:
    """Make `version_id` the one active version, recorded as an Activation (who, why, which before)."""
    v = get_version(s, version_id)
    previous = active_version(s)
    s.add(Activation(version_id=version_id, previous_version_id=previous.id if previous else None, user=user,
                     reason=reason, created_at=now()))
    s.execute(update(ModelVersion).values(is_active=False))
    s.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(is_active=True))
    s.flush()
    s.refresh(v)
    return v


def set_path(s: Session, name: str, path: str) -> None:
    """Point version `name` at another folder (a restore moves imported models into the data directory)."""
    s.execute(update(ModelVersion).where(ModelVersion.name == name).values(path=path))



def list_versions(s: Session) -> list[ModelVersion]:
    return list(s.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def save_scores(s: Session, version_id: int, example_ids: Sequence[int], probs, labels: Sequence[str]) -> None:
    """Replace this version's scores for these examples."""
    p = np.asarray(probs, dtype=float)
    ent = -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)  # (N,) entropy in nats, for the "uncertain" queue
    ids = [int(i) for i in example_ids]
    for chunk in chunks(ids):
        s.execute(delete(Score).where(Score.version_id == version_id, Score.example_id.in_(chunk))
                  .execution_options(synchronize_session=False))
    s.add_all([Score(example_id=int(i), version_id=version_id, probs=[round(float(x), 6) for x in row],
                     predicted=labels[int(row.argmax())], confidence=float(row.max()), entropy=float(e))
               for i, row, e in zip(example_ids, p, ent)])
    s.flush()


def get_version(s: Session, version_id: int) -> ModelVersion:
    """The version, or NotFound."""
    v = s.get(ModelVersion, version_id)
    if v is None:
        raise NotFound(f"No model version with id {version_id}.")
    return v


def version_of_run(s: Session, run_id: int) -> ModelVersion | None:
    return s.scalar(select(ModelVersion).where(ModelVersion.run_id == run_id))


def has_scores(s: Session, version_id: int) -> bool:
    """True when `version_id` has stored scores (it was activated, or compared, and re-scored)."""
    return s.scalar(select(Score.example_id).where(Score.version_id == version_id).limit(1)) is not None


def stored_probs(s: Session, version_ids: Sequence[int], example_ids: Sequence[int]) -> dict[int, dict[int, list]]:
    """{version id: {example id: stored probabilities}} of these versions for these examples (the
    scores written when each version was activated); an example a version never scored is absent.
    The version review reads these instead of running the models."""
    out: dict[int, dict[int, list]] = {int(v): {} for v in version_ids}
    q = select(Score.version_id, Score.example_id, Score.probs).where(Score.version_id.in_(list(out)))
    for chunk in chunks(sorted({int(i) for i in example_ids})):
        for vid, eid, probs in s.execute(q.where(Score.example_id.in_(chunk))):
            out[vid][eid] = probs
    return out


def activations(s: Session, limit: int = 20) -> list[Activation]:
    """The newest changes of the serving version first."""
    return list(s.scalars(select(Activation).order_by(Activation.id.desc()).limit(limit)))
