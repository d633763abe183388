"""The work after a version starts serving, off the request path: its int8 graph built and gated
(training/serving.py) with the behaviour suite run on it, then every example re-scored for the
annotation queues, in chunks that report their phase and check their Ticket. The version serves on
PyTorch meanwhile; the int8 path takes over only when built, gated and its must-pass tests pass.
A newer activation (or a rollback) abandons the ticket: the work stops at its next chunk and never
replaces the serving path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import examples, versions
from bertdemo.model import vectors
from bertdemo.model.classifier import Classifier
from bertdemo.training import behaviour_runs
from bertdemo.training.behaviour import must_pass_failures, run_suite, stored_suite
from bertdemo.training.records import Phase, Report

log = logging.getLogger(__name__)
RESCORE_CHUNK = 1024  # examples per chunk of re-scoring: its progress, its commit, its check of the ticket
RESCORE_BATCH = 64  # texts per forward: the serving classifier's lock is held one batch at a time, so a
# prediction arriving meanwhile waits at most one such batch


class Abandoned(Exception):
    """Another version started serving: this version's background work stops."""


class Ticket:
    """One version's background work; abandoned when another activation begins. Thread-safe."""

    def __init__(self, version: str = "") -> None:
        self.version = version
        self._stop = threading.Event()

    def abandon(self) -> None:
        self._stop.set()

    @property
    def abandoned(self) -> bool:
        return self._stop.is_set()

    def check(self) -> None:
        """Raise Abandoned once abandoned (called between chunks)."""
        if self._stop.is_set():
            raise Abandoned(f"{self.version or 'this version'} no longer serves; its background work stopped")


def ignore(_phase: Phase) -> None:
    """A Report that shows nothing (work nobody follows: tests, the CLI's review)."""


def rescore(engine: Engine, vectors_file: Path, version_id: int, clf: Classifier, labels: Sequence[str],
            report: Report = ignore, ticket: Ticket | None = None) -> int:
    """Score every example with `clf` in chunks of RESCORE_CHUNK, each chunk's scores committed
    (the queues read them), and save the sentence embeddings of the same pass (`vectors_file`)
    at the end. Returns the number of examples scored; Abandoned when `ticket` is."""
    ticket = ticket or Ticket()
    with Session(engine) as s:
        rows = examples.all_texts(s)
    if not rows:
        return 0
    phase = Phase("scoring", 0, len(rows), "examples")
    report(phase)
    vecs = []
    for start in range(0, len(rows), RESCORE_CHUNK):
        ticket.check()
        chunk = rows[start:start + RESCORE_CHUNK]
        probs, v = clf.scores_and_embeddings([t for _i, t in chunk], batch_size=RESCORE_BATCH)
        with Session(engine) as s, s.begin():
            versions.save_scores(s, version_id, [i for i, _t in chunk], probs, labels)
        vecs.append(v)
        report(phase.advanced(start + len(chunk)))
    ticket.check()  # the embeddings mark a version's re-scoring as complete: not for an abandoned one
    vectors.save(vectors_file, [i for i, _t in rows], np.concatenate(vecs))
    return len(rows)


def int8_behaviour(engine: Engine, version_id: int, labels: Sequence[str]
                   ) -> Callable[[Callable[[list[str]], np.ndarray]], str | None]:
    """The behaviour check of version `version_id`'s int8 graph (serving.Watch.behaviour): run the
    stored suite with the graph's predict_proba, record the results under path "int8"
    (training/behaviour_runs.py), and return
    the must-pass failures in one sentence (None when every must-pass test passes)."""

    def check(proba: Callable[[list[str]], np.ndarray]) -> str | None:
        results = run_suite(stored_suite(engine, labels), proba, labels)
        behaviour_runs.save(engine, version_id, behaviour_runs.PathRun(behaviour_runs.INT8, "int8 (OpenVINO)",
                                                                       tuple(results)))
        failed = must_pass_failures(results)
        return "; ".join(r.sentence() for r in failed) or None

    return check
