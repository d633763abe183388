"""actions/behaviour.py (no Gradio): the stored tests as a table, a test made from a text (preview,
save), must pass on and off, delete, running the suite on a version; saving, marking, deleting and
running are for admins, and bad inputs are refused with a message that says what to do."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.behaviour import TEST_COLUMNS, BehaviourActions, Draft
from bertdemo.auth import add_user
from bertdemo.config import Settings
from bertdemo.db import versions
from bertdemo.errors import BadInput, Forbidden, NotFound
from bertdemo.services import Services
from bertdemo.training.behaviour import starter_suite, stored_suite


@pytest.fixture
def actions(tmp_path) -> BehaviourActions:
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False))
    add_user(services.engine, "boss", "password-boss", "admin")
    add_user(services.engine, "ann", "password-ann", "annotator")
    yield BehaviourActions(services)
    services.engine.dispose()


def test_the_table_lists_the_starter_suite_first(actions):
    rows = actions.table()
    assert len(rows) == len(starter_suite()) and all(len(r) == len(TEST_COLUMNS) for r in rows)
    assert rows[0][:2] == ["mft_positive_adjective", "MFT"] and rows[0][5] == "starter" and rows[0][6] == ""


def test_preview_shows_the_texts_each_kind_checks(actions):
    mft = actions.preview(Draft("The crew was lovely", "MFT", "positive", name="crew"))
    assert mft.rows() == [["The crew was lovely", "", "label positive"]] and mft.test.name == "crew"
    inv = actions.preview(Draft("The crew was lovely", "INV", perturbations=("add URL", "typo")))
    assert [r[2] for r in inv.rows()] == ["same label as the text"] * 2
    assert inv.rows()[0][1].startswith("The crew was lovely https://") and inv.rows()[1][1] != "The crew was lovely"
    d = actions.preview(Draft("The crew was lovely", "DIR"))
    assert d.rows() == [["The crew was lovely", "The crew was not lovely",
                         "P(the predicted label) lower than for the text"]]
    assert "1 text to check" in d.sentence()


@pytest.mark.parametrize(("draft", "message"), [
    (Draft("", "MFT", "positive"), "Type the text the test starts from"),
    (Draft("   ", "INV"), "Type the text the test starts from"),
    (Draft(None, "INV"), "Type the text"),  # type: ignore[arg-type]
    (Draft("ok then", "XYZ"), "The kind of test must be one of ['MFT', 'INV', 'DIR'], got 'XYZ'"),
    (Draft("ok then", "MFT", "angry"), "The expected label must be one of ['negative', 'neutral', 'positive']"),
    (Draft("ok then", "MFT"), "needs the label the text must get"),
    (Draft("ok then", "INV", perturbations=("shout",)), "unknown perturbations"),
    (Draft("ok then", "DIR"), "no negation rule applies"),
    (Draft("ok then", "MFT", "neutral", name="no/slashes"), "A test's name is 1 to 64 letters"),
    (Draft("ok then", "MFT", "neutral", name="x" * 65), "A test's name is 1 to 64"),
    (Draft("ok then", "MFT", "neutral", name="inv_typo"), "'inv_typo' exists already"),
    (Draft("x" * 1001, "MFT", "neutral"), "The text"),
])
def test_bad_drafts_are_refused_saying_what_to_do(actions, draft, message):
    actions.tests()  # the starter suite in the table (a duplicate name to collide with)
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        actions.preview(draft)


def test_an_admin_saves_marks_and_deletes_a_test_and_the_gate_sees_it(actions):
    draft = Draft("my flight is late again", "MFT", "negative", name="late is negative", description="from a flip")
    msg = actions.save(draft, True, "flip", "boss")
    assert "Saved behaviour test 'late is negative'" in msg and "It must pass" in msg
    suite = stored_suite(actions.engine, actions.labels)
    mine = suite[-1]
    assert (mine.name, mine.kind, mine.expected, mine.must_pass, mine.description) == (
        "late is negative", "MFT", "negative", True, "from a flip")
    assert actions.table()[-1][4:6] == ["yes", "flip"]
    with pytest.raises(BadInput, match="'late is negative' exists already"):
        actions.save(draft, False, "example", "boss")
    with pytest.raises(BadInput, match="Give the test a name"):
        actions.save(Draft("my flight is late", "MFT", "negative"), False, "example", "boss")
    with pytest.raises(BadInput, match="must pass must be true or false"):
        actions.save(Draft("my bag is lost", "MFT", "negative", name="bag"), "yes", "example", "boss")
    assert "no longer has to pass" in actions.set_must_pass("late is negative", False, "boss")
    assert not stored_suite(actions.engine, actions.labels)[-1].must_pass
    assert actions.delete("late is negative", "boss") == "Deleted behaviour test 'late is negative'."
    assert "late is negative" not in [t.name for t in actions.tests()]
    with pytest.raises(NotFound, match="No behaviour test named 'late is negative'"):
        actions.delete("late is negative", "boss")
    with pytest.raises(BadInput, match="Choose a behaviour test"):
        actions.set_must_pass("", True, "boss")


def test_annotators_may_preview_but_not_change_or_run(actions):
    assert actions.preview(Draft("The crew was lovely", "MFT", "positive", name="crew")).rows()
    draft = Draft("The crew was lovely", "MFT", "positive", name="crew")
    for call in (lambda: actions.save(draft, False, "example", "ann"),
                 lambda: actions.set_must_pass("inv_typo", True, "ann"),
                 lambda: actions.delete("inv_typo", "ann"),
                 lambda: actions.run("v1", "ann")):
        with pytest.raises(Forbidden, match="Only admins may do this"):
            call()
    with pytest.raises(Forbidden, match="Sign in first"):
        actions.delete("inv_typo", None)
    assert "inv_typo" in [t.name for t in actions.tests()] and "crew" not in [t.name for t in actions.tests()]


def test_the_suite_runs_on_a_version_and_its_results_are_kept(actions, base_clf):
    services = actions.services
    base_clf.save(services.settings.data_dir / "models" / "v1")
    with Session(services.engine) as s, s.begin():
        versions.add_version(s, name="v1", path="models/v1", base_model="packaged")
    with Session(services.engine) as s, s.begin():  # a small suite: the packaged model scores it in a second
        from bertdemo.db import behaviour_tests
        behaviour_tests.seed(s, [{"name": "ok is neutral", "kind": "MFT", "description": "", "expected": "neutral",
                                   "cases": [{"text": "ok"}, {"text": "fine"}], "must_pass": True, "tolerance": 0.0}])
    run = actions.run("v1", "boss")
    assert run.version == "v1" and [r.path for r in run.runs] == ["pytorch"]
    assert "The int8 path was not run" in run.note  # no int8 graph was built for it
    assert [r[:5] for r in run.rows()] == [["ok is neutral", "MFT", "pytorch", "yes", 2]]
    assert len(run.failure_rows()) == run.rows()[0][5] and run.rows()[0][6] == f"{run.rows()[0][5] / 2:.1%}"
    assert run.sentence().startswith("Ran the suite on v1: pytorch (PyTorch")
    kept = actions.last_run("v1")
    assert kept.stored and kept.rows() == run.rows() and kept.failure_rows() == run.failure_rows()
    assert actions.table()[0][6].endswith("(v1, pytorch)")
    with pytest.raises(NotFound, match="No model version named 'v9'"):
        actions.run("v9", "boss")
    assert actions.last_run("v1").sentence().startswith("Stored results on v1")
