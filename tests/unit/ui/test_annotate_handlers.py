"""The Annotate tab's handlers without a browser: the real adapters (AnnotateAdapters) on a
temporary SQLite database, the handlers called as Gradio would call them (request None: the
single-user mode's local person)."""

from __future__ import annotations

import inspect
import typing

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.labelling import HISTORY_COLUMNS, TABLE_COLUMNS
from bertdemo.db import examples, versions
from bertdemo.db.examples import NewExample
from bertdemo.db.models import Example
from bertdemo.ui import annotate_api, annotate_io, annotate_label, annotate_table, corpus_map, similar, team
from bertdemo.ui.annotate_label import LabelHandlers, Screen
from bertdemo.ui.annotate_table import TableHandlers
from tests.support import LABELS

ROWS = [("airline one", "negative", "airline"), ("airline two", None, "airline"),
        ("general one", "neutral", "general"), ("general two", None, "general"), ("airline three", None, "airline")]


@pytest.fixture
def adapters(services) -> AnnotateAdapters:
    return AnnotateAdapters.create(services)


@pytest.fixture
def ids(services) -> dict[str, int]:
    """ROWS stored (text -> id), with a fake active version's scores that predict 'positive' for all."""
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, [NewExample(t, t, lab, dataset=d) for t, lab, d in ROWS], "dataset", "dataset",
                                 LABELS)
        stored = {e.text: e.id for e in s.scalars(select(Example))}
        v = versions.add_version(s, name="v1", path="/nowhere", base_model="x", is_active=True)
        order = sorted(stored.values())
        versions.save_scores(s, v.id, order, np.tile([0.1, 0.1, 0.8], (len(order), 1)), LABELS)
    return stored


# ------------------------------------------------------------------------- the table
def test_the_table_after_a_save_keeps_every_filter_dataset_included(adapters, ids):
    handlers = TableHandlers(adapters.labelling)
    shown = handlers.filter_table("any", "", "", "general")
    assert sorted(shown["id"]) == sorted([ids["general one"], ids["general two"]])
    row = handlers.show_row(ids["general two"])
    assert row.picked == {"id": ids["general two"], "version": 0} and row.label is None
    saved = handlers.save_row(row.picked, "positive", "any", "", "", "general", None)
    # newest change first, and only the dataset the filter names
    assert list(saved.table["id"]) == [ids["general two"], ids["general one"]]
    assert saved.picked == {"id": ids["general two"], "version": 1} and saved.version == 1
    assert list(saved.history["to"]) == ["positive"]
    narrower = handlers.save_row(saved.picked, "negative", "negative", "", "two", "general", None)
    assert list(narrower.table["id"]) == [ids["general two"]]  # label, text and dataset filters all apply


def test_save_in_the_table_needs_a_row_and_relabels_only_the_row_shown(adapters, ids):
    handlers = TableHandlers(adapters.labelling)
    with pytest.raises(gr.Error, match="Select a row first"):
        handlers.save_row(None, "positive", "any", "", "", "all", None)
    row = handlers.show_row(ids["airline two"])
    with pytest.raises(gr.Error, match="Choose the new label first"):
        handlers.save_row(row.picked, None, "any", "", "", "all", None)
    handlers.save_row(row.picked, "neutral", "any", "", "", "all", None)
    labels = {text: adapters.labelling.item(i).label for text, i in ids.items()}
    assert labels == {"airline one": "negative", "airline two": "neutral", "general one": "neutral",
                      "general two": None, "airline three": None}


def test_an_empty_table_keeps_its_headers_and_says_nothing_matched(adapters, ids, monkeypatch):
    said = []
    monkeypatch.setattr(gr, "Info", said.append)
    handlers = TableHandlers(adapters.labelling)
    empty = handlers.filter_table("any", "nobody", "", "all")
    assert empty.empty and list(empty.columns) == TABLE_COLUMNS
    assert said == ["No example matches these filters (Annotator means: who changed the label last)."]
    assert not handlers.filter_table("any", "", "", "all").empty and len(said) == 1  # rows: nothing said


