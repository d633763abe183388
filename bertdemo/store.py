"""SQLAlchemy 2.0 models and queries: the one place that talks to the database.

Examples with their current label; every label change as a new `LabelEvent` row (who, when,
old -> new, source); users and their sign-in attempts; model versions; training runs;
per-version model scores. Functions take a `Session`; callers own it
(`with Session(engine) as s, s.begin(): ...`). No engine is created at import time.

The schema is owned by the Alembic migrations in `bertdemo/migrations/` (`init_db` migrates to
the newest revision): a change to a model here needs a new revision there, and
tests/test_migrations.py fails until the two agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, create_engine,
                        delete, event, func, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from bertdemo import migrate

LABEL_SOURCES = ("dataset", "annotator", "import", "undo")
ROLES = ("annotator", "admin")
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored as naive UTC: portable across backends


def text_key(cleaned: str) -> str:
    """Duplicate key: the cleaned text, case-folded."""
    return hashlib.sha1(cleaned.casefold().encode("utf-8")).hexdigest()


class StoreError(ValueError):
    """A request the store refuses; the message is meant for the user."""


class ConflictError(StoreError):
    """The row changed since the caller read it (optimistic concurrency)."""


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="annotator")
    password_hash: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class LoginAttempt(Base):
    """One sign-in attempt (bertdemo.users.check_sign_in): the name as typed, normalised, whether
    it succeeded, and whether it was refused unchecked because the name was locked out. Rows
    older than a day are pruned; there is no foreign key, since unknown names are counted too."""
    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_name_created_at", "name", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    success: Mapped[bool] = mapped_column(Boolean)
    locked_out: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)


class Example(Base):
    __tablename__ = "examples"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)  # cleaned: what the model sees
    raw_text: Mapped[str] = mapped_column(Text)
    text_key: Mapped[str] = mapped_column(String(40), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    # current label, kept in step with the newest LabelEvent; version counts its changes
    label: Mapped[str | None] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    events: Mapped[list[LabelEvent]] = relationship(back_populates="example", order_by="LabelEvent.id")


class LabelEvent(Base):
    __tablename__ = "label_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(32))
    previous_label: Mapped[str | None] = mapped_column(String(32))
    user: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    version: Mapped[int] = mapped_column(Integer)  # the example's version after this change
    example: Mapped[Example] = relationship(back_populates="events")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    path: Mapped[str] = mapped_column(Text)
    base_model: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    created_by: Mapped[str] = mapped_column(String(64), default="system")
    metrics: Mapped[dict] = mapped_column(default=dict)
    report: Mapped[str] = mapped_column(Text, default="")
    train_config: Mapped[dict] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))


class TrainingRun(Base):
    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    user: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    config: Mapped[dict] = mapped_column(default=dict)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    history: Mapped[list] = mapped_column(default=list)
    version_id: Mapped[int | None] = mapped_column(Integer)


class Score(Base):
    """The active model's output for one example, so queues need not re-run the model."""
    __tablename__ = "scores"
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    probs: Mapped[list] = mapped_column(default=list)
    predicted: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float, index=True)


# --------------------------------------------------------------------------- engine
def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False} if is_sqlite else {})
    if is_sqlite:
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


def init_db(engine: Engine) -> None:
    """Migrate the database to the newest schema (bertdemo.migrate.upgrade): creates it when
    empty, adopts one made before migrations existed, does nothing when it is current."""
    migrate.upgrade(engine)


# --------------------------------------------------------------------------- examples & labels
@dataclass(frozen=True)
class NewExample:
    text: str  # cleaned
    raw_text: str
    label: str | None = None
    external_id: str | None = None
    meta: dict | None = None


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int  # already stored, or repeated in the batch (same cleaned text)


def import_examples(s: Session, rows: Iterable[NewExample], source: str, user: str,
                    labels: Sequence[str]) -> ImportResult:
    """Add new examples (with a dataset/import LabelEvent where labelled); skip duplicates."""
    if source not in LABEL_SOURCES:
        raise StoreError(f"source must be one of {LABEL_SOURCES}, got {source!r}")
    rows = list(rows)
    keys = [text_key(r.text) for r in rows]
    existing: set[str] = set()
    for start in range(0, len(keys), 500):
        existing |= set(s.scalars(select(Example.text_key).where(Example.text_key.in_(keys[start:start + 500]))))
    added = 0
    stamp = now()
    for row, key in zip(rows, keys):
        if key in existing:
            continue
        if row.label is not None and row.label not in labels:
            raise StoreError(f"unknown label {row.label!r}; expected one of {list(labels)}")
        existing.add(key)
        ex = Example(text=row.text, raw_text=row.raw_text, text_key=key, external_id=row.external_id,
                     source=source, meta=row.meta or {}, created_at=stamp)
        if row.label is not None:
            ex.label, ex.version, ex.updated_at, ex.updated_by = row.label, 1, stamp, user
            ex.events.append(LabelEvent(label=row.label, previous_label=None, user=user, source=source,
                                        created_at=stamp, version=1))
        s.add(ex)
        added += 1
    s.flush()
    return ImportResult(added=added, duplicates=len(rows) - added)


