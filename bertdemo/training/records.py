"""What a training run and the work after an activation are doing: their live status in memory
(JobStatus, what the Train tab, the status line and /training_status poll; Activity, the
background work of a version that just started serving), each as one Phase (name, done, total),
and a run's row in the database (written through db/runs.py: opened, progress every few seconds,
outcome)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import runs
from bertdemo.training.config import Progress, TrainConfig

log = logging.getLogger(__name__)
WRITE_EVERY_S = 5.0  # how often a run's progress reaches its row (the live status changes every step)
# what each phase is called on screen, in the order a run goes through them
PHASE_NAMES = {"preparing": "preparing the data", "training": "training", "evaluating": "evaluating",
               "saving": "saving", "reviewing": "reviewing (the activation gate)", "serving": "activating",
               "int8": "building and gating the int8 path", "behaviour": "behaviour tests on int8",
               "scoring": "re-scoring", "indexing": "indexing the sentence embeddings (similar examples)",
               "mapping": "laying out the corpus map"}


@dataclass(frozen=True)
class Phase:
    """One phase of a run or of an activation's background work and how far it got: `done` of
    `total` `unit` (total 0: a phase with no count, such as saving). Its own fraction and time
    left, so a run re-scoring 27,166 examples says so instead of sitting at 100% of its steps."""

    name: str = ""  # a PHASE_NAMES key; "" between runs
    done: int = 0
    total: int = 0
    unit: str = ""  # steps | examples | texts
    started: float = field(default_factory=time.time)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at this phase's pace so far (None before its first unit is done, and for
        the int8 build, whose steps take very different times)."""
        if not self.total or self.done <= 0 or self.done >= self.total or self.name == "int8":
            return None
        return ((now or time.time()) - self.started) / self.done * (self.total - self.done)

    def text(self) -> str:
        """'re-scoring 12,800 / 27,166 examples (47%), about 0.4 min left'; 'saving' for a phase
        without a count."""
        what = PHASE_NAMES.get(self.name, self.name)
        if not self.total:
            return what
        eta = self.eta_s()
        left = f", about {eta / 60:.1f} min left" if eta is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{what} {self.done:,} / {self.total:,}{unit} ({self.fraction:.0%}){left}"

    def advanced(self, done: int, total: int | None = None) -> Phase:
        return replace(self, done=done, total=self.total if total is None else total)


Report = Callable[[Phase], None]  # where a phase's progress goes (a run's status, an activation's)


@dataclass(frozen=True)
class JobStatus:
    state: str  # idle | running | succeeded | failed | cancelled
    run_id: int | None = None
    step: int = 0  # training steps (the run's length once it trained)
    total_steps: int = 0
    message: str = ""
    history: tuple[dict, ...] = ()
    phase: Phase = Phase()  # what runs now, with its own count
    started: float = 0.0
    version_name: str | None = None
    macro_f1: float | None = None
    report: str = ""
    reason: str = ""  # why the run started, when not by a person's click (retrain every N labels)

    @property
    def fraction(self) -> float:
        """The current phase's fraction while it has a count, else the training steps'."""
        if self.running and self.phase.total:
            return self.phase.fraction
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"

    def eta_s(self) -> float | None:
        """Time left in the current phase (None when it has no count or no pace yet)."""
        return self.phase.eta_s() if self.running else None

    def phase_text(self) -> str:
        return self.phase.text() if self.running and self.phase.name else ""


@dataclass(frozen=True)
class Activity:
    """The background work of a version that started serving (the int8 build and gate, behaviour
    tests on int8, re-scoring): while it runs the version serves on PyTorch."""

    version: str
    phase: Phase
    run_id: int | None = None  # the run that activated it, if a run did

    def text(self) -> str:
        return f"{self.version}: {self.phase.text()}"


class RunRecords:
    """The current run's status and the current activation's background work (each replaced,
    never mutated: a poll reads one consistent value), and the writes of the run's row."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._status = JobStatus(state="idle")
        self._activity: Activity | None = None

    def status(self) -> JobStatus:
        return self._status

    def update(self, **changes: object) -> None:
        self._status = replace(self._status, **changes)

    def enter(self, phase: str, message: str, total: int = 0, unit: str = "") -> None:
        """The run starts `phase` (a PHASE_NAMES key) of `total` `unit`, saying `message`."""
        self.update(phase=Phase(phase, 0, total, unit), message=message)

    def open(self, config: TrainConfig, user: str, reason: str = "") -> int:
        """Record a run that starts now (its row, and a running status); returns its id."""
        with Session(self.engine) as s, s.begin():
            run_id = runs.open_run(s, user, config.to_dict() | ({"reason": reason} if reason else {}))
        self._status = JobStatus(state="running", run_id=run_id, phase=Phase("preparing"), started=time.time(),
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
        self.update(state=state, message=message, phase=Phase())

    # ------------------------------------------------------------ an activation's background work
    def activity(self) -> Activity | None:
        """The background work of the version that started serving last, while it runs."""
        return self._activity

    def reporter(self, version: str, run_id: int | None = None) -> Report:
        """Where `version`'s background work reports its phases: its Activity, and the status of
        the run that activated it while that run is still open (it waits for this work)."""

        def report(phase: Phase) -> None:
            self._activity = Activity(version, phase, run_id)
            if run_id is not None and self._status.run_id == run_id and self._status.running:
                self.update(phase=phase)

        return report

    def end_activity(self, version: str) -> None:
        """`version`'s background work ended (done, failed or abandoned)."""
        current = self._activity
        if current is not None and current.version == version:
            self._activity = None

    # ------------------------------------------------------------ training steps
    def progress_writer(self, run_id: int) -> Callable[[Progress], None]:
        """The on_progress callback of one run: live status for the UI, the row every WRITE_EVERY_S."""
        last_write = [0.0]

        def on_progress(p: Progress) -> None:
            row = {"step": p.step, "epoch": round(p.epoch, 4), "train_loss": p.train_loss}
            if p.val_loss is not None:
                row |= {"val_loss": p.val_loss, "val_macro_f1": p.val_macro_f1}
            phase = self._status.phase
            phase = (phase if phase.name == "training" else Phase("training", unit="steps")).advanced(p.step,
                                                                                                  p.total_steps)
            self.update(step=p.step, total_steps=p.total_steps, history=self._status.history + (row,), phase=phase,
                        message=f"Step {p.step}/{p.total_steps}, epoch {p.epoch:.2f}, "
                                f"loss {p.train_loss:.3f}, {p.samples_per_s:.0f} examples/s")
            if time.time() - last_write[0] > WRITE_EVERY_S or p.step == p.total_steps:
                last_write[0] = time.time()
                log.info("run %d: %s", run_id, self._status.message)
                with Session(self.engine) as s, s.begin():
                    runs.record_progress(s, run_id, p.step, p.total_steps)

        return on_progress