def test_the_sign_out_link_is_there_with_accounts_only(services):
    from bertdemo.auth import add_user
    from bertdemo.ui.demo import build_demo

    def has_link() -> bool:
        return any(getattr(b, "elem_id", None) == "sign-out-link" for b in build_demo(services).blocks.values())

    assert not has_link()  # no accounts: nobody signs in, so nobody signs out
    add_user(services.engine, "alice", "alice-password-1", "admin")
    assert has_link()


# ------------------------------------------------------------------------- the Label view
def test_label_and_next_returns_the_next_item_and_the_undo_stack(adapters, ids):
    handlers = LabelHandlers(adapters.labelling, predict=None)
    first = handlers.load_queue("unlabeled", "", "airline", [], None)
    assert isinstance(first, Screen)
    assert first.current == {"id": ids["airline two"], "version": 0, "predicted": "positive", "blind": False}
    assert first.text == "airline two" and first.seen == [] and first.undo_stack == []
    nxt = handlers.label_and_next("negative", first.current, "unlabeled", "", "airline", first.seen,
                                  first.undo_stack, None)
    assert nxt.current == {"id": ids["airline three"], "version": 0, "predicted": "positive", "blind": False}
    assert nxt.text == "airline three"
    assert nxt.seen == [ids["airline two"]]
    assert nxt.undo_stack == [(ids["airline two"], 1)]
    assert nxt.info.endswith(f"Saved #{ids['airline two']}: none → negative.")
    assert nxt.progress == "**Unlabeled**: 1 left for you · 1 for the team · 1 seen this session"
    accepted = handlers.accept_suggestion(nxt.current, "unlabeled", "", "airline", nxt.seen, nxt.undo_stack, None)
    assert accepted.current is None and accepted.text == ""  # the airline queue is done
    assert accepted.undo_stack == [(ids["airline two"], 1), (ids["airline three"], 1)]
    assert adapters.labelling.history(ids["airline three"])["source"].tolist() == ["suggestion"]
    assert list(accepted.history.columns) == HISTORY_COLUMNS and accepted.history.empty


def test_undo_takes_back_the_last_change_and_shows_that_item_again(adapters, ids):
    handlers = LabelHandlers(adapters.labelling, predict=None)
    first = handlers.load_queue("unlabeled", "", "airline", [], None)
    nxt = handlers.label_and_next("positive", first.current, "unlabeled", "", "airline", first.seen,
                                  first.undo_stack, None)
    undone = handlers.undo_last("unlabeled", "", "airline", nxt.seen, nxt.undo_stack, None)
    assert undone.current == {"id": ids["airline two"], "version": 2, "predicted": "positive", "blind": False}
    assert undone.undo_stack == [] and undone.seen == []
    assert undone.info.endswith(f"Undone #{ids['airline two']}: back to none.")
    # the progress line counts the queue again: both unlabelled airline items, for her and the team
    assert undone.progress == "**Unlabeled**: 2 left for you · 2 for the team · 0 seen this session"
    assert adapters.labelling.item(ids["airline two"]).label is None
    assert list(undone.history["source"]) == ["annotator", "undo"]
    with pytest.raises(gr.Error, match="Nothing to undo in this session"):
        handlers.undo_last("unlabeled", "", "airline", undone.seen, undone.undo_stack, None)


def test_labelling_without_an_item_on_screen_says_what_to_do(adapters, ids):
    handlers = LabelHandlers(adapters.labelling, predict=None)
    with pytest.raises(gr.Error, match="No example on screen: load a queue first"):
        handlers.label_and_next("negative", None, "unlabeled", "", "all", [], [], None)


# ------------------------------------------------------------------------- bulk labels count
class FakeJobs:
    def __init__(self):
        self.started: list[str] = []

    def status(self):
        from bertdemo.training.records import JobStatus

        return JobStatus(state="running" if self.started else "idle")

    def start(self, config, user, activate=True, reason=""):
        self.started.append(reason)
        return len(self.started)