def set_label(s: Session, example_id: int, label: str | None, user: str, source: str,
              labels: Sequence[str], expected_version: int | None = None) -> LabelEvent:
    """Change one example's label as one new history row. With `expected_version`, refuse
    (ConflictError) if someone else changed the row since the caller read it."""
    if label is not None and label not in labels:
        raise StoreError(f"unknown label {label!r}; expected one of {list(labels)}")
    if source not in LABEL_SOURCES:
        raise StoreError(f"source must be one of {LABEL_SOURCES}, got {source!r}")
    ex = s.get(Example, example_id)
    if ex is None:
        raise StoreError(f"no example with id {example_id}")
    if expected_version is not None and ex.version != expected_version:
        raise ConflictError(
            f"example {example_id} was changed by {ex.updated_by or 'someone'} "
            f"(now {ex.label!r}) after you loaded it; reload it and decide again")
    stamp = now()
    # compare-and-set in SQL, so two sessions racing past the check above cannot both win
    res = s.execute(update(Example).where(Example.id == example_id, Example.version == ex.version)
                    .values(label=label, version=ex.version + 1, updated_at=stamp, updated_by=user)
                    .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise ConflictError(f"example {example_id} was changed by someone else while saving; reload it")
    ev = LabelEvent(example_id=example_id, label=label, previous_label=ex.label, user=user,
                    source=source, created_at=stamp, version=ex.version + 1)
    s.add(ev)
    s.flush()
    s.refresh(ex)
    return ev


def count_examples(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Example)) or 0


def label_counts(s: Session) -> dict[str | None, int]:
    return dict(s.execute(select(Example.label, func.count()).group_by(Example.label)).all())


def labeled_examples(s: Session) -> list[tuple[int, str, str]]:
    """(id, cleaned text, current label) of every labelled example, by id."""
    rows = s.execute(select(Example.id, Example.text, Example.label)
                     .where(Example.label.is_not(None)).order_by(Example.id))
    return [tuple(r) for r in rows]  # type: ignore[misc]


def history(s: Session, example_id: int) -> list[LabelEvent]:
    return list(s.scalars(select(LabelEvent).where(LabelEvent.example_id == example_id).order_by(LabelEvent.id)))


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


# ---- annotation queries
# Read-only queries behind the Annotate tab's queues, table, history and agreement. Each returns
# plain rows; bertdemo.annotate turns them into what the UI shows.
def scored_examples(s: Session, version_id: int | None) -> list[tuple[int, str, str | None, list]]:
    """(id, cleaned text, current label, stored probs of `version_id` or []) for every example."""
    q = (select(Example.id, Example.text, Example.label, Score.probs)
         .outerjoin(Score, (Score.example_id == Example.id) & (Score.version_id == version_id))
         .order_by(Example.id))
    return [(i, t, lab, p or []) for i, t, lab, p in s.execute(q)]


def queue_ids(s: Session, queue: str, version_id: int | None, search: str = "", limit: int = 200_000) -> list[int]:
    """Example ids of one queue, best first. Score-based queues read the stored `scores` rows of
    `version_id` (written by JobRunner.rescore), never the model."""
    if queue == "unlabeled":
        q = select(Example.id).where(Example.label.is_(None)).order_by(Example.id)
    elif queue == "disagree":
        q = (select(Example.id).join(Score, (Score.example_id == Example.id) & (Score.version_id == version_id))
             .where(Example.label.is_not(None), Score.predicted != Example.label)
             .order_by(Score.confidence.desc(), Example.id))
    elif queue == "uncertain":
        q = (select(Example.id).join(Score, (Score.example_id == Example.id) & (Score.version_id == version_id))
             .order_by(Score.entropy.desc(), Example.id))
    elif queue == "recent":
        newest = func.max(LabelEvent.id)
        q = (select(LabelEvent.example_id).where(LabelEvent.source != "dataset")
             .group_by(LabelEvent.example_id).order_by(newest.desc()))
    elif queue == "search":
        needle = search.strip()
        if not needle:
            return []
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = (select(Example.id).where(Example.raw_text.ilike(pattern, escape="\\") |
                                      Example.text.ilike(pattern, escape="\\")).order_by(Example.id))
    else:
        raise StoreError(f"unknown queue {queue!r}")
    return list(s.scalars(q.limit(limit)))


def score_of(s: Session, example_id: int, version_id: int | None) -> Score | None:
    if version_id is None:
        return None
    return s.get(Score, (example_id, version_id))


def change_counts(s: Session, example_ids: Sequence[int] | None = None) -> dict[int, int]:
    """Number of history rows per example."""
    q = select(LabelEvent.example_id, func.count()).group_by(LabelEvent.example_id)
    if example_ids is None:
        return dict(s.execute(q).all())  # type: ignore[arg-type]
    ids = list(example_ids)
    counts: dict[int, int] = {}
    for start in range(0, len(ids), 5000):  # bounded IN lists: SQLite and PostgreSQL cap bound parameters
        counts |= dict(s.execute(q.where(LabelEvent.example_id.in_(ids[start:start + 5000]))).all())
    return counts


def human_events(s: Session) -> list[tuple[int, int, str, str | None, str]]:
    """(event id, example id, user, label, source) of every change made by a person, oldest first."""
    q = (select(LabelEvent.id, LabelEvent.example_id, LabelEvent.user, LabelEvent.label, LabelEvent.source)
         .where(LabelEvent.source.in_(("annotator", "undo", "import"))).order_by(LabelEvent.id))
    return [tuple(r) for r in s.execute(q)]  # type: ignore[misc]


def latest_event(s: Session, example_id: int) -> LabelEvent | None:
    return s.scalar(select(LabelEvent).where(LabelEvent.example_id == example_id)
                    .order_by(LabelEvent.id.desc()).limit(1))
