"""Model versions and per-version scores: register, activate, reject, list; store the active
model's scores for the queues, and read two versions' stored scores side by side (the review's
flips over the whole corpus). Training runs' rows are in db/runs.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from bertdemo.db.engine import chunks
from bertdemo.db.models import Activation, Example, LabelEvent, ModelVersion, Rejection, Score, now
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
    """Replace this version's scores for these examples: one DELETE per bounded IN list and one
    multi-row INSERT (no ORM objects: a re-scoring writes hundreds of thousands of rows)."""
    p = np.asarray(probs, dtype=float).reshape(len(example_ids), -1)
    ent = -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)  # (N,) entropy in nats, for the "uncertain" queue
    top2 = -np.sort(-p, axis=1)[:, :2]
    margin = top2[:, 0] - top2[:, 1] if p.shape[1] > 1 else top2[:, 0]  # "Breaking ties": smallest first
    ids = [int(i) for i in example_ids]
    for chunk in chunks(ids):
        s.execute(delete(Score).where(Score.version_id == version_id, Score.example_id.in_(chunk))
                  .execution_options(synchronize_session=False))
    if ids:
        s.execute(insert(Score), [
            {"example_id": i, "version_id": version_id, "probs": [round(float(x), 6) for x in row],
             "predicted": labels[int(row.argmax())], "confidence": float(row.max()), "entropy": float(e),
             "margin": float(m)} for i, row, e, m in zip(ids, p, ent, margin)])


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


def labels_mark(s: Session, version_id: int) -> int:
    """The newest label history row when `version_id` last began serving (its newest activation, else
    its creation): the quick model counts the labels people gave after it."""
    since = s.scalar(select(func.max(Activation.created_at)).where(Activation.version_id == version_id))
    if since is None:
        since = s.scalar(select(ModelVersion.created_at).where(ModelVersion.id == version_id))
    return s.scalar(select(func.max(LabelEvent.id)).where(LabelEvent.created_at <= since)) or 0


def score_rows(s: Session, version_id: int, dataset: str = "") -> list[tuple[int, list]]:
    """(example id, stored probabilities) of every example `version_id` scored (of `dataset` when
    given), by id: what the queues with no column of their own (breaking ties) rank in Python."""
    q = select(Score.example_id, Score.probs).where(Score.version_id == version_id).order_by(Score.example_id)
    if dataset:
        q = q.join(Example, Example.id == Score.example_id).where(Example.dataset == dataset)
    return [(int(i), p) for i, p in s.execute(q)]


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


# --------------------------------------------------------------------------- two versions' stored scores
@dataclass(frozen=True)
class StoredFlips:
    """Two versions' stored scores over every example both scored: how many that is (`n`), and
    the examples whose stored prediction differs, as parallel tuples (ids, gold labels or None,
    A's and B's probabilities)."""

    n: int
    ids: tuple[int, ...]
    gold: tuple[str | None, ...]
    probs_a: tuple[list, ...]
    probs_b: tuple[list, ...]


def stored_flips(s: Session, a_id: int, b_id: int) -> StoredFlips:
    """The examples whose stored prediction differs between versions `a_id` and `b_id` (one
    join in the database, the probabilities read only for those), and how many both scored."""
    sa, sb = aliased(Score), aliased(Score)
    both = select(sa.example_id).join(sb, (sb.example_id == sa.example_id) & (sb.version_id == b_id)).where(
        sa.version_id == a_id)
    n = s.scalar(select(func.count()).select_from(both.subquery())) or 0
    q = (select(sa.example_id, Example.label, sa.probs, sb.probs)
         .join(sb, (sb.example_id == sa.example_id) & (sb.version_id == b_id))
         .join(Example, Example.id == sa.example_id)
         .where(sa.version_id == a_id, sa.predicted != sb.predicted).order_by(sa.example_id))
    rows = s.execute(q).all()
    return StoredFlips(n, tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows),
                       tuple(r[3] for r in rows))


# --------------------------------------------------------------------------- rejections
def reject_version(s: Session, version_id: int, user: str, reason: str) -> Rejection:
    """Record that `version_id` must not serve (who, why; NotFound for an unknown id)."""
    get_version(s, version_id)
    r = Rejection(version_id=version_id, user=user, reason=reason, created_at=now())
    s.add(r)
    s.flush()
    return r


def latest_rejections(s: Session) -> dict[int, Rejection]:
    """{version id: its newest rejection} of every rejected version."""
    out: dict[int, Rejection] = {}
    for r in s.scalars(select(Rejection).order_by(Rejection.id)):
        out[r.version_id] = r
    return out