def test_a_bulk_label_through_the_adapter_counts_towards_retrain_every_n(adapters, ids, services):
    adapters.autotrain.set_every(10, None)
    preview = adapters.bulk.preview([ids["airline two"], ids["general two"], ids["airline three"]], "neutral")
    result = adapters.bulk.apply(preview, None)
    assert result.changed == 3
    assert adapters.autotrain.pending() == (3, 10)
    # the map's API endpoint applies through the same adapter: it counts too, and the 10th label starts a run
    jobs = FakeJobs()
    adapters.autotrain.services = type("S", (), {"jobs": jobs, "registry": services.registry,
                                                 "settings": services.settings})()
    handlers = corpus_map.MapHandlers(adapters.map, adapters.bulk)
    handlers.label_examples(list(ids.values()), "negative", None)  # 4 change (airline one is negative already)
    assert jobs.started == [] and adapters.autotrain.pending() == (4, 10)  # distinct examples: the 3, and 1 more
    handlers.label_examples(list(ids.values()), "positive", None)  # all 5 change: 5 distinct examples in all
    assert jobs.started == [] and adapters.autotrain.pending() == (5, 10)  # relabelling the same rows counts once


# ------------------------------------------------------------------------- panels' tables
def test_similar_and_map_tables_put_the_short_columns_first(adapters, ids):
    panels = similar.SimilarHandlers(adapters.similar, adapters.bulk, adapters.notes, adapters.labelling)
    refreshed = panels.similar_of_current(None)
    assert refreshed.state is None and list(refreshed.rows.columns) == similar.SHOWN_COLUMNS
    assert similar.SHOWN_COLUMNS[-1] == "text" and len(similar.SHOWN_WIDTHS) == len(similar.SHOWN_COLUMNS)
    preview = corpus_map.MapHandlers(adapters.map, adapters.bulk).preview_map_label([ids["airline one"]], "positive")
    assert list(preview.sample.columns) == ["id", "label now", "after", "text"]
    assert preview.sample.iloc[0].tolist() == [ids["airline one"], "negative", "positive", "airline one"]


# ------------------------------------------------------------------------- what Gradio reads
HANDLER_CLASSES = [annotate_label.LabelHandlers, annotate_table.TableHandlers, annotate_io.TransferHandlers,
                   annotate_api.LabellingApi, similar.SimilarHandlers, corpus_map.MapHandlers, team.TeamHandlers]


@pytest.mark.parametrize("cls", HANDLER_CLASSES, ids=lambda c: c.__name__)
def test_every_handler_s_annotations_resolve_so_gradio_passes_the_request(cls):
    """Gradio passes gr.Request, gr.SelectData and gr.EventData by annotation: an annotation that
    does not resolve would silently make them ordinary inputs."""
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(fn)
        for param in inspect.signature(fn).parameters:
            if param in ("request", "evt"):
                assert hints[param] in (gr.Request, gr.SelectData, gr.EventData), (name, param)


def test_a_queue_that_is_done_shows_empty_history_with_headers(adapters, ids):
    shown = annotate_label.screen(adapters.labelling, None, [1, 2], [], queue="disagree")
    assert shown.progress.startswith("**Model disagrees with the label** is done")
    assert isinstance(shown.history, pd.DataFrame) and list(shown.history.columns) == HISTORY_COLUMNS


def test_a_model_queue_says_which_model_ranked_it(adapters, ids, services):
    handlers = LabelHandlers(adapters.labelling, predict=None)
    shown = handlers.load_queue("margin", "", "all", [], None)
    every = services.settings.quick_refit_every
    assert shown.progress.endswith(
        f"\n\n*ranked by v1's stored scores · the quick model re\\-ranks after {every} more labels*")
    assert "model suggests **positive** (80%; **a** accepts)" in shown.info  # the stored score's suggestion
    assert "ranked by" not in handlers.load_queue("unlabeled", "", "all", [], None).progress  # no model ranks it
