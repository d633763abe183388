"""The tables, as SQLAlchemy 2.0 models: examples with their current label; every label change as
a new `LabelEvent` row (who, when, old -> new, source); users and their sign-in attempts; model
versions; training runs; per-version model scores.

The queries live beside this module (examples, versions, accounts); they take a `Session` that
the caller owns (`with Session(engine) as s, s.begin(): ...`). No engine is created at import.
The schema is owned by the Alembic migrations in `bertdemo/db/migrations/` (`init_db` migrates
to the newest revision): a change to a model here needs a new revision there, and
tests/unit/db/test_migrations.py fails until the two agree.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# annotator: a person's label; suggestion: a person accepted the model's suggestion as their label;
# adjudication: an admin's final label on an item its annotators disagree on; bulk: one of many
# examples labelled at once (similar examples, a region of the map), undone together by `batch`
LABEL_SOURCES = ("dataset", "annotator", "import", "undo", "suggestion", "adjudication", "bulk")
ROLES = ("annotator", "admin")
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored as naive UTC: portable across backends


def text_key(cleaned: str) -> str:
    """Duplicate key: the cleaned text, case-folded."""
    return hashlib.sha1(cleaned.casefold().encode("utf-8")).hexdigest()


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
    # where it came from: a bundled dataset ("airline", "general") or "import" (a CSV someone imported)
    dataset: Mapped[str | None] = mapped_column(String(32), index=True)
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
    # the bulk labelling (or its undo) this change belongs to: one id for the whole batch
    batch: Mapped[str | None] = mapped_column(String(36), index=True)
    # the condition the label was given under (migration 0011, the suggestion-bias audit): the model's
    # suggestion at the save, whether it was on screen (False: hidden by the audit's draw; None: no
    # hand-out, e.g. a save from the table, or a label from before 0011) and when the item was handed out
    suggested: Mapped[str | None] = mapped_column(String(32))
    suggestion_shown: Mapped[bool | None] = mapped_column(Boolean)
    handed_out_at: Mapped[datetime | None] = mapped_column(DateTime)
    example: Mapped[Example] = relationship(back_populates="events")


class Comment(Base):
    """A note anyone leaves on an example (shown in its history and the export)."""
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id"), index=True)
    user: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    # the version's folder: relative to the data directory ("models/v3") for the versions the
    # registry writes, so a moved or restored data directory serves at once; absolute for a
    # folder outside it (an imported model)
    path: Mapped[str] = mapped_column(Text)
    base_model: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    created_by: Mapped[str] = mapped_column(String(64), default="system")
    metrics: Mapped[dict] = mapped_column(default=dict)
    report: Mapped[str] = mapped_column(Text, default="")
    train_config: Mapped[dict] = mapped_column(default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))


class Lease(Base):
    """One of an example's annotation slots (annotations per item = overlap k: slots 0..k-1): held
    by a person working on it until `expires_at`, or `done` once they saved a label. The primary
    key (example, slot) makes a claim atomic on every backend: two people racing for the last
    free slot cannot both get it. Expired, not-done rows are free slots."""
    __tablename__ = "leases"
    __table_args__ = (Index("ix_leases_user", "user"), Index("ix_leases_expires_at", "expires_at"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id"), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    # the suggestion-bias audit's draw for this hand-out: the model's suggestion is not shown (0011)
    hide_suggestion: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class StoppingPool(Base):
    """The stopping pool (migration 0011): a fixed random sample of examples, drawn once, on which each
    version's predictions are compared with the previous versions' (actions/stopping.py)."""
    __tablename__ = "stopping_pool"
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id"), primary_key=True)
    drawn_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class PoolPrediction(Base):
    """A version's predicted class on one example of the stopping pool, stored when it is saved."""
    __tablename__ = "pool_predictions"
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id"), primary_key=True)
    predicted: Mapped[str] = mapped_column(String(32))


class AppSetting(Base):
    """A setting an admin changes in the app (not the environment's Settings): annotations per item,
    the labelling guidelines, retrain every N labels; a person's map selection."""
    __tablename__ = "app_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(default=dict)
    updated_by: Mapped[str] = mapped_column(String(64), default="system")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Activation(Base):
    """One change of the serving version: who or what made it, and why (an admin's activation or
    rollback, a new version served when trained, a fallback at start when the active version's
    files could not be loaded)."""
    __tablename__ = "activations"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    user: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Rejection(Base):
    """An admin's decision, from the version review, that a version must not serve: who, when, why
    (the version's history, with its activations; migration 0008)."""
    __tablename__ = "version_rejections"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    user: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


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
    """The active model's output for one example, so queues need not re-run the model. The queues
    read one version's scores in their order from the indexes that lead with the version (0009)."""
    __tablename__ = "scores"
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    probs: Mapped[list] = mapped_column(default=list)
    predicted: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float, index=True)
    # top class minus the runner-up: the "Breaking ties" order (smallest first); None only for a
    # row written before 0009 that the migration could not read
    margin: Mapped[float | None] = mapped_column(Float)
    # the example's place on this version's corpus map (0012; model/projection.py), written by the
    # re-scoring's follow-up; None until then, and for scores written before 0012
    map_x: Mapped[float | None] = mapped_column(Float)
    map_y: Mapped[float | None] = mapped_column(Float)


# covering indexes in each queue's order (migration 0009): a queue of one version is one index range
# read front to back (~0.1 s for 300k on SQLite), never a sort of every version's scores nor a lookup
# of each row's JSON probabilities
Index("ix_scores_version_entropy", Score.version_id, Score.entropy.desc(), Score.example_id)
Index("ix_scores_version_margin", Score.version_id, Score.margin, Score.example_id)
Index("ix_scores_version_confidence", Score.version_id, Score.confidence.desc(), Score.example_id, Score.predicted)
# a map box is one range read of this index (0012): candidates with their ids, no row lookups
Index("ix_scores_version_map", Score.version_id, Score.map_x, Score.map_y, Score.example_id)


BEHAVIOUR_SOURCES = ("starter", "example", "flip")  # the starter suite; made from an example; from a flip


class BehaviourTestRecord(Base):
    """One behaviour test (training/behaviour.py's BehaviourTest): its kind (MFT, INV, DIR), the
    label it expects where that applies, and its cases as JSON: [{"text", "perturbed": [...],
    "expected"?}, ...]. A must-pass test that fails keeps a version from serving by itself."""
    __tablename__ = "behaviour_tests"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text, default="")
    expected: Mapped[str | None] = mapped_column(String(32))
    cases: Mapped[list] = mapped_column(default=list)
    must_pass: Mapped[bool] = mapped_column(Boolean, default=False)
    tolerance: Mapped[float] = mapped_column(Float, default=0.0)  # failure rate a must-pass test may have
    source: Mapped[str] = mapped_column(String(16), default="starter")
    created_by: Mapped[str] = mapped_column(String(64), default="system")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_by: Mapped[str] = mapped_column(String(64), default="system")
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class BehaviourResult(Base):
    """One test's outcome on one version and serving path (pytorch or int8), kept so the review
    and the Train tab show the last results without running the model again. `failures` holds the
    failing cases as JSON: [{"text", "original", "expected", "got", "probs"}, ...]."""
    __tablename__ = "behaviour_results"
    __table_args__ = (Index("ix_behaviour_results_test_name", "test_name"),)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(16), primary_key=True)
    test_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    must_pass: Mapped[bool] = mapped_column(Boolean, default=False)
    n: Mapped[int] = mapped_column(Integer)
    n_failed: Mapped[int] = mapped_column(Integer)
    failures: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
