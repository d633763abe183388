"""Annotate tab: layout and wiring only; the work is in bertdemo.actions.annotate.AnnotateActions.

Per-session state (the item on screen, the ids seen in this queue, this person's undo stack)
lives in gr.State; everything else in the database. Example texts are shown in Textbox and
Dataframe cells, which render plain text, so HTML or script in a tweet is never run.
"""

from __future__ import annotations

import json

import gradio as gr

from bertdemo.actions.annotate import QUEUES, AnnotateActions, Item
from bertdemo.actions.predict import PredictActions
from bertdemo.errors import BadInput, Conflict
from bertdemo.ui import corpus_map, similar, team
from bertdemo.ui.common import api_file, guarded, uploaded, warn

SHORTCUTS_JS = """
if (!window.__bertdemoAnnotateKeys) {
  window.__bertdemoAnnotateKeys = true;
  const map = %s;
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    const typing = t && (['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName) || t.isContentEditable);
    if (typing) return;
    const id = map[e.key.toLowerCase()];
    if (!id) return;
    const btn = document.getElementById(id);
    if (!btn || btn.offsetParent === null || btn.disabled) return;  // the Annotate tab is not on screen
    e.preventDefault();
    btn.click();
  });
}
"""


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def build(actions: AnnotateActions, predict: PredictActions, tab: gr.Tab | None = None) -> gr.Dropdown:
    labels = list(actions.labels)
    # the bundled datasets this app imports, and CSV imports: queues and the table filter by them
    datasets = ["all", *actions.settings.datasets, "import"]
    current = gr.State(None)  # {"id", "version"} of the item on screen
    seen = gr.State([])  # ids shown in this queue during this session
    undo_stack = gr.State([])  # [(example id, version after my change)], newest last

    with gr.Tab("Label"):
        with gr.Row():
            # the page's first load sets the default (ui/demo.py): a callable value would be a public endpoint
            queue = gr.Dropdown([(v, k) for k, v in QUEUES.items()], value="unlabeled", label="Queue",
                                elem_id="annot-queue", scale=2)
            search = gr.Textbox(label="Text search (for the 'Text search' queue)", elem_id="annot-search", scale=2)
            dataset = gr.Dropdown(datasets, value="all", label="Dataset", elem_id="annot-dataset", scale=1)
            load = gr.Button("Load queue", elem_id="annot-load", scale=1)
        progress = gr.Markdown("Choose a queue and press **Load queue**.", elem_id="annot-progress")
        text = gr.Textbox(label="Example", interactive=False, lines=3, elem_id="annot-text")
        info = gr.Markdown(elem_id="annot-info")
        with gr.Row():
            label_buttons = [gr.Button(f"{lab} ({i})", variant="primary", elem_id=f"annot-label-{i}")
                             for i, lab in enumerate(labels, start=1)]
            accept = gr.Button("accept suggestion (a)", elem_id="annot-accept")
            skip = gr.Button("skip (s)", elem_id="annot-skip")
            undo = gr.Button("undo (u)", elem_id="annot-undo")
        gr.Markdown(f"Keys: {', '.join(f'**{i}** {lab}' for i, lab in enumerate(labels, start=1))}, "
                    "**a** accept the model's suggestion (recorded as such), **s** skip, **u** undo your last "
                    "change (when the cursor is not in a text field).")
        show_attr = gr.Checkbox(False, label="Show the model's token attributions (off by default: they can bias you)",
                                elem_id="annot-show-attr")
        attr = gr.HighlightedText(label="Attributions (Integrated Gradients, towards the predicted class)",
                                  visible=False, combine_adjacent=False, elem_id="annot-attr")
        with gr.Accordion("History of this example", open=False):
            item_history = gr.Dataframe(interactive=False, elem_id="annot-item-history")
        similar.build(actions, current, item_history)
        keymap = {str(i): f"annot-label-{i}" for i in range(1, len(labels) + 1)}
        keymap |= {"a": "annot-accept", "s": "annot-skip", "u": "annot-undo"}
        gr.HTML("", js_on_load=SHORTCUTS_JS % json.dumps(keymap), elem_id="annot-keys")

    with gr.Tab("Table"):
        with gr.Row():
            f_label = gr.Dropdown(["any", "unlabeled", *labels], value="any", label="Label")
            f_user = gr.Textbox(label="Annotator", elem_id="annot-f-user")
            f_dataset = gr.Dropdown(datasets, value="all", label="Dataset", elem_id="annot-f-dataset")
            f_text = gr.Textbox(label="Text contains", elem_id="annot-f-text")
            refresh = gr.Button("Filter", elem_id="annot-filter")
        table = gr.Dataframe(interactive=False, wrap=True, max_height=500, elem_id="annot-table")
        gr.Markdown("Select a row to see its history and change its label.")
        with gr.Row():
            row_id = gr.Number(label="Example id", precision=0, interactive=False, elem_id="annot-row-id")
            row_version = gr.Number(label="Version you saw", precision=0, interactive=False)
            row_label = gr.Radio(labels, label="New label", elem_id="annot-row-label")
            row_save = gr.Button("Save label", variant="primary", elem_id="annot-row-save")
        row_history = gr.Dataframe(label="History", interactive=False, elem_id="annot-row-history")

    with gr.Tab("Import / export"):
        gr.Markdown(f"Import a CSV with a `text` column and an optional `label` column "
                    f"({', '.join(labels)}; empty = unlabelled), up to {actions.settings.max_upload_mb:.0f} MB. "
                    "**Preview** shows what would be added and skipped (duplicates by cleaned text, unknown "
                    "labels, unusable texts); **Import** adds them (admins only). Export writes every example "
                    "with its current label, annotator and number of changes.")
        upload = api_file(label="CSV to import", file_types=[".csv"], elem_id="annot-upload")
        with gr.Row():
            preview_btn = gr.Button("Preview", elem_id="annot-preview")
            import_btn = gr.Button("Import", variant="primary", elem_id="annot-import")
        import_summary = gr.Markdown(elem_id="annot-import-summary")
        with gr.Row():
            to_add = gr.Dataframe(label="Will be added", interactive=False, max_height=300)
            to_skip = gr.Dataframe(label="Will be skipped", interactive=False, max_height=300)
        export_btn = gr.Button("Export all labels (CSV)", elem_id="annot-export")
        export_file = gr.File(label="Export", elem_id="annot-export-file")

    corpus_map.build(actions)
    team.build(actions)  # last: its gr.api endpoints end the row of tabs

    # ---------------------------------------------------------------- labeling
    def describe(item: Item | None, note: str = "") -> str:
        if item is None:
            return note
        pred = (f"model suggests **{item.predicted}** ({item.confidence:.0%}; **a** accepts)" if item.predicted
                else "no model suggestion yet")
        who = f", last changed by {item.updated_by} at {item.updated_at:%Y-%m-%d %H:%M} UTC" if item.updated_by else ""
        return (f"#{item.id} · current label **{item.label or 'none'}** · {pred}{who} · version {item.version}"
                + (f"\n\n{note}" if note else ""))

    def show(item: Item | None, seen_ids: list[int], stack: list, note: str = "", queue_key: str = ""):
        if item is None:
            done = (f"**{QUEUES.get(queue_key, 'This queue')}** is done: nothing left that you have not seen · "
                    f"{len(seen_ids):,} seen this session. {note}")
            return ("", describe(None), done.strip(), None, seen_ids, stack, None)
        cur = {"id": item.id, "version": item.version, "predicted": item.predicted}
        prog = (f"**{QUEUES.get(item.queue, 'Item')}**: {item.remaining:,} left for you · "
                f"{item.team_remaining:,} for the team · {len(seen_ids):,} seen this session")
        return (item.text, describe(item, note), prog, cur, seen_ids, stack, actions.history(item.id))

    outputs = [text, info, progress, current, seen, undo_stack, item_history]

    @guarded
    def load_queue(q: str, s: str, d: str, stack: list, request: gr.Request):
        return show(actions.next_item(q, s, [], _user(request), d), [], stack, queue_key=q)

    @guarded
    def label_and_next(lab: str, cur: dict | None, q: str, s: str, d: str, seen_ids: list, stack: list,
                       request: gr.Request, accepted: bool = False):
        if not cur:
            raise BadInput("No example on screen: load a queue first.")
        try:
            saved = actions.save_label(cur["id"], lab, cur["version"], _user(request), accepted_suggestion=accepted)
        except Conflict as exc:
            gr.Warning(str(exc))
            item = actions.item(cur["id"], q)
            return show(item, seen_ids, stack, "Someone else changed this example: decide again.")
        seen_ids = [*seen_ids, cur["id"]]
        stack = [*stack, (saved.example_id, saved.version)][-50:]
        note = f"Saved #{saved.example_id}: {saved.previous or 'none'} → {saved.label}."
        return show(actions.next_item(q, s, seen_ids, _user(request), d), seen_ids, stack, note, q)

    @guarded
    def accept_suggestion(cur: dict | None, q: str, s: str, d: str, seen_ids: list, stack: list, request: gr.Request):
        if cur and not cur.get("predicted"):
            raise BadInput("The model has no suggestion for this example yet: choose a label.")
        return label_and_next(cur["predicted"] if cur else "", cur, q, s, d, seen_ids, stack, request, accepted=True)

    @guarded
    def skip_shown(cur: dict | None, q: str, s: str, d: str, seen_ids: list, stack: list, request: gr.Request):
        if cur:
            actions.skip(cur["id"], _user(request))  # back to the team at once
            seen_ids = [*seen_ids, cur["id"]]
        return show(actions.next_item(q, s, seen_ids, _user(request), d), seen_ids, stack, "Skipped.", q)

    def first_load(cur: dict | None, q: str, s: str, d: str, stack: list, request: gr.Request):
        if cur is not None:
            return [gr.update()] * len(outputs)
        # the tab opened before the page's load set the default queue: take the default here too
        return load_queue(actions.default_queue() if q == "unlabeled" else q, s, d, stack, request)

    @guarded
    def undo_last(q: str, s: str, d: str, seen_ids: list, stack: list, request: gr.Request):
        if not stack:
            raise BadInput("Nothing to undo in this session.")
        ex_id, version = stack[-1]
        saved = actions.undo(ex_id, _user(request), version)
        seen_ids = [i for i in seen_ids if i != ex_id]
        note = f"Undone #{ex_id}: back to {saved.label or 'none'}."
        left = [i for i in actions.queue_ids(q, s, d) if i not in set(seen_ids)]
        return show(actions.item(ex_id, q, max(len(left), 1)), seen_ids, stack[:-1], note)

    @guarded
    def attributions(on: bool, cur: dict | None):
        if not on or not cur:
            return gr.update(visible=bool(on), value=None)
        r = predict.explain(actions.item(cur["id"]).cleaned, None, True)
        warn(r.warnings)
        return gr.update(visible=True, value=r.highlighted)

    load_ev = gr.on([load.click, search.submit], load_queue, [queue, search, dataset, undo_stack], outputs,
                    api_visibility="private")
    queue.input(load_queue, [queue, search, dataset, undo_stack], outputs, api_visibility="private")
    evs = [load_ev]
    for lab, btn in zip(labels, label_buttons):
        evs.append(btn.click(_bind(label_and_next, lab), [current, queue, search, dataset, seen, undo_stack], outputs,
                             api_visibility="private"))
    evs.append(accept.click(accept_suggestion, [current, queue, search, dataset, seen, undo_stack], outputs,
                            api_visibility="private"))
    evs.append(skip.click(skip_shown, [current, queue, search, dataset, seen, undo_stack], outputs, api_visibility="private"))
    evs.append(undo.click(undo_last, [queue, search, dataset, seen, undo_stack], outputs, api_visibility="private"))
    for ev in evs:
        ev.success(attributions, [show_attr, current], [attr], api_visibility="private")
    show_attr.change(attributions, [show_attr, current], [attr], api_visibility="private")
    if tab is not None:
        tab.select(first_load, [current, queue, search, dataset, undo_stack], outputs, api_visibility="private")

    # ---------------------------------------------------------------- table
    @guarded
    def filter_table(lab: str, who: str, needle: str, d: str):
        return actions.table(lab, who or "", needle or "", dataset=d)

    @guarded
    def pick_row(frame, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        ex_id = int(frame.iloc[row]["id"])
        item = actions.item(ex_id)
        return item.id, item.version, item.label, actions.history(item.id)

    @guarded
    def save_row(ex_id, version, lab, who, needle, f_lab, request: gr.Request):
        if ex_id is None or not lab:
            raise BadInput("Select a row and a label first.")
        try:
            saved = actions.save_label(int(ex_id), lab, int(version), _user(request))
        except Conflict as exc:
            gr.Warning(str(exc))
            item = actions.item(int(ex_id))
            return item.version, actions.history(item.id), actions.table(f_lab, who or "", needle or "")
        gr.Info(f"Saved #{saved.example_id}: {saved.previous or 'none'} → {saved.label}.")
        return saved.version, actions.history(saved.example_id), actions.table(f_lab, who or "", needle or "")

    gr.on([refresh.click, f_text.submit, f_user.submit], filter_table, [f_label, f_user, f_text, f_dataset], [table],
          api_visibility="private")
    table.select(pick_row, [table], [row_id, row_version, row_label, row_history], api_visibility="private")
    row_save.click(save_row, [row_id, row_version, row_label, f_user, f_text, f_label],
                   [row_version, row_history, table], api_visibility="private")

    # ---------------------------------------------------------------- import / export / admin
    @guarded
    def preview(path: str | None):
        p = actions.preview_import(uploaded(path))
        warn(p.warnings)
        return p.summary(), p.add[["row", "text", "label"]], p.skipped

    @guarded
    def import_csv(csv_file: str | None, request: gr.Request) -> str:
        """Import a CSV (a text column, an optional label column); duplicates, unknown labels and
        unusable texts are skipped; returns a summary. Admins only."""
        done = actions.import_csv(uploaded(csv_file), _user(request))
        warn(done.preview.warnings)
        return done.summary()

    @guarded
    def export_csv(request: gr.Request) -> str:
        """Every example with its current label, annotator, time and number of changes, as CSV."""
        return actions.export_csv(_user(request))

    preview_btn.click(preview, [upload], [import_summary, to_add, to_skip], api_visibility="private")
    import_btn.click(import_csv, [upload], [import_summary], api_name="import_csv")
    export_btn.click(export_csv, None, [export_file], api_name="export_csv")

    # ---------------------------------------------------------------- API-only endpoints
    @guarded
    def next_item(queue: str = "unlabeled", search: str = "", exclude: list[int] | None = None,
                  dataset: str = "all", request: gr.Request = None) -> dict | None:  # type: ignore[assignment]
        """The next example of a queue (unlabeled, disagree, uncertain, suspicious, recent, search,
        selection) among the examples of `dataset` (all, airline, general, import), skipping the ids
        in `exclude`; None when the queue is done."""
        item = actions.next_item(queue, search, exclude, _user(request), dataset)
        return item.as_api() if item else None

    @guarded
    def skip_item_api(example_id: int, request: gr.Request = None) -> bool:  # type: ignore[assignment]
        """Give an example next_item handed you back without labelling it (someone else may get it
        at once); True when you held it. Items you neither save nor skip return to the team when
        their lease runs out."""
        return actions.skip(example_id, _user(request))

    @guarded
    def save_label(example_id: int, label: str, version: int, accepted_suggestion: bool = False,
                   request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Set an example's label; `version` is the one next_item returned (refused if it changed).
        With accepted_suggestion, the label is the model's prediction that next_item showed
        ("predicted"), accepted as it is: recorded with source "suggestion"."""
        return actions.save_label(example_id, label, version, _user(request), accepted_suggestion).as_api()

    @guarded
    def undo_api(example_id: int, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Restore the label before the example's newest change (a new history row)."""
        return actions.undo(example_id, _user(request)).as_api()

    # queue=False: a save is ~1 ms of SQLite work; the queue round trips (join + event stream) would
    # cost far more than the work itself, and they need no share of the 4 model workers
    # (default_concurrency_limit). Each call is still its own transaction.
    gr.api(next_item, api_name="next_item", queue=False, concurrency_limit=None)
    gr.api(save_label, api_name="save_label", queue=False, concurrency_limit=None)
    gr.api(undo_api, api_name="undo", queue=False, concurrency_limit=None)
    gr.api(skip_item_api, api_name="skip_item", queue=False, concurrency_limit=None)
    return queue


def _bind(fn, label: str):
    """A callback for one label button (Gradio passes gr.Request by annotation)."""
    def bound(cur, q, s, d, seen_ids, stack, request: gr.Request):
        return fn(label, cur, q, s, d, seen_ids, stack, request)
    return bound
