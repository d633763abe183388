"""Services: everything the app needs, built once from Settings (engine, registry, training
runner), and what an app start does: recover from a crash, import the bundled data, train
version 1 when there is none (serving a quick version meanwhile: training/quick_first.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.datasets import load_bundled
from bertdemo.db import examples, runs
from bertdemo.db.engine import init_db, make_engine
from bertdemo.errors import BadInput
from bertdemo.training import quick_first
from bertdemo.training.behaviour import stored_suite
from bertdemo.training.config import TrainConfig
from bertdemo.training.inputs import TrainingInputs
from bertdemo.training.processes import ActivationWatcher
from bertdemo.training.registry import Registry, pick_up
from bertdemo.training.runner import JobRunner

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the app needs, built once from Settings."""

    settings: Settings
    engine: Engine
    registry: Registry
    jobs: JobRunner
    bootstrap_error: str | None = field(default=None)
    watcher: ActivationWatcher | None = field(default=None)  # picks up other processes' activations (start)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        init_db(engine)
        registry = Registry(settings, engine)
        return cls(settings, engine, registry, JobRunner(settings, engine, registry))

    def ensure_dataset(self) -> examples.ImportResult:
        """Import each bundled dataset of `settings.datasets` once, in that order (idempotent: a
        dataset with any example stored is not read again; duplicates by cleaned text are skipped,
        so a tweet in two files belongs to the first)."""
        added = duplicates = 0
        for name in self.settings.datasets:
            with Session(self.engine) as s:
                if examples.has_dataset(s, name):
                    continue
            rows = load_bundled(self.settings.dataset_file(name), self.settings.max_chars, name)
            with Session(self.engine) as s, s.begin():
                res = examples.import_examples(s, rows, "dataset", "dataset", self.settings.labels)
            log.info("imported %d %s examples (%d duplicates skipped)", res.added, name, res.duplicates)
            added, duplicates = added + res.added, duplicates + res.duplicates
        return examples.ImportResult(added, duplicates)

    def recover(self) -> None:
        """Undo what a killed process left behind (called at start, before any training):
        runs left 'running' are closed (failed: "the app stopped during this run"; or succeeded
        when their version was already registered, i.e. the process died between saving the
        version and recording the run), and partial or unregistered model folders are removed.
        The database itself needs nothing: every write is one committed transaction (SQLite WAL)."""
        with Session(self.engine) as s, s.begin():
            for run_id, name in runs.succeed_saved_runs(s):
                log.warning("run %d: the app stopped after saving %s; recorded succeeded", run_id, name)
            if n := runs.fail_stale_runs(s):
                log.warning("marked %d interrupted training run(s) failed", n)
        self.registry.cleanup_leftovers()

    def start(self) -> None:
        """App start: recover from a crash, seed the behaviour tests, load the serving version (or the
        newest one that loads, registry.ensure_servable), import the data, and fine-tune a version
        when there is none but quick ones; on a first start (no version at all) the run makes and serves a quick version
        first (Settings.quick_first). Then serve what other processes activate (ActivationWatcher).

        Several processes may start at once on one database: what changes shared state (closing
        runs left open, removing leftover folders, seeding, importing, the first training run,
        re-scoring) is done only by the process that holds the training lock over its start
        (db/locks.py); another one trains meanwhile, or starts at the same moment, and does it."""
        with self.jobs.lock.holding() as mine:
            self._start(mine)
        self.watcher = ActivationWatcher(partial(pick_up, self.registry), self.jobs.follow,
                                         self.settings.pickup_seconds).start()

    def _start(self, mine: bool) -> None:
        if mine:
            self.recover()
            # the starter behaviour suite is written once, here, so that a review or the gate only reads
            stored_suite(self.engine, self.settings.labels)
        else:
            log.info("another app process holds the training lock (training, or starting): it recovers, imports "
                     "and trains; this one serves")
        self.registry.ensure_servable()
        if not self.settings.bootstrap or not mine:
            if not self.registry.nothing_servable:  # another process may be building the graph: wait for it
                self.jobs.prepare_serving_if_pending(built_elsewhere=not mine)
            return
        self.ensure_dataset()
        made = self.registry.versions()
        if all(v.quick for v in made) and not self.jobs.status().running:  # no fine-tuned version yet
            log.info("no fine-tuned model version yet: training one on the bundled data")
            try:
                config = TrainConfig(epochs=self.settings.initial_epochs)
            except BadInput as exc:  # an operator's setting: say which, at start
                raise ValueError(f"BERTDEMO_INITIAL_EPOCHS: {exc}") from None
            # a quick version first (within a minute), unless one was made before this start
            quick = partial(self.serve_quick_version, config) if self.settings.quick_first and not made else None
            self.jobs.start(config, user="system", first=quick)
        elif not self.registry.nothing_servable and self.registry.active_version() is not None:
            self.jobs.rescore_if_missing()

    def serve_quick_version(self, config: TrainConfig, inputs: TrainingInputs) -> None:
        """The first start's quick version (training/quick_first.py), built and served in the run's
        thread before its fine-tune, which then replaces it. Best effort: when it fails, the
        fine-tune goes on as without it."""
        records = self.jobs.records
        records.enter("preparing", "Making a quick first version: the frozen encoder embeds a sample of the "
                                   "training tweets and the validation split", 0, "tweets")

        def progress(done: int, total: int) -> None:
            records.update(phase=records.status().phase.advanced(done, total))

        try:
            quick = quick_first.build(self.settings, self.registry, inputs, config, progress)
            self.registry.activate(quick.info.id, quick.clf, user="system",
                                   reason="the quick first version, until the fine-tune of this first start ends")
            log.info("serving the quick version %s (macro-F1 %.4f) while the first fine-tune runs", quick.info.name,
                     quick.info.macro_f1 or 0.0)
            records.update(message=f"{quick.info.name} ({quick.info.kind_text}) serves; fine-tuning the next version")
        except Exception:  # the fine-tune does not depend on it
            log.exception("the quick first version failed; the fine-tune goes on")
