"""The stored behaviour suite (behaviour.stored_suite: the starter suite seeded once, then what
people add, mark and delete), a stored must-pass test that the candidate fails refusing the gate,
and the suite run on both serving paths (PyTorch and the version's int8 graph) with the results
kept per version and path (training/behaviour_runs.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.db import behaviour_tests, versions
from bertdemo.db.engine import init_db, make_engine
from bertdemo.model import int8
from bertdemo.model.classifier import Classifier
from bertdemo.training import behaviour_runs
from bertdemo.training.behaviour import INV, MFT, BehaviourTest, Case, as_fields, starter_suite, stored_suite
from bertdemo.training.comparison import ReviewSet, compare
from tests.support import LABELS


@pytest.fixture
def db(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    init_db(engine)
    yield engine
    engine.dispose()


def _store(engine, test: BehaviourTest, source: str = "example") -> None:
    with Session(engine) as s, s.begin():
        behaviour_tests.add(s, as_fields(test), source, "boss")


def test_the_starter_suite_is_seeded_once_then_the_table_is_the_suite(db):
    first = stored_suite(db, LABELS)
    assert first == starter_suite()  # the same tests, cases and marks, read back from JSON
    mine = BehaviourTest("late is negative", MFT, "a person's test", (Case("my flight is late again"),),
                         must_pass=True, expected="negative")
    _store(db, mine)
    with Session(db) as s, s.begin():
        behaviour_tests.delete_test(s, "inv_typo")
        behaviour_tests.set_must_pass(s, "mft_positive_verb", True, "boss")
    again = stored_suite(db, LABELS)
    names = [t.name for t in again]
    assert "inv_typo" not in names and names[-1] == "late is negative" and len(again) == len(first)
    assert again[-1] == mine and next(t for t in again if t.name == "mft_positive_verb").must_pass


def test_tests_naming_a_label_outside_the_label_set_are_left_out(db):
    # a label set without "neutral": the starter tests that expect it are neither seeded nor run
    two = ("negative", "positive")
    suite = stored_suite(db, two)
    assert suite and all(t.expected in (None, *two) for t in suite)
    assert "mft_neutral_fact" not in [t.name for t in suite]
    _store(db, BehaviourTest("neutral fact", MFT, "", (Case("the gate is B12"),), expected="neutral"))
    assert "neutral fact" not in [t.name for t in stored_suite(db, two)]
    assert "neutral fact" in [t.name for t in stored_suite(db, LABELS)]


def _always(label: str):  # noqa: ANN202 - a predict_proba
    def proba(texts):  # noqa: ANN001, ANN202
        out = np.full((len(texts), len(LABELS)), 0.1)
        out[:, LABELS.index(label)] = 0.8
        return out
    return proba


def test_a_stored_must_pass_test_the_candidate_fails_refuses_the_gate(db):
    texts = [f"tweet {i}" for i in range(30)]
    rs = ReviewSet(texts, texts, np.zeros(30, dtype=np.int64), list(range(1, 31)), ["airline"] * 30,
                   ["crowd"] * 30, "a hand-made set")
    _store(db, BehaviourTest("praise is positive", MFT, "must pass", (Case("I love this crew"),
                                                                       Case("what a great flight")),
                             must_pass=True, expected="positive"))
    suite = stored_suite(db, LABELS)
    same = _always("negative")  # both versions say negative everywhere: no slice is worse
    c = compare(("v1", same), ("v2", same), rs, LABELS, n_boot=200, tests=suite)
    assert not c.gate.passed
    assert c.gate.failed == ("behaviour test 'praise is positive' (MFT) failed 2 of 2 cases (100.0%)",)
    assert len(c.behaviour) == len(suite)
    # not marked must pass: the same failure does not block the gate
    with Session(db) as s, s.begin():
        behaviour_tests.set_must_pass(s, "praise is positive", False, "boss")
    assert compare(("v1", same), ("v2", same), rs, LABELS, n_boot=200, tests=stored_suite(db, LABELS)).gate.passed


@pytest.fixture(scope="module")
def exported(tmp_path_factory, base_clf):
    """The packaged encoder with its fresh head, saved and exported to int8."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    folder = tmp_path_factory.mktemp("behaviour-int8") / "v1"
    base_clf.save(folder)
    int8.export(folder, folder / int8.FOLDER, [c.text for t in starter_suite()[:3] for c in t.cases])
    return folder


def test_the_suite_runs_on_both_serving_paths_and_the_results_are_kept(exported, db):
    tests = [BehaviourTest("adds a handle", INV, "", (Case("the crew was lovely", ("@bob the crew was lovely",)),
                                                      Case("my bag is lost", ("my bag is lost #travel",)))),
             BehaviourTest("three at once", MFT, "no model passes", tuple(Case("ok", expected=lab) for lab in LABELS),
                           must_pass=True)]
    clf = Classifier.load(exported, LABELS)
    runs, note = behaviour_runs.run_paths(clf, exported, tests, LABELS)
    assert note == "" and [r.path for r in runs] == ["pytorch", "int8"]
    assert runs[1].note == "int8 (OpenVINO)" and runs[0].note.startswith("PyTorch")
    for r in runs:
        assert [x.name for x in r.results] == ["adds a handle", "three at once"]
        assert (r.results[1].n, r.results[1].n_failed, r.results[1].passed) == (3, 2, False)
    with Session(db) as s, s.begin():
        vid = versions.add_version(s, name="v1", path=str(exported), base_model="m").id
    for r in runs:
        behaviour_runs.save(db, vid, r)
    kept = behaviour_runs.stored(db, vid)
    assert [k.path for k in kept] == ["pytorch", "int8"]
    assert [(x.name, x.n, x.n_failed, x.failures) for x in kept[1].results] == \
        [(x.name, x.n, x.n_failed, x.failures) for x in runs[1].results]


def test_without_an_int8_graph_only_pytorch_runs_and_says_why(base_clf, tmp_path):
    base_clf.save(tmp_path / "v1")  # a fresh copy: run_paths switches its classifier's graph
    tests = [BehaviourTest("ok", MFT, "", (Case("ok", expected="neutral"),))]
    runs, note = behaviour_runs.run_paths(Classifier.load(tmp_path / "v1", LABELS), tmp_path / "v1", tests, LABELS)
    assert [r.path for r in runs] == ["pytorch"] and len(runs[0].results) == 1
    assert note.startswith("The int8 path was not run: no int8 graph was built for this version")
