"""The training runner: one background run at a time, live progress, cancel, the run's row in the
database, and re-scoring the examples with a version once it serves (for the annotation queues).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.datasets import stratified_split
from bertdemo.db import examples, versions
from bertdemo.db.decisions import awaiting_adjudication
from bertdemo.db.models import now
from bertdemo.errors import Busy, UserError
from bertdemo.model import vectors
from bertdemo.model.classifier import Classifier
from bertdemo.training import serving
from bertdemo.training.config import FitResult, Progress, TrainConfig, TrainingCancelled, TrainingError
from bertdemo.training.evaluation import evaluate
from bertdemo.training.loop import check_labels, fit, start_model
from bertdemo.training.registry import Registry, VersionInfo
from bertdemo.training.weights import example_weights
from bertdemo.training.zerogpu import fit_and_save, gpu_task, zero_gpu

log = logging.getLogger(__name__)
MIN_EXAMPLES = 20


@dataclass(frozen=True)
class JobStatus:
    state: str  # idle | running | succeeded | failed | cancelled
    run_id: int | None = None
    step: int = 0
    total_steps: int = 0
    message: str = ""
    history: tuple[dict, ...] = ()
    phase: str = ""  # preparing | training | saving | scoring
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


@dataclass(frozen=True)
class TrainingInputs:
    """What one run trains on, read from the database when it starts."""

    snapshot: list[tuple[int, str, str]]  # (example id, text, label) of every labelled example
    split: tuple[list[str], np.ndarray, list[str], np.ndarray]  # train texts, label ids, val texts, label ids
    source: str  # the start model: the base encoder's source or the active version's folder
    start_name: str  # "the base encoder" or the active version's name, for messages
    awaiting: int = 0  # labelled items left out: their annotators disagree and no admin decided yet
    val_datasets: tuple[str | None, ...] = ()  # the dataset of each validation example, in split order
    # each training example's weight in the loss (TrainConfig.confidence_weighted, general_weight), in split
    # order; None: all 1
    train_weights: np.ndarray | None = None


class JobRunner:
    def __init__(self, settings: Settings, engine: Engine, registry: Registry) -> None:
        self.settings, self.engine, self.registry = settings, engine, registry
        self._lock = threading.Lock()
        self._status = JobStatus(state="idle")
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._rescore_thread: threading.Thread | None = None
        self.last_rescore: tuple[str, int] | None = None  # (version name, examples scored)

    def status(self) -> JobStatus:
        return self._status

    def _set(self, **changes: object) -> None:
        self._status = replace(self._status, **changes)

    def start(self, config: TrainConfig, user: str, activate: bool = True, reason: str = "") -> int:
        """Start a run in a background thread; refuse while one is running. `reason`: why it
        started, kept with the run and shown in the Train tab."""
        with self._lock:
            if self._status.running:
                raise Busy(f"A training run (#{self._status.run_id}) is already in progress; "
                              "wait for it or cancel it first.")
            run_id = self._open_run(config, user, reason)
            self._cancel.clear()
            self._thread = threading.Thread(target=self._execute, args=(run_id, config, user, activate),
                                            name=f"train-{run_id}", daemon=True)
            self._thread.start()
        return run_id

    def run_sync(self, config: TrainConfig, user: str, activate: bool = True) -> JobStatus:
        """Same as start(), in the calling thread (CLI); raises TrainingError on failure."""
        with self._lock:
            if self._status.running:
                raise Busy("A training run is already in progress.")
            run_id = self._open_run(config, user)
        self._execute(run_id, config, user, activate)
        if self._status.state != "succeeded":
            raise TrainingError(self._status.message)
        return self._status

    def cancel(self) -> bool:
        if not self._status.running:
            return False
        self._cancel.set()
        return True

    def wait(self, timeout: float | None = None) -> JobStatus:
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self._status

    def activate(self, version_id: int, user: str = "system", reason: str = "") -> VersionInfo:
        """Serve `version_id` (any version: a newer one, or a rollback) and re-score the examples
        with it in a background thread, so the request returns as soon as the swap is done."""
        info = self.registry.activate(version_id, user=user, reason=reason)
        self._rescore_in_background(info, self.registry.active())
        return info

    def rescore_if_missing(self) -> bool:
        """Re-score in the background when the active version has no stored scores (the process
        died while re-scoring after an activation). True when a re-scoring was started."""
        info = self.registry.active_version()
        if info is None:
            return False
        with Session(self.engine) as s:
            if not examples.has_examples(s):
                return False
            scored = versions.has_scores(s, info.id)
        if scored and (self.registry.folder(info) / vectors.VECTORS_FILE).exists():
            self.prepare_serving_if_pending()  # scores stored; the int8 graph may still be to build
            return False
        log.info("version %s has no stored scores or embeddings: re-scoring in the background", info.name)
        self._rescore_in_background(info, self.registry.active())
        return True

    def prepare_serving_if_pending(self) -> bool:
        """Build and gate the active version's int8 graph in the background when that is still to
        do (training/serving.py). True when it was started."""
        vid = self.registry.active_id()
        state = self.registry.serving.get(vid) if vid is not None else None
        if state is None or not state.pending:
            return False
        self._rescore_in_background(self.registry.get(vid), self.registry.active(), rescore=False)
        return True

    def _rescore_in_background(self, info: VersionInfo, clf: Classifier, rescore: bool = True) -> None:
        t = threading.Thread(target=self._rescore_quietly, args=(info, clf, rescore), name=f"rescore-{info.name}",
                             daemon=True)
        self._rescore_thread = t
        t.start()

    def wait_rescore(self, timeout: float | None = None) -> None:
        t = self._rescore_thread
        if t is not None:
            t.join(timeout)

    def _rescore_quietly(self, info: VersionInfo, clf: Classifier, rescore: bool = True) -> None:
        """The int8 serving path first (built and gated if still to do), so that re-scoring runs on it."""
        try:
            self.registry.prepare_serving(info, clf)
            if not rescore:
                return
            n = self.rescore(info, clf)
            self.last_rescore = (info.name, n)
            log.info("re-scored %d examples with %s", n, info.name)
        except Exception:  # a background thread must log; the queues keep the old scores
            log.exception("re-scoring with %s failed", info.name)

    def training_inputs(self, config: TrainConfig) -> TrainingInputs:
        """Read and check what a run trains on; writes nothing. Under `accelerate launch` every
        process calls it, so a bad input stops them all with the same message."""
        labels = self.settings.labels
        with Session(self.engine) as s:
            snapshot = examples.labeled_examples(s)
            contested = set(awaiting_adjudication(s))
            dataset_of = examples.datasets_of(s, [row[0] for row in snapshot])
            confidence = examples.label_confidences(s, [row[0] for row in snapshot]) if config.confidence_weighted else {}
        # the final label: an adjudicated item trains on the admin's label (its current one); an item
        # whose annotators disagree and that nobody adjudicated yet has no final label: left out
        before = len(snapshot)
        snapshot = [row for row in snapshot if row[0] not in contested]
        if len(snapshot) < MIN_EXAMPLES:
            raise TrainingError(f"Training needs at least {MIN_EXAMPLES} labelled examples; "
                                f"the database has {len(snapshot)}. Label or import more first.")
        y = np.array([labels.index(lab) for _i, _t, lab in snapshot])
        check_labels(y, labels, min_per_class=2)
        texts = [t for _i, t, _l in snapshot]
        groups = [dataset_of.get(i) for i, _t, _l in snapshot]
        tr, va = stratified_split(y, config.val_fraction, config.seed, groups)
        source, start_name = self.settings.model_source, "the base encoder"
        if config.init_from == "active":
            current = self.registry.active_version()
            if current is None:
                raise TrainingError("'Start from the active version' needs an active version; "
                                    "there is none yet. Start from the base encoder instead.")
            source, start_name = str(self.registry.folder(current)), current.name
        split = ([texts[i] for i in tr], y[tr], [texts[i] for i in va], y[va])
        weights = None
        if confidence or config.general_weight != 1.0:
            weights = example_weights([confidence.get(snapshot[i][0]) for i in tr], [groups[i] for i in tr], y[tr],
                                      config.general_weight, config.keep_class_shares)
        return TrainingInputs(snapshot, split, source, start_name, before - len(snapshot),
                              tuple(groups[i] for i in va), weights)

    def evaluate(self, clf: Classifier, inputs: TrainingInputs, result: FitResult) -> FitResult:
        """`result` with macro-F1 per dataset and the calibration of the validation split added
        (training/evaluation.py), in its fields and its text report."""
        _tr, _ytr, val_texts, y_val = inputs.split
        ev = evaluate(clf.predict_proba(val_texts, batch_size=128), y_val, inputs.val_datasets, self.settings.labels)
        return replace(result, per_dataset=ev.per_dataset, ece=ev.ece, reliability=ev.reliability,
                       report=result.report.rstrip() + "\n\n" + ev.lines() + "\n")

    # ------------------------------------------------------------------ internals
    def _open_run(self, config: TrainConfig, user: str, reason: str = "") -> int:
        with Session(self.engine) as s, s.begin():
            run_id = versions.create_run(s, user, config.to_dict() | ({"reason": reason} if reason else {})).id
        self._status = JobStatus(state="running", run_id=run_id, phase="preparing", started=time.time(),
                                 message="Preparing the data", reason=reason)
        return run_id

    def _finish(self, run_id: int, state: str, message: str, version_id: int | None = None) -> None:
        self._record(run_id, state, message, version_id)
        self._set(state=state, message=message, phase="")

    def _record(self, run_id: int, state: str, message: str, version_id: int | None = None) -> None:
        """Write the run's outcome to the database (the in-memory status is left as it is)."""
        st = self._status
        with Session(self.engine) as s, s.begin():
            run = versions.get_run(s, run_id)
            run.status, run.message, run.finished_at = state, message, now()
            run.step, run.total_steps, run.history = st.step, st.total_steps, list(st.history)
            run.version_id = version_id

    def _execute(self, run_id: int, config: TrainConfig, user: str, activate: bool) -> None:
        labels = self.settings.labels
        scratch = self.settings.models_dir / f".run-{run_id}"  # weights from a ZeroGPU worker
        try:
            inputs = self.training_inputs(config)
            snapshot, split, source, start_name = inputs.snapshot, inputs.split, inputs.source, inputs.start_name
            self._set(phase="training", message=f"Loading {start_name}")
            if zero_gpu():
                # ZeroGPU: the GPU call runs in a worker process; it saves the weights to disk
                self._set(message=f"Training from {start_name} on a ZeroGPU worker (no live progress)")
                result = gpu_task(fit_and_save)(source, labels, self.settings.device, self.settings.max_length,
                                                *split, config, str(scratch), inputs.train_weights)
                clf = Classifier.load(scratch, labels, self.settings.device, self.settings.max_length)
                last = result.history[-1]["step"] if result.history else 0
                self._set(step=last, total_steps=last, history=tuple(result.history))
            else:
                # a fresh copy: the serving classifier is never touched by training
                clf = start_model(source, labels, self.settings.device, self.settings.max_length, config)
                result = fit(clf, *split, config, on_progress=self._progress_writer(run_id),
                             should_stop=self._cancel.is_set, sample_weights=inputs.train_weights)
            result = self.evaluate(clf, inputs, result)
            log.info("run %d finished: macro-F1 %.4f\n%s", run_id, result.macro_f1, result.report)
            self._set(phase="saving", message="Saving the new version", report=result.report,
                      macro_f1=result.macro_f1)
            validation = [(t, labels[int(i)]) for t, i in zip(split[2], split[3])]
            info = self.registry.save(clf, result, config, run_id, user, snapshot, validation)
            clf.name = info.name  # the Predict tab shows the serving version's name
            serving.reset_precision(clf, self.settings.serving)  # serve as a freshly loaded version would
            self._set(version_name=info.name)
            done = (f"Version {info.name} saved (macro-F1 {result.macro_f1:.4f})"
                    + (" and now serving." if activate else ".")
                    + (f" {inputs.awaiting} labelled items await adjudication (their annotators disagree) "
                       "and were left out." if inputs.awaiting else ""))
            if activate:
                self.registry.activate(info.id, clf, user=user, reason=f"served when trained (run #{run_id})")
                # the run's outcome is durable now; re-scoring is follow-up work that a later
                # start redoes if the process dies meanwhile (Services.start -> rescore_if_missing)
                self._record(run_id, "succeeded", done, info.id)
                self._set(phase="optimizing", message=f"Building and checking the int8 serving path of {info.name}")
                self.registry.prepare_serving(info, clf)
                self._set(phase="scoring", message=f"Re-scoring the examples with {info.name}")
                self.rescore(info, clf)
            self._finish(run_id, "succeeded", done, info.id)
        except TrainingCancelled as exc:
            self._finish(run_id, "cancelled", str(exc))
        except UserError as exc:  # too few labels, a bad option, ...: the message says what to do
            log.warning("run %d failed: %s", run_id, exc)
            self._finish(run_id, "failed", str(exc))
        except Exception as exc:  # a background job must record every failure
            log.exception("run %d crashed", run_id)
            self._finish(run_id, "failed", f"Training crashed: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _progress_writer(self, run_id: int):
        """The on_progress callback of one run: live status for the UI, the DB row every 5 s."""
        last_write = [0.0]

        def on_progress(p: Progress) -> None:
            row = {"step": p.step, "epoch": round(p.epoch, 4), "train_loss": p.train_loss}
            if p.val_loss is not None:
                row |= {"val_loss": p.val_loss, "val_macro_f1": p.val_macro_f1}
            self._set(step=p.step, total_steps=p.total_steps, history=self._status.history + (row,),
                      message=f"Step {p.step}/{p.total_steps}, epoch {p.epoch:.2f}, "
                              f"loss {p.train_loss:.3f}, {p.samples_per_s:.0f} examples/s")
            if time.time() - last_write[0] > 5 or p.step == p.total_steps:
                last_write[0] = time.time()
                log.info("run %d: %s", run_id, self._status.message)
                with Session(self.engine) as s, s.begin():
                    run = versions.get_run(s, run_id)
                    run.step, run.total_steps = p.step, p.total_steps

        return on_progress

    def rescore(self, info: VersionInfo, clf: Classifier) -> int:
        """Score every example with `clf` and store the result for the annotation queues, and the
        sentence embeddings of the same pass beside the version (similar examples, the map)."""
        with Session(self.engine) as s:
            rows = examples.all_texts(s)
        if not rows:
            return 0
        probs, vecs = clf.scores_and_embeddings([t for _i, t in rows], batch_size=128)
        ids = [i for i, _t in rows]
        with Session(self.engine) as s, s.begin():
            versions.save_scores(s, info.id, ids, probs, self.settings.labels)
        vectors.save(self.registry.folder(info) / vectors.VECTORS_FILE, ids, vecs)
        return len(rows)
