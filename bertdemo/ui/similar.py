"""The Label view's side panels: the guidelines, similar examples (of the item on screen, or of a
text one types) with a button that gives them all one label (one batch, one undo), and comments.
Layout, wiring and their handlers (SimilarHandlers; its similar_examples and add_comment are also
API endpoints); the work is in bertdemo.actions (similar, bulk, notes, labelling)."""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.bulk import BulkLabels
from bertdemo.actions.labelling import HISTORY_COLUMNS, Labelling
from bertdemo.actions.notes import Notes
from bertdemo.actions.similar import Neighbours, SimilarExamples
from bertdemo.errors import BadInput, UserError
from bertdemo.ui.common import guarded, safe_markdown, user_of

K = 10
# the short columns first and narrow, the text last and wrapped: the labels stay on screen
SHOWN_COLUMNS = ["id", "label", "model", "similarity", "version", "text"]
SHOWN_WIDTHS = ["7%", "11%", "11%", "11%", "9%", "51%"]  # shares of the panel: the text column wraps in it


class Found(NamedTuple):
    """Similar examples as the panel shows them (the outputs, in order)."""

    state: dict | None  # {"ids": [...], "versions": {"id": version}}: what "Label all shown" labels
    note: str
    rows: pd.DataFrame  # SHOWN_COLUMNS


class Refreshed(NamedTuple):
    """The panels on a new item (the outputs, in order)."""

    guidelines: str
    state: dict | None
    note: str
    rows: pd.DataFrame


def found(neighbours: Neighbours, what: str) -> Found:
    state = {"ids": neighbours.ids, "versions": {str(k): v for k, v in neighbours.versions.items()}}
    return Found(state, f"{len(neighbours.rows)} most similar to {what} (cosine similarity of sentence embeddings).",
                 neighbours.rows[SHOWN_COLUMNS])


def nothing_found(note: str = "") -> Found:
    return Found(None, note, pd.DataFrame(columns=SHOWN_COLUMNS))


class SimilarHandlers:
    def __init__(self, similar: SimilarExamples, bulk: BulkLabels, notes: Notes, labelling: Labelling) -> None:
        self.similar = similar
        self.bulk = bulk
        self.notes = notes
        self.labelling = labelling

    @guarded
    def similar_of_current(self, current: dict | None) -> Refreshed:
        """On every new item: the guidelines as they are now, and its neighbours (a message instead
        of a toast when there are none to show yet)."""
        if not current:
            return Refreshed(safe_markdown(self.notes.guidelines()), *nothing_found())
        try:
            return Refreshed(safe_markdown(self.notes.guidelines()), *found(self.similar.of_example(current["id"], K),
                                                             f"#{current['id']}"))
        except UserError as exc:
            return Refreshed(safe_markdown(self.notes.guidelines()), *nothing_found(str(exc)))

    @guarded
    def find_similar(self, text: str, current: dict | None) -> Found:
        if (text or "").strip():
            return found(self.similar.of_text(text, K), "your text")
        if not current:
            raise BadInput("Type a text, or load an example first.")
        return found(self.similar.of_example(current["id"], K), f"#{current['id']}")

    @guarded
    def label_all_similar(self, state: dict | None, label: str | None, request: gr.Request) -> tuple[str | None, str]:
        """Label the examples shown (at the versions shown); (the batch, for its undo; a summary)."""
        if not state or not state["ids"]:
            raise BadInput("No similar examples shown: press Find first.")
        if not label:
            raise BadInput("Choose the label to give them first.")
        # with the versions the person saw: rows changed since the table was shown are left as they are
        preview = replace(self.bulk.preview(state["ids"], label),
                          versions={int(k): v for k, v in state["versions"].items()})
        result = self.bulk.apply(preview, user_of(request), admin=False)
        return result.batch, result.summary()

    @guarded
    def undo_similar_label(self, batch: str | None, request: gr.Request) -> tuple[None, str]:
        if not batch:
            raise BadInput("Nothing to undo: label the similar examples first.")
        return None, self.bulk.undo(batch, user_of(request), admin=False).summary()

    @guarded
    def add_comment_shown(self, text: str, current: dict | None, request: gr.Request) -> tuple[str, pd.DataFrame]:
        if not current:
            raise BadInput("Load an example first.")
        self.notes.comment(current["id"], text, user_of(request))
        gr.Info("Comment saved.")
        if current.get("blind"):  # an independent annotation: the history (others' labels) stays hidden
            return "", pd.DataFrame(columns=HISTORY_COLUMNS)
        return "", self.labelling.history(current["id"])

    # ---------------------------------------------------------------- API
    @guarded
    def similar_examples(self, example_id: int | None = None, text: str = "", count: int = 10) -> list[dict]:
        """The `count` (1-50) stored examples most similar to example `example_id`, or to `text` when
        given, by the serving version's sentence embeddings: id, text, label, model, similarity, version."""
        n = (self.similar.of_text(text, count) if (text or "").strip()
             else self.similar.of_example(example_id, count))
        return n.rows.to_dict(orient="records")

    @guarded
    def add_comment(self, example_id: int, comment: str, request: gr.Request = None) -> int:  # type: ignore[assignment]
        """Leave a comment on an example; returns its id."""
        return self.notes.comment(example_id, comment, user_of(request))


def build(handlers: SimilarHandlers, labels: tuple[str, ...], current: gr.State, history: gr.Dataframe) -> None:
    """The panels, under the example, refreshed whenever the item on screen (`current`) changes."""
    private = {"api_visibility": "private"}
    with gr.Accordion("Guidelines", open=True):
        guidelines = gr.Markdown(safe_markdown(handlers.notes.guidelines()), elem_id="annot-guidelines")
    with gr.Accordion("Similar examples", open=False):
        with gr.Row():
            query = gr.Textbox(label="Find similar to... (empty: the example on screen)", elem_id="annot-similar-text",
                               scale=3)
            find = gr.Button("Find", elem_id="annot-similar-find", scale=1)
        state = gr.State(None)  # {"ids": [...], "versions": {...}}
        note = gr.Markdown(elem_id="annot-similar-note")
        table = gr.Dataframe(headers=SHOWN_COLUMNS, column_widths=SHOWN_WIDTHS, interactive=False, wrap=True,
                             max_height=320, elem_id="annot-similar")
        with gr.Row():
            label = gr.Radio(list(labels), label="Give them all this label", elem_id="annot-similar-label")
            apply = gr.Button("Label all shown", variant="primary", elem_id="annot-similar-apply")
            undo = gr.Button("Undo that", elem_id="annot-similar-undo")
        batch = gr.State(None)
    with gr.Accordion("Comments", open=False):
        comment = gr.Textbox(label="Leave a comment on this example (shown in its history and the export)",
                             elem_id="annot-comment")
        comment_btn = gr.Button("Add comment", elem_id="annot-comment-add")

    current.change(handlers.similar_of_current, [current], [guidelines, state, note, table], show_progress="hidden",
                   **private)
    comment_btn.click(handlers.add_comment_shown, [comment, current], [comment, history], **private)
    gr.on([find.click, query.submit], handlers.find_similar, [query, current], [state, note, table], **private)
    apply.click(handlers.label_all_similar, [state, label], [batch, note], **private)
    undo.click(handlers.undo_similar_label, [batch], [batch, note], **private)
    gr.api(handlers.similar_examples, api_name="similar_examples")
    gr.api(handlers.add_comment, api_name="add_comment")
