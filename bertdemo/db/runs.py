"""Training runs' records (the training_runs rows): open one, write its progress and its outcome,
close the ones a dead process left open, and read them back as RunRecord."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bertdemo.db.models import ModelVersion, TrainingRun, now
from bertdemo.db.versions import version_of_run
from bertdemo.errors import NotFound

OPEN = ("queued", "running")  # the states of a run that has not finished


@dataclass(frozen=True)
class RunRecord:
    """One run's row, read once."""

    id: int
    status: str  # queued | running | succeeded | failed | cancelled
    user: str
    step: int
    total_steps: int
    message: str
    history: tuple[dict, ...]  # one row per step: step, epoch, train_loss (and val_loss, val_macro_f1)
    config: dict  # TrainConfig.to_dict(), and "reason" when no person started it
    version_id: int | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: TrainingRun) -> RunRecord:
        return cls(run.id, run.status, run.user, run.step, run.total_steps, run.message, tuple(run.history or ()),
                   dict(run.config or {}), run.version_id, run.started_at, run.finished_at)

    @property
    def reason(self) -> str:
        return str(self.config.get("reason", ""))


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as its row keeps it."""

    status: str  # succeeded | failed | cancelled
    message: str
    step: int = 0
    total_steps: int = 0
    history: tuple[dict, ...] = ()
    version_id: int | None = None  # the version it saved


# --------------------------------------------------------------------------- writing
def create_run(s: Session, user: str, config: dict) -> TrainingRun:
    """A new run, marked running."""
    run = TrainingRun(user=user, config=config, status="running")
    s.add(run)
    s.flush()
    return run


def open_run(s: Session, user: str, config: dict) -> int:
    """Record a run that starts now; returns its id."""
    return create_run(s, user, config).id


def record_progress(s: Session, run_id: int, step: int, total_steps: int) -> None:
    """How far the run got (written every few seconds while it trains)."""
    s.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(step=step, total_steps=total_steps))


def finish_run(s: Session, run_id: int, outcome: RunOutcome) -> None:
    """Record how the run ended (NotFound for an unknown id)."""
    run = get_run(s, run_id)
    run.status, run.message, run.finished_at = outcome.status, outcome.message, now()
    run.step, run.total_steps, run.history = outcome.step, outcome.total_steps, list(outcome.history)
    run.version_id = outcome.version_id


def succeed_saved_runs(s: Session) -> list[tuple[int, str]]:
    """Runs left open whose version was registered (the process died between saving the version
    and recording the run): recorded succeeded with their version. Returns (run id, version name)."""
    closed = []
    for run in unfinished_runs(s):
        v = version_of_run(s, run.id)
        if v is None:
            continue
        f1 = (v.metrics or {}).get("macro_f1")
        run.status, run.finished_at, run.version_id = "succeeded", now(), v.id
        run.message = (f"Version {v.name} saved" + (f" (macro-F1 {f1:.4f})" if f1 is not None else "")
                       + (" and now serving" if v.is_active else "; not activated")
                       + "; the app stopped before this run was recorded.")
        closed.append((run.id, v.name))
    s.flush()
    return closed


def fail_stale_runs(s: Session, reason: str = "the app stopped during this run") -> int:
    """Runs left 'running' by a process that died: mark them failed (called at start)."""
    res = s.execute(update(TrainingRun).where(TrainingRun.status.in_(OPEN))
                    .values(status="failed", finished_at=now(), message=reason))
    return res.rowcount or 0


# --------------------------------------------------------------------------- reading
def get_run(s: Session, run_id: int) -> TrainingRun:
    """The run's row, or NotFound."""
    run = s.get(TrainingRun, run_id)
    if run is None:
        raise NotFound(f"No training run with id {run_id}.")
    return run


def read_run(s: Session, run_id: int) -> RunRecord:
    """The run, or NotFound."""
    return RunRecord.of(get_run(s, run_id))


def latest_run(s: Session) -> TrainingRun | None:
    return s.scalar(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1))


def latest_record(s: Session) -> RunRecord | None:
    """The newest run (what the Train tab shows after a restart), or None before the first."""
    run = latest_run(s)
    return RunRecord.of(run) if run is not None else None


def unfinished_runs(s: Session) -> list[TrainingRun]:
    """Runs still marked queued or running (at start: left so by a process that died)."""
    return list(s.scalars(select(TrainingRun).where(TrainingRun.status.in_(OPEN))))


def base_model_of(s: Session, version_id: int) -> str:
    """The base encoder version `version_id` was fine-tuned from (a quick retrain from it must use the
    same one); NotFound for an unknown id."""
    base = s.scalar(select(ModelVersion.base_model).where(ModelVersion.id == version_id))
    if base is None:
        raise NotFound(f"No model version with id {version_id}.")
    return base
