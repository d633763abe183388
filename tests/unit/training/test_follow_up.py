"""What a run and an activation say while they work, and an activation that never makes
predictions wait: every phase of a run with its own count in the status, the status line and
/training_status; a version served on PyTorch at once while its int8 build runs in the
background; a rollback (or any later activation) abandoning that build, which then never attaches
anything; chunked re-scoring that stops when abandoned."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo.actions.train import TrainingActions
from bertdemo.db import examples, map_coords
from bertdemo.db.models import Score
from bertdemo.model import vectors
from bertdemo.training import follow_up, serving
from bertdemo.training.config import TrainConfig
from bertdemo.training.follow_up import Abandoned, Ticket
from bertdemo.training.records import JobStatus, Phase
from bertdemo.ui.demo import status_line
from tests.support import TINY_TRAIN, wait_for

QUICK = TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 2}))


def test_a_phase_has_its_own_fraction_and_time_left():
    p = Phase("scoring", 12_800, 27_166, "examples", started=time.time() - 60)
    assert p.fraction == pytest.approx(12_800 / 27_166)
    assert p.eta_s() == pytest.approx(60 / 12_800 * (27_166 - 12_800), rel=0.05)
    assert p.text().startswith("re-scoring 12,800 / 27,166 examples (47%), about 1.1 min left")
    assert Phase("saving").text() == "saving" and Phase("saving").fraction == 0.0
    # a run re-scoring after its 30 training steps: its fraction is the phase's, not the steps' 100%
    st = JobStatus("running", 3, step=30, total_steps=30, phase=p)
    assert st.fraction == p.fraction and st.phase_text() == p.text() and st.eta_s() is not None
    done = JobStatus("succeeded", 3, step=30, total_steps=30)
    assert done.fraction == 1.0 and done.phase_text() == "" and done.eta_s() is None


def test_every_phase_of_a_run_shows_with_its_own_count(services, monkeypatch):
    services.ensure_dataset()
    monkeypatch.setattr(follow_up, "RESCORE_CHUNK", 100)
    records, seen, lines, api = services.jobs.records, [], [], []
    real = records.update

    def spy(**changes):
        real(**changes)
        st = records.status()
        seen.append((st.phase.name, st.phase.done, st.phase.total, round(st.fraction, 4)))
        if st.phase.name == "scoring" and 0 < st.phase.done < st.phase.total:
            lines.append(status_line(services))
            api.append(TrainingActions(services).status().as_api())

    monkeypatch.setattr(records, "update", spy)
    services.jobs.run_sync(QUICK, user="t")
    names = list(dict.fromkeys(name for name, *_ in seen))
    # no baseline yet: no review; after the scores, the similar examples' vector index is built and
    # the corpus map laid out (its coordinates stored with the scores)
    assert names == ["training", "evaluating", "saving", "serving", "scoring", "indexing", "mapping", ""]
    info = services.registry.active_version()
    assert (services.registry.folder(info) / vectors.INDEX_FILE).is_file()
    with Session(services.engine) as s:
        assert map_coords.complete(s, info.id)
    with Session(services.engine) as s:
        n = examples.count_examples(s)
    evaluating = [x for x in seen if x[0] == "evaluating"]
    assert evaluating[-1][1] == evaluating[-1][2] > 0  # every validation example counted
    scoring = [x for x in seen if x[0] == "scoring"]
    assert [x[1] for x in scoring] == [0, 100, 200, n] and scoring[-1][2] == n
    assert [x[3] for x in scoring][1:3] == [round(100 / n, 4), round(200 / n, 4)]  # its own fraction, not 100%
    assert lines[0].startswith(f"**Training run #1**: re-scoring 100 / {n:,} examples ({100 / n:.0%})")
    assert api[0]["phase"]["name"] == "scoring" and (api[0]["phase"]["done"], api[0]["phase"]["total"]) == (100, n)
    assert api[0]["fraction"] == round(100 / n, 4) and api[0]["step"] == api[0]["total_steps"] == 2
    st = services.jobs.status()
    assert st.state == "succeeded" and st.fraction == 1.0 and st.phase.name == ""
    assert services.jobs.activity() == ""  # the background work ended with the run


def _slow_build(started: threading.Event, release: threading.Event, abandoned: list):
    """serving.build as a long export that checks its ticket between steps, as the real one does."""

    def build(clf, folder, mode, gate_set, watch=None):
        started.set()
        watch.report(Phase("int8", 1, 3, "steps"))
        while not release.is_set():
            try:
                watch.ticket.check()
            except Abandoned:
                abandoned.append(folder.name)
                raise
            time.sleep(0.01)
        return serving.pending(clf, mode)

    return build


def test_an_activation_serves_at_once_and_a_rollback_stops_its_int8_build(services, monkeypatch):
    services.ensure_dataset()
    services.jobs.run_sync(QUICK, user="t")  # v1
    services.jobs.run_sync(QUICK, user="t")  # v2 (no baseline gate failure on 2 steps: it serves)
    v1, v2 = sorted(services.registry.versions(), key=lambda v: v.id)
    started, release, abandoned, rescored = threading.Event(), threading.Event(), [], []
    monkeypatch.setattr(serving, "build", _slow_build(started, release, abandoned))
    real = services.jobs.rescore
    monkeypatch.setattr(services.jobs, "rescore", lambda info, clf, **kw: rescored.append(info.name)
                        or real(info, clf, **kw))

    t0 = time.perf_counter()
    services.jobs.activate(v1.id)  # a rollback to v1: it serves on PyTorch before its int8 build ends
    assert time.perf_counter() - t0 < 10 and services.registry.active().name == "v1"
    assert started.wait(30) and not release.is_set()
    assert services.registry.active().predict(["the crew was great"])[0].label in services.settings.labels
    wait_for(lambda: services.jobs.activity().startswith("v1: building and gating the int8 path 1 / 3"), 10, 0.05,
             "the activity naming v1's int8 build")
    assert "In the background: v1: building and gating the int8 path" in status_line(services)
    assert services.registry.versions()[0].is_active is False  # the table marks v1 serving at once
    assert [v.name for v in services.registry.versions() if v.is_active] == ["v1"]

    services.jobs.activate(v2.id)  # another activation meanwhile: v1's build is abandoned and stops
    wait_for(lambda: abandoned == ["v1"], 10, 0.05, "v1's build stopping")
    assert rescored == [] and services.registry.active().name == "v2"
    release.set()
    services.jobs.wait_rescore(60)
    assert rescored == ["v2"] and services.jobs.last_rescore[0] == "v2"  # v1 never re-scored after it stopped
    assert services.jobs.activity() == ""


def test_rescoring_stops_at_the_next_chunk_once_abandoned(services, monkeypatch):
    services.ensure_dataset()
    services.jobs.run_sync(QUICK, user="t")
    info, clf = services.registry.active_version(), services.registry.active()
    with Session(services.engine) as s, s.begin():
        s.execute(Score.__table__.delete())
    (services.registry.folder(info) / vectors.VECTORS_FILE).unlink()  # as if it had never been re-scored
    monkeypatch.setattr(follow_up, "RESCORE_CHUNK", 50)
    ticket, phases = Ticket("v1"), []

    def report(p):
        phases.append(p)
        if p.done >= 100:
            ticket.abandon()  # a rollback lands while the third chunk would start

    with pytest.raises(Abandoned, match="v1 no longer serves"):
        services.jobs.rescore(info, clf, report=report, ticket=ticket)
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(Score)) == 100  # the two chunks done, committed
    assert [p.done for p in phases] == [0, 50, 100]
    assert services.jobs.rescore_if_missing()  # no embeddings saved: a later start re-scores it all
    services.jobs.wait_rescore(60)
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(Score)) == examples.count_examples(s)


def test_a_rescoring_that_died_resumes_where_it_stopped(services, monkeypatch):
    """The process stops halfway (here: the model raises in the third chunk): the scores and vectors
    of the chunks done are kept (a partial vectors file beside the version), and the next pass scores
    only the rest; the embeddings file it writes holds every example, equal to one whole pass."""
    services.ensure_dataset()
    services.jobs.run_sync(QUICK, user="t")
    info, clf = services.registry.active_version(), services.registry.active()
    folder = services.registry.folder(info)
    whole = vectors.load(folder / vectors.VECTORS_FILE)
    with Session(services.engine) as s, s.begin():
        s.execute(Score.__table__.delete())
    (folder / vectors.VECTORS_FILE).unlink()
    monkeypatch.setattr(follow_up, "RESCORE_CHUNK", 50)
    real, scored = clf.scores_and_embeddings, []

    def dies_in_the_third_chunk(texts, **kw):
        if len(scored) == 2:
            raise RuntimeError("killed")
        scored.append(len(texts))
        return real(texts, **kw)

    monkeypatch.setattr(clf, "scores_and_embeddings", dies_in_the_third_chunk)
    with pytest.raises(RuntimeError, match="killed"):
        services.jobs.rescore(info, clf)
    assert not (folder / vectors.VECTORS_FILE).exists() and (folder / ".rescoring-vectors.npy").exists()
    with Session(services.engine) as s:
        n = examples.count_examples(s)
        assert s.scalar(select(func.count()).select_from(Score)) == 100
    scored.clear()

    def counts(texts, **kw):
        scored.append(len(texts))
        return real(texts, **kw)

    monkeypatch.setattr(clf, "scores_and_embeddings", counts)
    assert services.jobs.rescore(info, clf) == n
    assert sum(scored) == n - 100  # the two chunks done before are not scored again
    again = vectors.load(folder / vectors.VECTORS_FILE)
    assert again.ids.tolist() == whole.ids.tolist()
    # the same model's vectors (batches differ: bf16 rounding moves them a little)
    assert (np.sum(again.dense() * whole.dense(), axis=1) > 0.995).all()
    assert not (folder / ".rescoring-vectors.npy").exists()
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(Score)) == n


def test_the_embeddings_file_is_written_chunk_by_chunk_and_read_memory_mapped(tmp_path):
    """vectors.Writer: the file appears only when every row is written (a failure leaves the old one),
    and load() maps it instead of reading it (several processes share the page cache)."""
    ids, v = np.arange(10, 0, -1), np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    path = tmp_path / vectors.VECTORS_FILE
    with vectors.Writer(path, ids, 4) as w:
        w.add(v[:6])
        w.add(v[6:])
    index = vectors.load(path)
    assert isinstance(index.vectors, np.memmap) and index.vectors.dtype == np.float16
    assert index.rows_of([1, 10, 99]).tolist() == [9, 0, -1]
    assert np.allclose(index.vector_of(3), v[7], atol=1e-2)
    with pytest.raises(ValueError, match="9 vectors written for 10 ids"), vectors.Writer(path, ids, 4) as w:
        w.add(v[:9])
    assert vectors.load(path).ids.tolist() == ids.tolist()  # the old file stands
    assert [p.name for p in tmp_path.iterdir()] == [vectors.VECTORS_FILE]  # no temporary file left


def test_the_partial_vectors_file_is_written_and_read_by_position_and_resumes(tmp_path):
    """The re-scoring's partial file (follow_up._Partial): rows written by position out of order
    read back as written, a second pass over the same ids resumes it (a different id list does
    not), and publishing writes the embeddings file and removes the partial one."""
    ids = np.arange(10, 20, dtype=np.int64)
    target = tmp_path / "v1" / vectors.VECTORS_FILE
    rows = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float16)
    first = follow_up._Partial(target, ids, 4)
    assert not first.resumed
    first.write(5, rows[5:])
    first.write(0, rows[:5])
    first.close()
    again = follow_up._Partial(target, ids, 4)
    assert again.resumed and np.array_equal(again.rows(0, 10), rows) and np.array_equal(again.rows(8, 5), rows[8:])
    again.publish()
    assert not again.path.exists() and not again.ids_path.exists()
    stored = vectors.load(target)
    assert stored.ids.tolist() == ids.tolist() and np.array_equal(np.asarray(stored.vectors), rows)
    other = follow_up._Partial(target, ids[::-1].copy(), 4)
    assert not other.resumed
    other.remove()
