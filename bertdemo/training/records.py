"""A training run's records: its live status in memory (JobStatus, what the Train tab polls) and
its row in the database (written through db/runs.py: opened, progress every few seconds, outcome)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import runs
from bertdemo.training.config import Progress, TrainConfig

log = logging.getLogger(__name__)
WRITE_EVERY_S = 5.0  # how often a run's progress reaches its row (the live status changes every step)


@dataclass(frozen=True)
class JobStatus:
    state: str  # idle | running | succeeded | failed | cancelled
    run_id: int | None = None
    step: int = 0
    total_steps: int = 0
    message: str = ""
    history: tuple[dict, ...] = ()
    phase: str = ""  # preparing | training | saving | optimizing | scoring
    started: float = 0.0
    version_name: str | None = None
    macro_f1: float | None = None
    report: str = ""
    reason: str = ""  # why the run started, when not by a person's click (retrain every N labels)

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"

    def eta_s(self) -> float | None:
        if not self.running or self.step == 0 or not self.total_steps:
            return None
        return (time.time() - self.started) / self.step * (self.total_steps - self.step)


class RunRecords:
    """The current run's status (replaced, never mutated: a poll reads one consistent JobStatus)
    and the writes of its row."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._status = JobStatus(state="idle")

    def status(self) -> JobStatus:
        return self._status

    def update(self, **changes: object) -> None:
        self._status = replace(self._status, **changes)

    def open(self, config: TrainConfig, user: str, reason: str = "") -> int:
        """Record a run that starts now (its row, and a running status); returns its id."""
        with Session(self.engine) as s, s.begin():
            run_id = runs.open_run(s, user, config.to_dict() | ({"reason": reason} if reason else {}))
        self._status = JobStatus(state="running", run_id=run_id, phase="preparing", started=time.time(),
                                 message="Preparing the data", reason=reason)
        return run_id

    def record(self, run_id: int, state: str, message: str, version_id: int | None = None) -> None:
        """Write the run's outcome to its row (the in-memory status is left as it is)."""
        st = self._status
        outcome = runs.RunOutcome(state, message, st.step, st.total_steps, st.history, version_id)
        with Session(self.engine) as s, s.begin():
            runs.finish_run(s, run_id, outcome)

    def finish(self, run_id: int, state: str, message: str, version_id: int | None = None) -> None:
        """The run's outcome, in its row and in the status."""
        self.record(run_id, state, message, version_id)
        self.update(state=state, message=message, phase="")

    def progress_writer(self, run_id: int) -> Callable[[Progress], None]:
        """The on_progress callback of one run: live status for the UI, the row every WRITE_EVERY_S."""
        last_write = [0.0]

        def on_progress(p: Progress) -> None:
            row = {"step": p.step, "epoch": round(p.epoch, 4), "train_loss": p.train_loss}
            if p.val_loss is not None:
                row |= {"val_loss": p.val_loss, "val_macro_f1": p.val_macro_f1}
            self.update(step=p.step, total_steps=p.total_steps, history=self._status.history + (row,),
                        message=f"Step {p.step}/{p.total_steps}, epoch {p.epoch:.2f}, "
                                f"loss {p.train_loss:.3f}, {p.samples_per_s:.0f} examples/s")
            if time.time() - last_write[0] > WRITE_EVERY_S or p.step == p.total_steps:
                last_write[0] = time.time()
                log.info("run %d: %s", run_id, self._status.message)
                with Session(self.engine) as s, s.begin():
                    runs.record_progress(s, run_id, p.step, p.total_steps)

        return on_progress
