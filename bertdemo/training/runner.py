"""The training runner: one background run at a time (start, cancel, wait), the run itself as a
few steps (read the inputs, train, evaluate, save, serve), and re-scoring the examples with a
version once it serves (for the annotation queues). The run's status and row are in
training/records.py; what it trains on is read by training/inputs.py.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import replace
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.db import examples, versions
from bertdemo.errors import Busy, UserError
from bertdemo.model import vectors
from bertdemo.model.classifier import Classifier
from bertdemo.training import serving
from bertdemo.training.comparison import compare, review_set
from bertdemo.training.config import FitResult, TrainConfig, TrainingCancelled, TrainingError
from bertdemo.training.evaluation import evaluate
from bertdemo.training.inputs import TrainingInputs, read_inputs
from bertdemo.training.loop import fit, start_model
from bertdemo.training.records import JobStatus, RunRecords
from bertdemo.training.registry import Registry, VersionInfo
from bertdemo.training.zerogpu import fit_and_save, gpu_task, zero_gpu

log = logging.getLogger(__name__)


class JobRunner:
    """Runs one training run at a time in a background thread, and re-scoring after an activation."""

    def __init__(self, settings: Settings, engine: Engine, registry: Registry) -> None:
        self.settings, self.engine, self.registry = settings, engine, registry
        self.records = RunRecords(engine)  # the current run's status and its row
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._rescore_thread: threading.Thread | None = None
        self.last_rescore: tuple[str, int] | None = None  # (version name, examples scored)

    def status(self) -> JobStatus:
        return self.records.status()

    def start(self, config: TrainConfig, user: str, activate: bool = True, reason: str = "") -> int:
        """Start a run in a background thread; refuse while one is running. `reason`: why it
        started, kept with the run and shown in the Train tab."""
        with self._lock:
            if self.status().running:
                raise Busy(f"A training run (#{self.status().run_id}) is already in progress; "
                           "wait for it or cancel it first.")
            run_id = self.records.open(config, user, reason)
            self._cancel.clear()
            self._thread = threading.Thread(target=self._execute, args=(run_id, config, user, activate),
                                            name=f"train-{run_id}", daemon=True)
            self._thread.start()
        return run_id

    def run_sync(self, config: TrainConfig, user: str, activate: bool = True) -> JobStatus:
        """Same as start(), in the calling thread (CLI); raises TrainingError on failure."""
        with self._lock:
            if self.status().running:
                raise Busy("A training run is already in progress.")
            run_id = self.records.open(config, user)
        self._execute(run_id, config, user, activate)
        if self.status().state != "succeeded":
            raise TrainingError(self.status().message)
        return self.status()

    def cancel(self) -> bool:
        if not self.status().running:
            return False
        self._cancel.set()
        return True

    def wait(self, timeout: float | None = None) -> JobStatus:
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self.status()

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
        """Read and check what a run trains on (training/inputs.py); writes nothing."""
        return read_inputs(self.settings, self.engine, self.registry, config)

    def evaluate(self, clf: Classifier, inputs: TrainingInputs, result: FitResult) -> FitResult:
        """`result` with macro-F1 per dataset and the calibration of the validation split added
        (training/evaluation.py), in its fields and its text report."""
        data = inputs.data
        ev = evaluate(clf.predict_proba(data.val_texts, batch_size=128), data.val_labels, inputs.val_datasets,
                      self.settings.labels)
        return replace(result, per_dataset=ev.per_dataset, ece=ev.ece, reliability=ev.reliability,
                       report=result.report.rstrip() + "\n\n" + ev.lines() + "\n")

    # ------------------------------------------------------------------ one run, step by step
    def _execute(self, run_id: int, config: TrainConfig, user: str, activate: bool) -> None:
        records = self.records
        scratch = self.settings.models_dir / f".run-{run_id}"  # weights from a ZeroGPU worker
        try:
            inputs = self.training_inputs(config)
            clf, result = self._train(run_id, config, inputs, scratch)
            result = self.evaluate(clf, inputs, result)
            log.info("run %d finished: macro-F1 %.4f\n%s", run_id, result.macro_f1, result.report)
            info = self._save(run_id, clf, result, config, user, inputs)
            refused = self._review(info, clf, result) if activate else None
            serve = activate and refused is None
            done = (f"Version {info.name} saved (macro-F1 {result.macro_f1:.4f})"
                    + (" and now serving." if serve else ".")
                    + (f" Not served: {refused} An admin may still activate it in Versions." if refused else "")
                    + (f" {inputs.awaiting} labelled items await adjudication (their annotators disagree) "
                       "and were left out." if inputs.awaiting else ""))
            if serve:
                self._serve(run_id, info, clf, user, done)
            records.finish(run_id, "succeeded", done, info.id)
        except TrainingCancelled as exc:
            records.finish(run_id, "cancelled", str(exc))
        except UserError as exc:  # too few labels, a bad option, ...: the message says what to do
            log.warning("run %d failed: %s", run_id, exc)
            records.finish(run_id, "failed", str(exc))
        except Exception as exc:  # a background job must record every failure
            log.exception("run %d crashed", run_id)
            records.finish(run_id, "failed", f"Training crashed: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _train(self, run_id: int, config: TrainConfig, inputs: TrainingInputs,
               scratch: Path) -> tuple[Classifier, FitResult]:
        """A fresh copy of the start model, fine-tuned: the serving classifier is never touched."""
        s, name = self.settings, inputs.start_name
        self.records.update(phase="training", message=f"Loading {name}")
        if not zero_gpu():
            clf = start_model(inputs.source, s.labels, s.device, s.max_length, config)
            result = fit(clf, inputs.data, config, on_progress=self.records.progress_writer(run_id),
                         should_stop=self._cancel.is_set)
            return clf, result
        # ZeroGPU: the GPU call runs in a worker process; it saves the weights to disk
        self.records.update(message=f"Training from {name} on a ZeroGPU worker (no live progress)")
        result = gpu_task(fit_and_save)(inputs.source, s.labels, s.device, s.max_length, inputs.data, config,
                                        str(scratch))
        last = result.history[-1]["step"] if result.history else 0
        self.records.update(step=last, total_steps=last, history=tuple(result.history))
        return Classifier.load(scratch, s.labels, s.device, s.max_length), result

    def _save(self, run_id: int, clf: Classifier, result: FitResult, config: TrainConfig, user: str,
              inputs: TrainingInputs) -> VersionInfo:
        """Register the trained classifier as a new version, named and precise as a loaded one."""
        self.records.update(phase="saving", message="Saving the new version", report=result.report,
                            macro_f1=result.macro_f1)
        info = self.registry.save(clf, result, config, run_id, user, inputs.snapshot,
                                  inputs.validation_rows(self.settings.labels))
        clf.rename(info.name)  # the Predict tab shows the serving version's name
        serving.reset_precision(clf, self.settings.serving)  # serve as a freshly loaded version would
        self.records.update(version_name=info.name)
        return info

    def _review(self, info: VersionInfo, clf: Classifier, result: FitResult) -> str | None:
        """The activation gate before a version serves by itself (training/comparison.py): the new
        version against the serving one on its validation split, and the behaviour suite. None when
        it may serve (or nothing serves yet: the first version has no baseline), else the sentence
        naming the checks that failed. The comparison's report joins the run's report."""
        active = self.registry.active_version()
        if active is None:
            return None
        self.records.update(phase="reviewing", message=f"Comparing {info.name} with the serving {active.name}: "
                                                       "slices with intervals, behaviour tests")
        labels = self.settings.labels
        rs = review_set(self.engine, self.registry.folder(info), info.name, labels)
        c = compare((active.name, self.registry.active().predict_proba), (info.name, clf.predict_proba), rs, labels)
        self.records.update(report=result.report.rstrip() + "\n\n" + c.report() + "\n")
        return None if c.gate.passed else f"the activation gate failed against {active.name}: " + \
            "; ".join(c.gate.failed) + "."

    def _serve(self, run_id: int, info: VersionInfo, clf: Classifier, user: str, done: str) -> None:
        self.registry.activate(info.id, clf, user=user, reason=f"served when trained (run #{run_id})")
        # the run's outcome is durable now; re-scoring is follow-up work that a later
        # start redoes if the process dies meanwhile (Services.start -> rescore_if_missing)
        self.records.record(run_id, "succeeded", done, info.id)
        self.records.update(phase="optimizing", message=f"Building and checking the int8 serving path of {info.name}")
        self.registry.prepare_serving(info, clf)
        self.records.update(phase="scoring", message=f"Re-scoring the examples with {info.name}")
        self.rescore(info, clf)

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
