"""The behaviour tests panel's handlers (ui/train_behaviour.py) without a browser, on real actions
and a temporary database: the table, picking a row, preview and save through the form's named
values, must pass and delete for admins only (annotators are told "Only admins may do this"),
the kind choosing which inputs show, and a flip's or an example's text handed to the form; and
the panel and the Annotate form build and wire in a page."""

from __future__ import annotations

import inspect
import typing
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

from bertdemo.actions.behaviour import FAILURE_COLUMNS, PREVIEW_COLUMNS, RESULT_COLUMNS, TEST_COLUMNS
from bertdemo.ui import train_behaviour as ui

BOSS, ANN = SimpleNamespace(username="boss"), SimpleNamespace(username="ann")
FORM = dict(text="my flight is late again", kind="MFT", expected="negative", perturbations=None,
            name="late is negative", description="", must_pass=True, source="flip")


def test_the_table_has_its_headers_and_a_click_picks_a_test(behaviour_actions):
    shown = ui.show_tests(behaviour_actions)
    assert list(shown.columns) == list(TEST_COLUMNS) and shown.iloc[0]["name"] == "mft_positive_adjective"
    assert ui.pick_test(shown, SimpleNamespace(index=[2, 0])) == ("mft_neutral_fact", False)
    assert ui.pick_test(shown, SimpleNamespace(index=None)) == (gr.update(), gr.update())
    first, stopped = ui.first_fill(behaviour_actions)
    assert first.equals(shown) and stopped.active is False


def test_preview_shows_the_perturbed_texts_and_refuses_bad_input(behaviour_actions):
    rows, line = ui.preview_test(behaviour_actions, "The crew was lovely @united", "INV", None, ["remove @user"],
                                 "", "")
    assert list(rows.columns) == list(PREVIEW_COLUMNS)
    assert rows.values.tolist() == [["The crew was lovely @united", "The crew was lovely", "same label as the text"]]
    assert "INV test" in line and "1 text to check" in line
    rows, _ = ui.preview_test(behaviour_actions, "The crew was great", "DIR", ui.NO_LABEL, [], "", "")
    assert rows.iloc[0]["perturbed text"] == "The crew was not great"
    with pytest.raises(gr.Error, match="Type the text the test starts from"):
        ui.preview_test(behaviour_actions, "", "MFT", "positive", None, "", "")
    with pytest.raises(gr.Error, match="The kind of test must be one of"):
        ui.preview_test(behaviour_actions, "ok", "ABC", None, None, "", "")
    with pytest.raises(gr.Error, match="The expected label must be one of"):
        ui.preview_test(behaviour_actions, "ok", "MFT", "furious", None, "", "")


def test_admins_save_mark_and_delete_annotators_are_told_they_may_not(behaviour_actions):
    with pytest.raises(gr.Error, match="Only admins may do this"):
        ui.save_test(behaviour_actions, ANN, **FORM)
    message, shown = ui.save_test(behaviour_actions, BOSS, **FORM)
    assert "Saved behaviour test 'late is negative'" in message
    assert shown.iloc[-1][["name", "kind", "must pass", "source"]].tolist() == ["late is negative", "MFT", "yes",
                                                                                 "flip"]
    with pytest.raises(gr.Error, match="exists already; choose another name"):
        ui.save_test(behaviour_actions, BOSS, **FORM)
    with pytest.raises(gr.Error, match="Only admins may do this"):
        ui.set_must_pass(behaviour_actions, "late is negative", False, ANN)
    message, shown = ui.set_must_pass(behaviour_actions, "late is negative", False, BOSS)
    assert "no longer has to pass" in message and shown.iloc[-1]["must pass"] == ""
    with pytest.raises(gr.Error, match="Only admins may do this"):
        ui.delete_test(behaviour_actions, "late is negative", ANN)
    message, shown, chosen = ui.delete_test(behaviour_actions, "late is negative", BOSS)
    assert message == "Deleted behaviour test 'late is negative'." and chosen == ""
    assert "late is negative" not in shown["name"].tolist()
    with pytest.raises(gr.Error, match="Only admins may do this"):
        ui.run_suite(behaviour_actions, "v1", ANN)


def test_stored_results_of_a_version_without_any(behaviour_actions):
    with pytest.raises(gr.Error, match="No model version named 'v1'"):
        ui.stored_results(behaviour_actions, "v1")


def test_the_kind_chooses_the_inputs_and_texts_are_handed_to_the_form():
    perturbations, expected = ui.kind_changed("INV")
    assert perturbations["visible"] is True and expected["visible"] is False
    perturbations, expected = ui.kind_changed("MFT")
    assert perturbations["visible"] is False and expected["label"] == "Expected label (required)"
    assert ui.kind_changed("DIR")[1]["label"].startswith("Label whose probability must fall")
    assert ui.from_text("a flipped tweet") == ("a flipped tweet", "flip", gr.update(open=True))
    assert ui.prefill(None) == "" and ui.prefill("the item") == "the item"
    shown = ui.RunShown("x", ui.table((), RESULT_COLUMNS), ui.table((), FAILURE_COLUMNS))
    assert isinstance(shown.outputs()[1], pd.DataFrame)


def test_every_handler_s_annotations_resolve_so_gradio_passes_the_request():
    for name, fn in inspect.getmembers(ui, inspect.isfunction):
        if fn.__module__ != ui.__name__ or name.startswith("_"):
            continue
        hints = typing.get_type_hints(fn)
        for param in inspect.signature(fn).parameters:
            if param in ("request", "evt"):
                assert hints[param] in (gr.Request, gr.SelectData), (name, param)


def test_the_panel_and_the_annotate_form_build_in_a_page(behaviour_actions):
    from bertdemo.ui import annotate_label

    with gr.Blocks() as page:
        flip = gr.Textbox()
        ui.build(behaviour_actions, ["v2", "v1"], flip)
        view = annotate_label.layout(behaviour_actions.labels, ("all",))
        ui.wire_maker(view.behaviour, behaviour_actions)
    ids = {getattr(b, "elem_id", None) for b in page.blocks.values()}
    assert {"behaviour-tests", "behaviour-from-flip", "behaviour-text", "behaviour-save", "behaviour-run",
            "annot-behaviour-text", "annot-behaviour-save"} <= ids
    admin_only = {b.elem_id for b in page.blocks.values() if "admin-only" in (getattr(b, "elem_classes", None) or [])}
    assert {"behaviour-save", "behaviour-mark", "behaviour-delete", "behaviour-run", "behaviour-must-pass",
            "annot-behaviour-save", "annot-behaviour-must-pass"} <= admin_only
    assert "behaviour-preview" not in admin_only  # anyone may look at what a test would check
