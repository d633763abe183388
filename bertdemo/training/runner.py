"""The training runner: one background run at a time (start, cancel, wait), the run itself as a
few steps (read the inputs, train, evaluate, save, review, serve), and the background work after a
version starts serving (training/follow_up.py: its int8 graph, re-scoring for the annotation
queues), which the next activation abandons. Each step reports its phase with its own count
(training/records.py, which also keeps the run's row); what a run trains on is read by
training/inputs.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.db import examples, versions
from bertdemo.db.locks import TrainingLock
from bertdemo.errors import Busy, Conflict, UserError
from bertdemo.model import vectors
from bertdemo.model.classifier import Classifier
from bertdemo.training import behaviour_runs, serving, stopping
from bertdemo.training.behaviour import stored_suite
from bertdemo.training.comparison import compare, review_set
from bertdemo.training.config import FitResult, TrainConfig, TrainingCancelled, TrainingError
from bertdemo.training.evaluation import evaluate
from bertdemo.training.follow_up import Abandoned, Ticket, ignore
from bertdemo.training.follow_up import rescore as rescore_chunks
from bertdemo.training.inputs import TrainingInputs, read_inputs
from bertdemo.training.loop import fit, start_model
from bertdemo.training.processes import RunElsewhere, await_graph
from bertdemo.training.records import PHASE_NAMES, JobStatus, Phase, Report, RunRecords
from bertdemo.training.registry import Registry, VersionInfo
from bertdemo.training.topics import recipe_line
from bertdemo.training.zerogpu import fit_and_save, gpu_task, zero_gpu

log = logging.getLogger(__name__)
BACKGROUND_NICE = 10  # a background thread's nice value: predictions (nice 0) win the CPU
CHUNK = 512  # texts per chunk of evaluation and review: the phase's count moves, a cancel is seen


def _behind_predictions(work: Callable[..., None]) -> Callable[..., None]:
    """`work` run at a lower CPU priority (nice BACKGROUND_NICE) in the thread that calls it: on
    Linux a thread's priority is its own and passes to the threads it starts (its forward passes'
    OpenMP workers), so people's predictions get the cores first while a run or the work after an
    activation goes on (the CLI's run_sync, in the main thread, keeps its priority)."""

    def lowered(*args: object) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except (AttributeError, OSError):  # not Linux, or not allowed: run at the same priority
            pass
        work(*args)

    return lowered


class JobRunner:
    """Runs one training run at a time in a background thread, and re-scoring after an activation."""

    def __init__(self, settings: Settings, engine: Engine, registry: Registry) -> None:
        self.settings, self.engine, self.registry = settings, engine, registry
        self.records = RunRecords(engine)  # the current run's status and its row
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._rescore_thread: threading.Thread | None = None  # the background work after the last activation
        self._ticket = Ticket()  # that work's; abandoned when another version starts serving
        self.last_rescore: tuple[str, int] | None = None  # (version name, examples scored)
        self.lock = TrainingLock(engine)  # one run at a time across every process on the database (db/locks.py)
        self._others = RunElsewhere(engine, self.lock)

    def status(self) -> JobStatus:
        """This process's run; when it runs none, a run another process runs (looked up at most
        every processes.ELSEWHERE_EVERY_S), so the Train tab and the status line show it there too."""
        own = self.records.status()
        if own.running:
            return own
        return self._others.status() or own

    def _claim(self) -> None:
        """Take the training lock for a run about to open (the caller holds self._lock): Busy,
        naming the run, while this process or another runs one."""
        if self.records.status().running:
            st = self.records.status()
            raise Busy(f"A training run (#{st.run_id}) is already in progress; wait for it or cancel it first.")
        if not self.lock.acquire():
            st = self._others.status(fresh=True)
            raise Busy((st.message if st else "A training run is in progress in another app process on this "
                        "database.") + " Wait for it, or cancel it there, first.")

    def start(self, config: TrainConfig, user: str, activate: bool = True, reason: str = "",
              first: Callable[[TrainingInputs], None] | None = None) -> int:
        """Start a run in a background thread; refuse while one is running. `reason`: why it
        started, kept with the run and shown in the Train tab. `first`: called in the run's thread
        with its inputs before training (the first start's quick version, Services.start)."""
        with self._lock:
            self._claim()
            try:
                run_id = self.records.open(config, user, reason)
                self._cancel.clear()
                self._thread = threading.Thread(target=_behind_predictions(self._execute),
                                                args=(run_id, config, user, activate, first), name=f"train-{run_id}",
                                                daemon=True)
                self._thread.start()
            except BaseException:
                self.lock.release()
                raise
        return run_id

    def run_sync(self, config: TrainConfig, user: str, activate: bool = True) -> JobStatus:
        """Same as start(), in the calling thread (CLI); raises TrainingError on failure."""
        with self._lock:
            self._claim()
            try:
                run_id = self.records.open(config, user)
            except BaseException:
                self.lock.release()
                raise
        self._execute(run_id, config, user, activate)
        st = self.records.status()
        if st.state != "succeeded":
            raise TrainingError(st.message)
        return st

    def cancel(self) -> bool:
        """Stop this process's run at its next step (False when none runs); Conflict when the run
        is another process's (cancel it there)."""
        if not self.records.status().running:
            if (st := self._others.status()) is not None:
                raise Conflict(f"Training run #{st.run_id} runs in another app process; cancel it from a page "
                               "served by that process.")
            return False
        self._cancel.set()
        return True

    def wait(self, timeout: float | None = None) -> JobStatus:
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self.records.status()

    def activate(self, version_id: int, user: str = "system", reason: str = "") -> VersionInfo:
        """Serve `version_id` (any version: a newer one, or a rollback) on PyTorch at once, and
        abandon the previous version's background work; its int8 graph and the re-scoring follow
        in a background thread (the request returns as soon as the swap is done)."""
        info = self.registry.activate(version_id, user=user, reason=reason)
        self._rescore_in_background(info, self.registry.active())
        return info

    def follow(self, info: VersionInfo, clf: Classifier) -> None:
        """`info` serves here since another process activated it (Registry.pick_up): abandon the
        previous version's background work and do what an activation does after the swap, but
        no re-scoring (the activating process re-scores; the scores are shared) and no int8
        build of its own while the activating process builds it (training/processes.py)."""
        self._rescore_in_background(info, clf, rescore=False, picked_up=True)

    def activity(self) -> str:
        """What the serving version's background work does now ('' when nothing runs)."""
        a = self.records.activity()
        return a.text() if a is not None else ""

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
        under_way = self.records.activity()
        if under_way is not None and under_way.version == info.name:
            return False  # its background work is re-scoring now
        if scored and (self.registry.folder(info) / vectors.VECTORS_FILE).exists():
            self.prepare_serving_if_pending()  # scores stored; the int8 graph may still be to build
            return False
        log.info("version %s has no stored scores or embeddings: re-scoring in the background", info.name)
        self._rescore_in_background(info, self.registry.active())
        return True

    def prepare_serving_if_pending(self, built_elsewhere: bool = False) -> bool:
        """Build and gate the active version's int8 graph in the background when that is still to
        do (training/serving.py); with `built_elsewhere`, wait for another process to build it
        first (training/processes.py: await_graph). True when it was started."""
        vid = self.registry.active_id()
        state = self.registry.serving.get(vid) if vid is not None else None
        if state is None or not state.pending:
            return False
        self._rescore_in_background(self.registry.get(vid), self.registry.active(), rescore=False,
                                    picked_up=built_elsewhere)
        return True

    def _new_ticket(self, info: VersionInfo) -> Ticket:
        """A ticket for `info`'s background work; the previous version's work is abandoned."""
        with self._lock:
            self._ticket.abandon()
            self._ticket = Ticket(info.name)
            return self._ticket

    def _rescore_in_background(self, info: VersionInfo, clf: Classifier, rescore: bool = True,
                               picked_up: bool = False) -> None:
        ticket = self._new_ticket(info)
        t = threading.Thread(target=_behind_predictions(self._rescore_quietly),
                             args=(info, clf, ticket, rescore, picked_up),
                             name=f"rescore-{info.name}", daemon=True)
        self._rescore_thread = t
        t.start()

    def wait_rescore(self, timeout: float | None = None) -> None:
        t = self._rescore_thread
        if t is not None:
            t.join(timeout)

    def _rescore_quietly(self, info: VersionInfo, clf: Classifier, ticket: Ticket, rescore: bool = True,
                         picked_up: bool = False) -> None:
        try:
            state = self.registry.serving.get(info.id)
            if picked_up and state is not None and state.pending:
                await_graph(self.registry.folder(info), ticket)  # the activating process builds it
            self._follow_up(info, clf, ticket, rescore)
        except Exception:  # a background thread must log; the queues keep the old scores
            log.exception("the background work of %s failed", info.name)

    def _follow_up(self, info: VersionInfo, clf: Classifier, ticket: Ticket, rescore: bool = True,
                   run_id: int | None = None) -> None:
        """The int8 serving path first (built, gated and behaviour-tested if still to do), so that
        re-scoring runs on it; stops quietly when `ticket` is abandoned (another version serves)."""
        report = self.records.reporter(info.name, run_id)
        report(Phase("serving"))
        try:
            self.registry.prepare_serving(info, clf, report, ticket)
            if rescore:
                n = self.rescore(info, clf, report=report, ticket=ticket)
                self.last_rescore = (info.name, n)
                log.info("re-scored %d examples with %s", n, info.name)
        except Abandoned as exc:
            log.info("%s", exc)
        finally:
            self.records.end_activity(info.name)

    def training_inputs(self, config: TrainConfig) -> TrainingInputs:
        """Read and check what a run trains on (training/inputs.py); writes nothing."""
        return read_inputs(self.settings, self.engine, self.registry, config)

    def evaluate(self, clf: Classifier, inputs: TrainingInputs, result: FitResult, config: TrainConfig) -> FitResult:
        """`result` with macro-F1 per dataset and the calibration of the validation split added
        (training/evaluation.py), in its fields and its text report, and the recipe's measured
        figures on topics it never saw (training/topics.py) in the report."""
        data = inputs.data
        proba = self._counted(clf.predict_proba, Phase("evaluating", 0, len(data.val_texts), "examples"))
        ev = evaluate(proba(data.val_texts), data.val_labels, inputs.val_datasets, self.settings.labels)
        trained_on = f"Trained on: {inputs.trained_on}.\n" if inputs.trained_on else ""  # a quick retrain's set
        return replace(result, per_dataset=ev.per_dataset, ece=ev.ece, reliability=ev.reliability,
                       trained_on=inputs.trained_on, report=result.report.rstrip() + "\n\n" + ev.lines() + "\n"
                       + recipe_line(config) + "\n" + trained_on)

    def _counted(self, proba, phase: Phase):
        """`proba` (a predict_proba) scoring in chunks of CHUNK that advance `phase` in the run's
        status (its total counts the texts of every call); while evaluating (before anything is
        saved) a cancelled run stops between chunks."""
        self.records.update(phase=phase)

        def counted(texts: list[str]) -> np.ndarray:
            out = []
            for i in range(0, len(texts), CHUNK):
                if self._cancel.is_set() and phase.name == "evaluating":
                    raise TrainingCancelled(f"the run was cancelled while {PHASE_NAMES[phase.name]}")
                out.append(proba(texts[i:i + CHUNK], batch_size=128))
                st = self.records.status().phase
                self.records.update(phase=st.advanced(st.done + len(out[-1])))
            return np.concatenate(out) if out else np.zeros((0, len(self.settings.labels)))

        return counted

    # ------------------------------------------------------------------ one run, step by step
    def _execute(self, run_id: int, config: TrainConfig, user: str, activate: bool,
                 first: Callable[[TrainingInputs], None] | None = None) -> None:
        records = self.records
        scratch = self.settings.models_dir / f".run-{run_id}"  # weights from a ZeroGPU worker
        try:
            inputs = self.training_inputs(config)
            if first is not None:
                first(inputs)
            clf, result = self._train(run_id, config, inputs, scratch)
            result = self.evaluate(clf, inputs, result, config)
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
            self.lock.release()  # taken by start / run_sync (_claim)

    def _train(self, run_id: int, config: TrainConfig, inputs: TrainingInputs,
               scratch: Path) -> tuple[Classifier, FitResult]:
        """A fresh copy of the start model, fine-tuned: the serving classifier is never touched."""
        s, name = self.settings, inputs.start_name
        self.records.enter("training", f"Loading {name}", config.max_steps or 0, "steps")
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
        self.records.enter("saving", "Saving the new version")
        self.records.update(report=result.report, macro_f1=result.macro_f1)
        info = self.registry.save(clf, result, config, run_id, user, inputs.snapshot,
                                  inputs.validation_rows(self.settings.labels))
        clf.rename(info.name)  # the Predict tab shows the serving version's name
        serving.reset_precision(clf, self.settings.serving)  # serve as a freshly loaded version would
        stopping.record_pool_quietly(self.engine, self.settings, info.id, clf.predict_proba)  # logs a failure
        self.records.update(version_name=info.name)
        return info

    def _review(self, info: VersionInfo, clf: Classifier, result: FitResult) -> str | None:
        """The activation gate before a version serves by itself (training/comparison.py): the new
        version against the serving one on its validation split, and the behaviour suite. None when
        it may serve (or nothing serves yet: the first version has no baseline), else the sentence
        naming the checks that failed. The comparison's report joins the run's report. A quick
        version serving is no baseline either: it stands in until the first fine-tune ends."""
        active = self.registry.active_version()
        if active is None or active.quick:  # a quick version (training/quick_first.py) never holds one back
            return None
        labels = self.settings.labels
        rs = review_set(self.engine, self.registry.folder(info), info.name, labels)
        tests = stored_suite(self.engine, labels)
        texts = {t for test in tests for c in test.cases for t in (c.text, *c.perturbed)}
        self.records.enter("reviewing", f"Comparing {info.name} with the serving {active.name}: both on "
                                        f"{info.name}'s validation split, then its behaviour tests",
                           2 * len(rs.texts) + len(texts), "texts")
        phase = self.records.status().phase
        c = compare((active.name, self._counted(self.registry.active().predict_proba, phase)),
                    (info.name, self._counted(clf.predict_proba, phase)), rs, labels, tests=tests)
        self.records.update(report=result.report.rstrip() + "\n\n" + c.report() + "\n")
        # the suite's results on the candidate are kept, as a run from the Train tab would keep them
        behaviour_runs.save(self.engine, info.id, behaviour_runs.PathRun("pytorch", "the activation gate",
                                                                         tuple(c.behaviour)))
        return None if c.gate.passed else f"the activation gate failed against {active.name}: " + \
            "; ".join(c.gate.failed) + "."

    def _serve(self, run_id: int, info: VersionInfo, clf: Classifier, user: str, done: str) -> None:
        """Serve the run's version on PyTorch at once; its int8 graph and the re-scoring follow in
        this thread (the run stays open and shows their phases) unless another activation
        abandons them."""
        self.records.enter("serving", f"Activating {info.name}")
        ticket = self._new_ticket(info)
        self.registry.activate(info.id, clf, user=user, reason=f"served when trained (run #{run_id})")
        # the run's outcome is durable now; re-scoring is follow-up work that a later
        # start redoes if the process dies meanwhile (Services.start -> rescore_if_missing)
        self.records.record(run_id, "succeeded", done, info.id)
        self.records.update(message=f"{info.name} serves on PyTorch; building and checking its int8 path, "
                                    "then re-scoring the examples")
        try:
            self._follow_up(info, clf, ticket, rescore=True, run_id=run_id)
        except Exception:  # the version serves and the run succeeded: the queues keep the old scores
            log.exception("the background work of %s failed", info.name)

    def rescore(self, info: VersionInfo, clf: Classifier, report: Report = ignore, ticket: Ticket | None = None) -> int:
        """Score every example with `clf` and store the result for the annotation queues, and the
        sentence embeddings of the same pass beside the version (similar examples, the map), in
        chunks (training/follow_up.py) that `report` follows and an abandoned `ticket` stops."""
        return rescore_chunks(self.engine, self.registry.folder(info) / vectors.VECTORS_FILE, info.id, clf,
                              self.settings.labels, report, ticket)
