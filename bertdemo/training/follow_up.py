"""The work after a version starts serving, off the request path: its int8 graph built and gated
(training/serving.py) with the behaviour suite run on it, then every example re-scored for the
annotation queues, in chunks that report their phase and check their Ticket, then the similar
examples' vector index built and the corpus map laid out (its coordinates stored with the scores,
so the map's first draw reads them instead of computing them). The version serves on PyTorch
meanwhile; the int8 path takes over only when built, gated and its must-pass tests pass.
A newer activation (or a rollback) abandons the ticket: the work stops at its next chunk and never
replaces the serving path."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import keysets, map_coords, versions
from bertdemo.model import projection, vectors
from bertdemo.model.classifier import Classifier
from bertdemo.training import behaviour_runs
from bertdemo.training.behaviour import must_pass_failures, run_suite, stored_suite
from bertdemo.training.records import Phase, Report

log = logging.getLogger(__name__)
RESCORE_CHUNK = 1024  # examples per chunk of re-scoring: its progress, its commit, its check of the ticket
RESCORE_BATCH = 64  # texts per forward: the serving classifier's lock is held one batch at a time, so a
# prediction arriving meanwhile waits at most one such batch
MAP_CHUNK = 8_192  # coordinates projected, written and committed at a time: a label save waits at most one such
# write (~0.1 s on SQLite), the float32 rows converted meanwhile are 12.5 MB at 384 wide


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
    """Score every example with `clf` in chunks of RESCORE_CHUNK, in bounded memory: each chunk's
    texts are read by id, scored, its vectors written to a memory-mapped partial file beside
    `vectors_file` and its scores committed (the queues read them). The embeddings file is written
    from the partial one at the end: it marks the version's re-scoring as complete. A pass that
    died (the process stopped) resumes: chunks whose scores are all stored and whose vectors are in
    the partial file are not scored again. Returns the number of examples scored; Abandoned (its
    partial file removed) when `ticket` is."""
    ticket = ticket or Ticket()
    with Session(engine) as s:
        ids = keysets.example_ids(s)
        stored = keysets.scored_ids(s, version_id)
    if not len(ids):
        return 0
    partial = _Partial(vectors_file, ids, clf.model.config.hidden_size)
    phase = Phase("scoring", 0, len(ids), "examples")
    report(phase)
    try:
        for start in range(0, len(ids), RESCORE_CHUNK):
            ticket.check()
            chunk = ids[start:start + RESCORE_CHUNK]
            if partial.resumed and bool(np.isin(chunk, stored).all()):
                continue  # scored and its vectors kept before the pass stopped
            with Session(engine) as s:
                texts = keysets.texts_by_id(s, chunk.tolist())
            probs, v = clf.scores_and_embeddings([texts.get(int(i), "") for i in chunk], batch_size=RESCORE_BATCH)
            partial.write(start, v)  # flushed before the scores commit: a stored score has its vector
            with Session(engine) as s, s.begin():
                versions.save_scores(s, version_id, chunk.tolist(), probs, labels)
            report(phase.advanced(start + len(chunk)))
        ticket.check()  # the embeddings mark a version's re-scoring as complete: not for an abandoned one
        partial.publish()
    except Abandoned:
        partial.remove()
        raise
    except BaseException:  # kept for the next pass to resume
        partial.close()
        raise
    report(Phase("indexing"))
    try:  # similar examples' vector index (model/vectors.py); brute force answers while there is none
        vectors.build_index(vectors_file.parent)
    except Exception:  # the scores and embeddings stand; similar examples stay on brute force
        log.exception("could not build the vector index of %s", vectors_file.parent.name)
    try:
        lay_out(engine, vectors_file, version_id, report, ticket)
    except Abandoned:  # the scores and embeddings are complete: only the map's layout stopped
        log.info("%s: the corpus map's layout stopped (another version serves)", ticket.version or "a version")
    except Exception:  # the map lays itself out from the embeddings when its coordinates are missing
        log.exception("could not store the corpus map of %s", vectors_file.parent.name)
    return len(ids)


def lay_out(engine: Engine, vectors_file: Path, version_id: int, report: Report = ignore,
            ticket: Ticket | None = None) -> int:
    """Store the corpus map's coordinates of `version_id`'s scores: the projection of its embeddings
    file (model/projection.py: fitted on a fixed sample, so the same file always gives the same
    map), MAP_CHUNK rows at a time, each chunk committed; the map reads them once every score has
    its coordinates (db/map_coords.py). Returns the number of examples laid out; Abandoned (the
    chunks written so far stay, the map computes the layout itself) when `ticket` is."""
    ticket = ticket or Ticket()
    stored = vectors.load(vectors_file)  # memory-mapped: rows are read as they are projected
    n = len(stored.ids)
    phase = Phase("mapping", 0, n, "examples")
    ticket.check()
    report(phase)
    fitted = projection.fit(stored.vectors)
    for start in range(0, n, MAP_CHUNK):
        ticket.check()
        rows = slice(start, start + MAP_CHUNK)
        xy = fitted(stored.vectors[rows])
        with Session(engine) as s, s.begin():
            map_coords.save(s, version_id, stored.ids[rows], xy)
        report(phase.advanced(min(start + MAP_CHUNK, n)))
    return n


class _Partial:
    """The vectors of a re-scoring under way: a float16 .npy file beside the embeddings file, with
    the ids it is for, so a pass that stopped halfway resumes; `publish` writes the embeddings file
    from it (vectors.Writer) and removes it. Rows are written and read with pwrite/pread, not through
    a memory map: a mapping's written pages count in the process's RSS until it is unmapped (+229 MB
    at 300k x 384 by the end of a pass), file writes only in the page cache."""

    def __init__(self, vectors_file: Path, ids: np.ndarray, dim: int) -> None:
        self.target, self.ids, self.dim = vectors_file, ids, dim
        self.path = vectors_file.with_name(".rescoring-vectors.npy")
        self.ids_path = vectors_file.with_name(".rescoring-ids.npy")
        self.resumed = False
        vectors_file.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.ids_path.exists():
            try:
                kept = np.load(self.ids_path)
                header = np.load(self.path, mmap_mode="r")  # the header only: no row is read
                self.resumed = (kept.shape == ids.shape and bool((kept == ids).all())
                                and header.shape == (len(ids), dim) and header.dtype == np.float16)
                self.offset = header.offset
                del header
            except (OSError, ValueError):
                self.resumed = False
        if not self.resumed:
            np.save(self.ids_path, ids)
            header = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float16, shape=(len(ids), dim))
            self.offset = header.offset  # the file is sparse until written: no page is touched
            del header
        self._fd = os.open(self.path, os.O_RDWR)
        self._row = dim * np.dtype(np.float16).itemsize

    def write(self, start: int, vectors: np.ndarray) -> None:
        data = np.ascontiguousarray(np.asarray(vectors, dtype=np.float16).reshape(-1, self.dim)).tobytes()
        os.pwrite(self._fd, data, self.offset + start * self._row)
        os.fdatasync(self._fd)  # on disk before the chunk's scores commit: a stored score has its vector

    def rows(self, start: int, count: int) -> np.ndarray:
        count = max(0, min(count, len(self.ids) - start))
        data = os.pread(self._fd, count * self._row, self.offset + start * self._row)
        return np.frombuffer(data, dtype=np.float16).reshape(count, self.dim)

    def publish(self) -> None:
        with vectors.Writer(self.target, self.ids, self.dim) as w:
            for a in range(0, len(self.ids), vectors.CHUNK_ROWS):
                w.add(self.rows(a, vectors.CHUNK_ROWS))
        self.remove()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.ids_path.unlink(missing_ok=True)


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
