"""Model versions, training runs and per-version scores: register, activate, list; open and close
runs; store the active model's scores for the queues."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from bertdemo.db.models import ModelVersion, Score, StoreError, TrainingRun, now


# --------------------------------------------------------------------------- versions & runs
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


def activate_version(s: Session, version_id: int) -> ModelVersion:
    v = s.get(ModelVersion, version_id)
    if v is None:
        raise StoreError(f"no model version with id {version_id}")
    s.execute(update(ModelVersion).values(is_active=False))
    s.execute(update(ModelVersion).where(ModelVersion.id == version_id).values(is_active=True))
    s.flush()
    s.refresh(v)
    return v


def list_versions(s: Session) -> list[ModelVersion]:
    return list(s.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def create_run(s: Session, user: str, config: dict) -> TrainingRun:
    run = TrainingRun(user=user, config=config, status="running")
    s.add(run)
    s.flush()
    return run


def fail_stale_runs(s: Session, reason: str = "the app stopped during this run") -> int:
    """Runs left 'running' by a process that died: mark them failed (called at start)."""
    res = s.execute(update(TrainingRun).where(TrainingRun.status.in_(("queued", "running")))
                    .values(status="failed", finished_at=now(), message=reason))
    return res.rowcount or 0


def latest_run(s: Session) -> TrainingRun | None:
    return s.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1))


def save_scores(s: Session, version_id: int, example_ids: Sequence[int], probs, labels: Sequence[str]) -> None:
    """Replace this version's scores for these examples."""
    p = np.asarray(probs, dtype=float)
    ent = -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)  # (N,) entropy in nats, for the "uncertain" queue
    ids = [int(i) for i in example_ids]
    for start in range(0, len(ids), 5000):  # bounded IN lists: SQLite caps bound parameters
        s.execute(delete(Score).where(Score.version_id == version_id, Score.example_id.in_(ids[start:start + 5000]))
                  .execution_options(synchronize_session=False))
    s.add_all([Score(example_id=int(i), version_id=version_id, probs=[round(float(x), 6) for x in row],
                     predicted=labels[int(row.argmax())], confidence=float(row.max()), entropy=float(e))
               for i, row, e in zip(example_ids, p, ent)])
    s.flush()
