"""The Annotate tab's Table view: every example with its label, annotator and the model's prediction,
filtered; pick a row to see its history and change its label. Layout, wiring and its handlers
(TableHandlers); the work is in actions.labelling.Labelling. Cells render plain text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.labelling import HISTORY_COLUMNS, TABLE_COLUMNS, Labelling
from bertdemo.errors import BadInput, Conflict
from bertdemo.ui.common import guarded, user_of


class Filters(NamedTuple):
    """The table's filters, as the person set them."""

    label: str  # "any", "unlabeled" or a label
    annotator: str
    text: str
    dataset: str  # "all" or a dataset name


class Row(NamedTuple):
    """The row in the form (the outputs of a pick, in order): the row itself travels as `picked`."""

    picked: dict  # {"id", "version"}: the row Save relabels (gr.State)
    example_id: int
    version: int
    label: str | None
    history: pd.DataFrame


class RowSaved(NamedTuple):
    """After a save in the form (the outputs, in order)."""

    picked: dict  # {"id", "version"} with the row's new version
    version: int
    history: pd.DataFrame
    table: pd.DataFrame  # refreshed with every filter of the view


class TableHandlers:
    def __init__(self, labelling: Labelling) -> None:
        self.labelling = labelling

    @guarded
    def filter_table(self, label: str, annotator: str, text: str, dataset: str) -> pd.DataFrame:
        rows = self.rows(Filters(label, annotator, text, dataset))
        if rows.empty:  # say so: an empty table alone looks like a page that did not load
            gr.Info("No example matches these filters (Annotator means: who changed the label last).")
        return rows

    def rows(self, filters: Filters) -> pd.DataFrame:
        return self.labelling.table(filters.label, filters.annotator or "", filters.text or "",
                                    dataset=filters.dataset)

    @guarded
    def pick_row(self, frame: pd.DataFrame, evt: gr.SelectData) -> Row:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return self.show_row(int(frame.iloc[row]["id"]))

    @guarded
    def show_row(self, example_id: int) -> Row:
        item = self.labelling.item(example_id)
        return Row({"id": item.id, "version": item.version}, item.id, item.version, item.label,
                   self.labelling.history(item.id))

    @guarded
    def save_row(self, picked: dict | None, label: str | None, f_label: str, f_annotator: str, f_text: str,
                 f_dataset: str, request: gr.Request) -> RowSaved:
        """Relabel the row in the form (the one picked, at the version shown); the table is refreshed
        with all the current filters."""
        if not picked:
            raise BadInput("Select a row first: click it in the table.")
        if not label:
            raise BadInput("Choose the new label first.")
        filters = Filters(f_label, f_annotator, f_text, f_dataset)
        try:
            saved = self.labelling.save_label(picked["id"], label, picked["version"], user_of(request))
        except Conflict as exc:
            gr.Warning(str(exc))
            item = self.labelling.item(picked["id"])
            return RowSaved({"id": item.id, "version": item.version}, item.version,
                            self.labelling.history(item.id), self.rows(filters))
        gr.Info(f"Saved #{saved.example_id}: {saved.previous or 'none'} → {saved.label}.")
        return RowSaved({"id": saved.example_id, "version": saved.version}, saved.version,
                        self.labelling.history(saved.example_id), self.rows(filters))


@dataclass(frozen=True)
class TableView:
    filters: list  # label, annotator, text, dataset: in Filters' order
    refresh: gr.Button
    table: gr.Dataframe
    picked: gr.State
    row_id: gr.Number
    row_version: gr.Number
    row_label: gr.Radio
    row_save: gr.Button
    row_history: gr.Dataframe


def layout(labels: tuple[str, ...], datasets: tuple[str, ...]) -> TableView:
    with gr.Row():
        f_label = gr.Dropdown(["any", "unlabeled", *labels], value="any", label="Label")
        f_user = gr.Textbox(label="Annotator", elem_id="annot-f-user")
        f_dataset = gr.Dropdown(list(datasets), value="all", label="Dataset", elem_id="annot-f-dataset")
        f_text = gr.Textbox(label="Text contains", elem_id="annot-f-text")
        refresh = gr.Button("Filter", elem_id="annot-filter")
    table = gr.Dataframe(headers=TABLE_COLUMNS, interactive=False, wrap=True, max_height=500, elem_id="annot-table")
    gr.Markdown("Select a row to see its history and change its label.")
    with gr.Row():
        row_id = gr.Number(label="Example id", precision=0, interactive=False, elem_id="annot-row-id")
        row_version = gr.Number(label="Version you saw", precision=0, interactive=False)
        row_label = gr.Radio(list(labels), label="New label", elem_id="annot-row-label")
        row_save = gr.Button("Save label", variant="primary", elem_id="annot-row-save")
    row_history = gr.Dataframe(headers=HISTORY_COLUMNS, label="History", interactive=False,
                               elem_id="annot-row-history")
    return TableView([f_label, f_user, f_text, f_dataset], refresh, table, gr.State(None), row_id, row_version,
                     row_label, row_save, row_history)


def wire(view: TableView, handlers: TableHandlers) -> None:
    private = {"api_visibility": "private"}
    _label, f_user, f_text, _dataset = view.filters
    gr.on([view.refresh.click, f_text.submit, f_user.submit], handlers.filter_table, view.filters, [view.table],
          **private)
    view.table.select(handlers.pick_row, [view.table],
                      [view.picked, view.row_id, view.row_version, view.row_label, view.row_history], **private)
    view.row_save.click(handlers.save_row, [view.picked, view.row_label, *view.filters],
                        [view.picked, view.row_version, view.row_history, view.table], **private)


def build(labelling: Labelling, labels: tuple[str, ...], datasets: tuple[str, ...]) -> None:
    """The view, in the current gr.Tab."""
    wire(layout(labels, datasets), TableHandlers(labelling))
