"""Which path serves (training/serving.py, BERTDEMO_SERVING): the int8 graph built and gated
when a version is served, reused at the next start, the PyTorch fallback with its reason when the
runtime is missing, the export fails or the gate fails, and one label per text in every tab
whichever path serves."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.predict import PredictActions
from bertdemo.db import behaviour_tests, examples
from bertdemo.model import int8
from bertdemo.services import Services
from bertdemo.training import serving
from bertdemo.training.follow_up import Abandoned, Ticket

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def copy_of(trained_services, tmp_path, mode: str) -> Services:
    data = tmp_path / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    return Services.create(trained_services.settings.with_(data_dir=data, serving=mode))


@pytest.fixture(scope="module")
def built(tmp_path_factory, trained_services):
    """A copy of the trained data dir whose v1 has its int8 graph built and gated (mode int8)."""
    services = copy_of(trained_services, tmp_path_factory.mktemp("served"), "int8")
    info = services.registry.active_version()
    state = services.registry.prepare_serving(info, services.registry.active())
    return services, info, state


def test_serving_builds_gates_and_attaches_the_int8_graph(built):
    services, info, state = built
    folder = services.registry.folder(info) / int8.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [int8.GATE_FILE, "model.int8.bin", int8.INT8_FILE]
    gate = int8.Gate.load(folder / int8.GATE_FILE)
    # the gate compared on the version's validation split, written when it was saved
    assert gate.on == "the validation split of v1" and gate.n == len(pd.read_csv(services.registry.folder(info)
                                                                               / "validation.csv"))
    assert gate.extra["calibration_texts"] > 0 and gate.extra["export_s"] > 0
    assert state.path == "int8" and services.registry.active().serving_path == "int8"
    assert state.note.startswith("int8 (OpenVINO). int8 gate")
    assert services.registry.serving_note() == state.note
    assert PredictActions(services).predict("lovely crew").label in services.settings.labels
    # the behaviour suite ran on the int8 graph, its results recorded under that path
    with Session(services.engine) as s:
        results = behaviour_tests.results_of(s, info.id, "int8")
    assert len(results) >= 10 and {r.path for r in results} == {"int8"} and sum(r.n for r in results) > 100
    assert "behaviour_failed" not in gate.extra  # no must-pass test failed


def test_a_later_start_reuses_the_graph_without_exporting(built, monkeypatch):
    services, info, state = built

    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(int8, "export", no_export)
    monkeypatch.setattr(serving, "export_graph", no_export)  # the export runs in a child process
    again = Services.create(services.settings)
    clf = again.registry.active()
    assert clf.serving_path == "int8" and again.registry.serving_note() == state.note
    attached = clf.graph
    assert again.registry.prepare_serving(info, clf).path == "int8"  # nothing left to build
    assert clf.graph is attached  # and the attached graph is not compiled a second time


@pytest.mark.parametrize("agreement, faster, expect", [(0.99, True, "bf16"), (0.999, False, "bf16"),
                                                       (0.999, True, "int8")])
def test_auto_serves_int8_only_when_it_passes_the_gate_and_is_faster(built, tmp_path, agreement, faster, expect):
    services, info, _ = built
    folder = tmp_path / "v1"
    shutil.copytree(services.registry.folder(info), folder)
    f1 = {"negative": 0.8, "neutral": 0.7, "positive": 0.75}
    int8.Gate(agreement=agreement, f1_fp32=f1, f1_int8=f1, n=100, on="a test set",
              extra={"int8_per_s": 500.0 if faster else 100.0, "torch_per_s": 300.0}).save(
        folder / int8.FOLDER / int8.GATE_FILE)
    clf = services.registry.load(info)
    state = serving.attach(clf, folder, "auto")
    assert clf.serving_path == state.path == (expect if expect == "int8" else clf.amp_path)
    if agreement < 0.995:
        assert "int8 gate failed on a test set" in state.note and state.note.startswith("PyTorch")
    elif not faster:
        assert "slower on batches here, so PyTorch serves" in state.note
    forced = serving.attach(clf, folder, "int8")
    assert forced.path == "int8"  # BERTDEMO_SERVING=int8 serves it whatever the gate says
    assert agreement >= 0.995 or "served anyway (BERTDEMO_SERVING=int8)" in forced.note


def test_without_the_runtime_pytorch_serves_and_says_why(trained_services, tmp_path, monkeypatch):
    monkeypatch.setattr(int8, "missing_runtime",
                        lambda: "the int8 path needs openvino and nncf (No module named 'openvino')")
    services = copy_of(trained_services, tmp_path, "auto")
    info = services.registry.active_version()
    state = services.registry.prepare_serving(info, services.registry.active())
    assert state.path == services.registry.active().amp_path and not state.pending
    assert state.note.endswith("needs openvino and nncf (No module named 'openvino').")
    assert not (services.registry.folder(info) / int8.FOLDER).exists()
    assert PredictActions(services).predict("lovely crew").label in services.settings.labels


def test_a_failed_export_leaves_pytorch_serving(trained_services, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(serving, "export_graph", broken)  # int8.export, in its child process
    services = copy_of(trained_services, tmp_path, "auto")
    info = services.registry.active_version()
    state = services.registry.prepare_serving(info, services.registry.active())
    assert state.path != "int8" and "building the int8 graph failed (RuntimeError: exporter exploded)" in state.note
    assert PredictActions(services).predict("lovely crew").label in services.settings.labels


@pytest.mark.parametrize("mode", ["bf16", "fp32"])
def test_a_pytorch_mode_exports_nothing(trained_services, tmp_path, mode):
    services = copy_of(trained_services, tmp_path, mode)
    info = services.registry.active_version()
    state = services.registry.prepare_serving(info, services.registry.active())
    assert state.path == mode and state.note == f"PyTorch {mode}: BERTDEMO_SERVING={mode}."
    assert not (services.registry.folder(info) / int8.FOLDER).exists()


@pytest.mark.parametrize("mode", ["int8", "bf16", "fp32"])
def test_every_tab_gives_the_same_label_whichever_path_serves(built, tmp_path, mode):
    """Predict, the batch API, CSV scoring, the stored predictions of re-scoring (Annotate) and
    the label Integrated Gradients explains: one label per text."""
    services = Services.create(built[0].settings.with_(serving=mode))
    info = services.registry.active_version()
    clf = services.registry.active()
    services.registry.prepare_serving(info, clf)
    assert clf.serving_path == (mode if mode != "bf16" else clf.amp_path)
    with Session(services.engine) as s:
        rows = examples.all_texts(s)[:40]
    if mode == "bf16":
        # PyTorch bf16 logits of a text alone and padded in a batch differ by up to ~1e-3, so a
        # near-tie can flip between Predict and a batch: that path is checked on clear texts (the
        # int8 path's margin guard and fp32 have no such exception)
        top = np.sort(clf.logits([t for _i, t in rows], path="fp32"), axis=1)
        rows = [r for r, gap in zip(rows, top[:, -1] - top[:, -2]) if gap > 0.01]
        assert len(rows) >= 30
    texts = [t for _i, t in rows]
    actions = PredictActions(services)
    one = [actions.predict(t).label for t in texts]
    assert [r.label for r in actions.predict_batch(texts)] == one
    csv = tmp_path / "in.csv"
    pd.DataFrame({"text": texts}).to_csv(csv, index=False)
    assert pd.read_csv(actions.predict_csv(str(csv)).path)["predicted_label"].tolist() == one
    services.jobs.rescore(info, clf)
    with Session(services.engine) as s:
        stored = examples.predictions(s, info.id, [i for i, _t in rows])
    assert [stored[i] for i, _t in rows] == one
    assert [actions.explain(t).attribution.target for t in texts[:5]] == one[:5]


def test_a_start_without_bootstrap_builds_the_pending_graph_in_the_background(trained_services, tmp_path, monkeypatch):
    calls = []
    real = serving.build

    def counted(*a, **k):
        calls.append(a[1])
        return real(*a, **k)

    monkeypatch.setattr(serving, "build", counted)
    services = copy_of(trained_services, tmp_path, "bf16")  # bf16: nothing to build, so quick
    services = Services.create(services.settings.with_(serving="auto", bootstrap=False))
    services.start()
    assert services.registry.serving[services.registry.active_id()].pending
    services.jobs.wait_rescore(120)
    state = services.registry.serving[services.registry.active_id()]
    assert not state.pending and state.gate is not None and calls == [services.registry.folder(
        services.registry.active_version())]


def test_a_must_pass_failure_on_int8_keeps_pytorch_serving_and_says_so(built, tmp_path):
    services, info, _ = built
    folder = tmp_path / "v1"
    shutil.copytree(services.registry.folder(info), folder)
    f1 = {"negative": 0.8, "neutral": 0.7, "positive": 0.75}  # a gate that passes, int8 faster: int8 would serve
    int8.Gate(agreement=0.999, f1_fp32=f1, f1_int8=f1, n=100, on="a test set",
              extra={"int8_per_s": 500.0, "torch_per_s": 300.0}).save(folder / int8.FOLDER / int8.GATE_FILE)
    clf = services.registry.load(info, int8_now=False)
    seen = []

    def failing(proba):
        probs = proba(["the crew was great", "worst airline ever"])
        seen.append(probs.shape)
        return "behaviour test 'negation' (DIR) failed 3 of 10 cases (30.0%)"

    state = serving.build(clf, folder, "auto", lambda: ([], [], "", []), serving.Watch(behaviour=failing))
    assert seen == [(2, 3)]  # the suite ran on the int8 graph's probabilities
    gate = int8.Gate.load(folder / int8.FOLDER / int8.GATE_FILE)
    assert state.path != "int8" and clf.graph is None
    assert "must-pass behaviour tests fail on the int8 graph" in state.note and "'negation'" in state.note
    assert gate.extra["behaviour_failed"].startswith("behaviour test 'negation'")
    # the verdict is kept: the next start opens the graph without a check and still serves PyTorch...
    again = serving.attach(services.registry.load(info, int8_now=False), folder, "auto")
    assert again.path != "int8"
    # ...unless BERTDEMO_SERVING=int8 forces it, which says so
    forced = serving.build(clf, folder, "int8", lambda: ([], [], "", []), serving.Watch(behaviour=failing))
    assert forced.path == "int8" and "must-pass behaviour tests fail on it" in forced.note
    passing = serving.build(clf, folder, "int8", lambda: ([], [], "", []), serving.Watch(behaviour=lambda p: None))
    assert "behaviour_failed" not in int8.Gate.load(folder / int8.FOLDER / int8.GATE_FILE).extra
    assert passing.path == "int8" and "must-pass" not in passing.note


def test_an_abandoned_build_stops_and_never_attaches(trained_services, tmp_path, monkeypatch):
    services = copy_of(trained_services, tmp_path, "int8")
    info = services.registry.active_version()
    clf = services.registry.load(info, int8_now=False)
    ticket = Ticket("v1")

    def rolled_back():  # a rollback lands while the build reads its gate set
        ticket.abandon()
        return [], [], "", ["a text"]

    def export_must_not_run(*a, **k):
        raise AssertionError("exported after the rollback")

    monkeypatch.setattr(serving, "export_graph", export_must_not_run)
    with pytest.raises(Abandoned, match="v1 no longer serves"):
        serving.build(clf, services.registry.folder(info), "int8", rolled_back, serving.Watch(ticket=ticket))
    assert clf.graph is None and not (services.registry.folder(info) / int8.FOLDER).exists()


def test_the_export_process_is_killed_when_the_build_is_abandoned(tmp_path):
    ticket = Ticket("v9")
    (tmp_path / ".int8-partial").mkdir()  # what int8.export leaves while it writes
    started = time.monotonic()
    threading.Timer(1.0, ticket.abandon).start()
    with pytest.raises(Abandoned):  # the child would fail on the missing model, later than the kill
        serving.export_graph(tmp_path, tmp_path / "int8", ["a text"] * 500, ticket)
    assert time.monotonic() - started < 8 and not (tmp_path / ".int8-partial").exists()


def test_a_failed_export_process_says_why(tmp_path):
    with pytest.raises(RuntimeError, match=r"the export process failed \(exit code 1\): .*"):
        serving.export_graph(tmp_path / "no-model", tmp_path / "int8", ["a text"], Ticket())
