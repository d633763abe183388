"""The Label view's side panels: the guidelines, similar examples (of the item on screen, or of a
text one types) with a button that gives them all one label (one batch, one undo), and comments.
Layout and wiring only; the work is in bertdemo.actions (similar, bulk, notes)."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from bertdemo.actions.annotate import AnnotateActions
from bertdemo.actions.similar import COLUMNS
from bertdemo.errors import BadInput, UserError
from bertdemo.ui.common import guarded

K = 10


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def build(actions: AnnotateActions, current: gr.State, history: gr.Dataframe) -> None:
    """The panels, under the example, refreshed whenever the item on screen (`current`) changes."""
    with gr.Accordion("Guidelines", open=True):
        guidelines = gr.Markdown(actions.notes.guidelines(), elem_id="annot-guidelines")
    with gr.Accordion("Similar examples", open=False):
        with gr.Row():
            query = gr.Textbox(label="Find similar to... (empty: the example on screen)", elem_id="annot-similar-text",
                               scale=3)
            find = gr.Button("Find", elem_id="annot-similar-find", scale=1)
        found = gr.State(None)  # {"ids": [...], "versions": {...}}
        note = gr.Markdown(elem_id="annot-similar-note")
        table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=320, elem_id="annot-similar")
        with gr.Row():
            label = gr.Radio(list(actions.labels), label="Give them all this label", elem_id="annot-similar-label")
            apply = gr.Button("Label all shown", variant="primary", elem_id="annot-similar-apply")
            undo = gr.Button("Undo that", elem_id="annot-similar-undo")
        batch = gr.State(None)
    with gr.Accordion("Comments", open=False):
        comment = gr.Textbox(label="Leave a comment on this example (shown in its history and the export)",
                             elem_id="annot-comment")
        comment_btn = gr.Button("Add comment", elem_id="annot-comment-add")

    def show(neighbours, what: str):
        state = {"ids": neighbours.ids, "versions": {str(k): v for k, v in neighbours.versions.items()}}
        return state, f"{len(neighbours.rows)} most similar to {what} (cosine similarity of sentence embeddings).", \
            neighbours.rows

    def similar_of_current(cur: dict | None):
        """On every new item: the guidelines as they are now, and its neighbours (a message instead
        of a toast when there are none to show yet)."""
        if not cur:
            return actions.notes.guidelines(), None, "", None
        try:
            return actions.notes.guidelines(), *show(actions.similar.of_example(cur["id"], K), f"#{cur['id']}")
        except UserError as exc:
            return actions.notes.guidelines(), None, str(exc), None

    @guarded
    def find_similar(text: str, cur: dict | None):
        if (text or "").strip():
            return show(actions.similar.of_text(text, K), "your text")
        if not cur:
            raise BadInput("Type a text, or load an example first.")
        return show(actions.similar.of_example(cur["id"], K), f"#{cur['id']}")

    @guarded
    def label_all_similar(state: dict | None, lab: str | None, request: gr.Request):
        if not state or not state["ids"]:
            raise BadInput("No similar examples shown: press Find first.")
        if not lab:
            raise BadInput("Choose the label to give them first.")
        # with the versions the person saw: rows changed since the table was shown are left as they are
        preview = replace(actions.bulk.preview(state["ids"], lab),
                          versions={int(k): v for k, v in state["versions"].items()})
        result = actions.label_in_bulk(preview, _user(request), admin=False)
        return result.batch, result.summary()

    @guarded
    def undo_similar_label(b: str | None, request: gr.Request):
        if not b:
            raise BadInput("Nothing to undo: label the similar examples first.")
        return None, actions.bulk.undo(b, _user(request), admin=False).summary()

    @guarded
    def add_comment_shown(text: str, cur: dict | None, request: gr.Request):
        if not cur:
            raise BadInput("Load an example first.")
        actions.notes.comment(cur["id"], text, _user(request))
        gr.Info("Comment saved.")
        return "", actions.history(cur["id"])

    # ---------------------------------------------------------------- API
    @guarded
    def similar_examples(example_id: int | None = None, text: str = "", count: int = 10) -> list[dict]:
        """The `count` (1-50) stored examples most similar to example `example_id`, or to `text` when
        given, by the serving version's sentence embeddings: id, text, label, model, similarity, version."""
        n = (actions.similar.of_text(text, count) if (text or "").strip()
             else actions.similar.of_example(example_id, count))
        return n.rows.to_dict(orient="records")

    @guarded
    def label_examples(example_ids: list[int], label: str, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Give every example of `example_ids` (at most 100,000) one label, as one batch that
        /undo_bulk_label takes back in one step; rows already labelled so are left alone (admins only)."""
        return actions.label_in_bulk(actions.bulk.preview(example_ids, label), _user(request)).as_api()

    @guarded
    def undo_bulk_label(batch: str, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Take back a bulk label (its `batch` id): rows changed since are left as they are (admins only)."""
        return actions.bulk.undo(batch, _user(request)).as_api()

    @guarded
    def map_selection(region: dict, request: gr.Request = None) -> list[int]:  # type: ignore[assignment]
        """The example ids inside a region of the map ({"box": [x0, y0, x1, y1]} or {"lasso": [[x, y],
        ...]}), which also become your "Map selection (yours)" queue."""
        ids = actions.map.select(region)
        actions.map.keep_selection(ids, _user(request))
        return ids

    @guarded
    def add_comment_api(example_id: int, comment: str, request: gr.Request = None) -> int:  # type: ignore[assignment]
        """Leave a comment on an example; returns its id."""
        return actions.notes.comment(example_id, comment, _user(request))

    current.change(similar_of_current, [current], [guidelines, found, note, table], api_visibility="private",
                   show_progress="hidden")
    comment_btn.click(add_comment_shown, [comment, current], [comment, history], api_visibility="private")
    gr.on([find.click, query.submit], find_similar, [query, current], [found, note, table], api_visibility="private")
    apply.click(label_all_similar, [found, label], [batch, note], api_visibility="private")
    undo.click(undo_similar_label, [batch], [batch, note], api_visibility="private")
    gr.api(similar_examples, api_name="similar_examples")
    gr.api(label_examples, api_name="label_examples")
    gr.api(undo_bulk_label, api_name="undo_bulk_label")
    gr.api(map_selection, api_name="map_selection")
    gr.api(add_comment_api, api_name="add_comment")
