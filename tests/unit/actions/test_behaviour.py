"""actions/behaviour.py (no Gradio): the stored tests as a table, a test made from a text (preview,
save), must pass on and off, delete, running the suite on a version; saving, marking, deleting and
running are for admins, and bad inputs are refused with a message that says what to do."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.behaviour import TEST_COLUMNS, Draft
from bertdemo.db import versions
from bertdemo.errors import BadInput, Forbidden, NotFound
from bertdemo.training.behaviour import starter_suite, stored_suite


def test_the_table_lists_the_starter_suite_first(behaviour_actions):
    rows = behaviour_actions.table()
    assert len(rows) == len(starter_suite()) and all(len(r) == len(TEST_COLUMNS) for r in rows)
    assert rows[0][:2] == ["mft_positive_adjective", "MFT"] and rows[0][5] == "starter" and rows[0][6] == ""


def test_preview_shows_the_texts_each_kind_checks(behaviour_actions):
    mft = behaviour_actions.preview(Draft("The crew was lovely", "MFT", "positive", name="crew"))
    assert mft.rows() == [["The crew was lovely", "", "label positive"]] and mft.test.name == "crew"
    inv = behaviour_actions.preview(Draft("The crew was lovely", "INV", perturbations=("add URL", "typo")))
    assert [r[2] for r in inv.rows()] == ["same label as the text"] * 2
    assert inv.rows()[0][1].startswith("The crew was lovely https://") and inv.rows()[1][1] != "The crew was lovely"
    d = behaviour_actions.preview(Draft("The crew was lovely", "DIR"))
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
def test_bad_drafts_are_refused_saying_what_to_do(behaviour_actions, draft, message):
    behaviour_actions.tests()  # the starter suite in the table (a duplicate name to collide with)
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        behaviour_actions.preview(draft)


def test_an_admin_saves_marks_and_deletes_a_test_and_the_gate_sees_it(behaviour_actions):
    draft = Draft("my flight is late again", "MFT", "negative", name="late is negative", description="from a flip")
    msg = behaviour_actions.save(draft, True, "flip", "boss")
    assert "Saved behaviour test 'late is negative'" in msg and "It must pass" in msg
    suite = stored_suite(behaviour_actions.engine, behaviour_actions.labels)
    mine = suite[-1]
    assert (mine.name, mine.kind, mine.expected, mine.must_pass, mine.description) == (
        "late is negative", "MFT", "negative", True, "from a flip")
    assert behaviour_actions.table()[-1][4:6] == ["yes", "flip"]
    with pytest.raises(BadInput, match="'late is negative' exists already"):
        behaviour_actions.save(draft, False, "example", "boss")
    with pytest.raises(BadInput, match="Give the test a name"):
        behaviour_actions.save(Draft("my flight is late", "MFT", "negative"), False, "example", "boss")
    with pytest.raises(BadInput, match="must pass must be true or false"):
        behaviour_actions.save(Draft("my bag is lost", "MFT", "negative", name="bag"), "yes", "example", "boss")
    assert "no longer has to pass" in behaviour_actions.set_must_pass("late is negative", False, "boss")
    assert not stored_suite(behaviour_actions.engine, behaviour_actions.labels)[-1].must_pass
    assert behaviour_actions.delete("late is negative", "boss") == "Deleted behaviour test 'late is negative'."
    assert "late is negative" not in [t.name for t in behaviour_actions.tests()]
    with pytest.raises(NotFound, match="No behaviour test named 'late is negative'"):
        behaviour_actions.delete("late is negative", "boss")
    with pytest.raises(BadInput, match="Choose a behaviour test"):
        behaviour_actions.set_must_pass("", True, "boss")


def test_annotators_may_preview_but_not_change_or_run(behaviour_actions):
    assert behaviour_actions.preview(Draft("The crew was lovely", "MFT", "positive", name="crew")).rows()
    draft = Draft("The crew was lovely", "MFT", "positive", name="crew")
    for call in (lambda: behaviour_actions.save(draft, False, "example", "ann"),
                 lambda: behaviour_actions.set_must_pass("inv_typo", True, "ann"),
                 lambda: behaviour_actions.delete("inv_typo", "ann"),
                 lambda: behaviour_actions.run("v1", "ann")):
        with pytest.raises(Forbidden, match="Only admins may do this"):
            call()
    with pytest.raises(Forbidden, match="Sign in first"):
        behaviour_actions.delete("inv_typo", None)
    names = [t.name for t in behaviour_actions.tests()]
    assert "inv_typo" in names and "crew" not in names


def test_the_suite_runs_on_a_version_and_its_results_are_kept(behaviour_actions, base_clf):
    services = behaviour_actions.services
    base_clf.save(services.settings.data_dir / "models" / "v1")
    with Session(services.engine) as s, s.begin():
        versions.add_version(s, name="v1", path="models/v1", base_model="packaged")
    with Session(services.engine) as s, s.begin():  # a small suite: the packaged model scores it in a second
        from bertdemo.db import behaviour_tests
        behaviour_tests.seed(s, [{"name": "ok is neutral", "kind": "MFT", "description": "", "expected": "neutral",
                                   "cases": [{"text": "ok"}, {"text": "fine"}], "must_pass": True, "tolerance": 0.0}])
    run = behaviour_actions.run("v1", "boss")
    assert run.version == "v1" and [r.path for r in run.runs] == ["pytorch"]
    assert "The int8 path was not run" in run.note  # no int8 graph was built for it
    assert [r[:5] for r in run.rows()] == [["ok is neutral", "MFT", "pytorch", "yes", 2]]
    assert len(run.failure_rows()) == run.rows()[0][5] and run.rows()[0][6] == f"{run.rows()[0][5] / 2:.1%}"
    assert run.sentence().startswith("Ran the suite on v1: pytorch (PyTorch")
    kept = behaviour_actions.last_run("v1")
    assert kept.stored and kept.rows() == run.rows() and kept.failure_rows() == run.failure_rows()
    assert behaviour_actions.table()[0][6].endswith("(v1, pytorch)")
    with pytest.raises(NotFound, match="No model version named 'v9'"):
        behaviour_actions.run("v9", "boss")
    assert behaviour_actions.last_run("v1").sentence().startswith("Stored results on v1")
