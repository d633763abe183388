"""The Annotate tab's Label view: a queue's items one at a time, a key per label, accept the model's
suggestion, skip, undo, the token attributions on demand, the item's history. Layout, wiring and
its handlers (LabelHandlers: values in, a Screen out); the work is in actions.labelling.Labelling.

Per-session state (the item on screen, the ids seen in this queue, this person's undo stack) lives
in gr.State. The example is shown in a Textbox, which renders plain text, so HTML in a tweet is
never run. An item the suggestion-bias audit drew is shown without the suggestion (and without the
token attributions, which would show it); accepting there only warns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.behaviour import BehaviourActions
from bertdemo.actions.labelling import HISTORY_COLUMNS, QUEUES, Item, Labelling
from bertdemo.actions.predict import PredictActions
from bertdemo.errors import BadInput, Conflict
from bertdemo.ui.common import guarded, md_text, user_of, warn
from bertdemo.ui.train_behaviour import MakerView, maker, prefill, wire_maker

UNDO_DEPTH = 50  # changes a person can take back, newest first
HIDDEN_NOTE = "suggestion hidden for this item (an audit of suggestion bias)"
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


class Screen(NamedTuple):
    """What the Label view shows after an action. A NamedTuple because Gradio takes a handler's
    values in the order of its outputs (LabelView.outputs); the names are for readers and tests."""

    text: str  # the example on screen ("" when the queue is done)
    info: str  # Markdown: id, current label, the model's suggestion, a note on what just happened
    progress: str  # Markdown: what is left in the queue
    current: dict | None  # {"id", "version", "predicted"} of the item on screen (gr.State)
    seen: list[int]  # ids shown in this queue during this session (gr.State)
    undo_stack: list  # [(example id, version after my change)], newest last (gr.State)
    history: pd.DataFrame  # the item's history (HISTORY_COLUMNS)


def describe(item: Item | None, note: str = "") -> str:
    """The line under the example: its id, label, the model's suggestion, who changed it last."""
    if item is None:
        return note
    by = " by the quick model" if item.suggested_by == "quick model" else ""
    pred = (f"model suggests **{item.predicted}** ({item.confidence:.0%}{by}; **a** accepts)" if item.predicted
            else HIDDEN_NOTE if item.suggestion_hidden else "no model suggestion yet")
    if item.blind:  # an independent annotation: nobody's label, name or history on screen
        return (f"#{item.id} · independent annotation: other people's labels are hidden until the item is "
                f"done · {pred} · version {item.version}" + (f"\n\n{note}" if note else ""))
    who = f", last changed by {item.updated_by} at {item.updated_at:%Y-%m-%d %H:%M} UTC" if item.updated_by else ""
    return (f"#{item.id} · current label **{item.label or 'none'}** · {pred}{who} · version {item.version}"
            + (f"\n\n{note}" if note else ""))


def screen(labelling: Labelling, item: Item | None, seen: list[int], stack: list, note: str = "",
           queue: str = "") -> Screen:
    """The view of `item` (None: the queue `queue` is done)."""
    if item is None:
        done = (f"**{QUEUES.get(queue, 'This queue')}** is done: nothing left that you have not seen · "
                f"{len(seen):,} seen this session. {note}")
        return Screen("", describe(None), done.strip(), None, seen, stack, pd.DataFrame(columns=HISTORY_COLUMNS))
    progress = (f"**{QUEUES.get(item.queue, 'Item')}**: {item.remaining:,} left for you · "
                f"{item.team_remaining:,} for the team · {len(seen):,} seen this session"
                + (f"\n\n*{md_text(item.ranked_by)}*" if item.ranked_by else ""))
    current = {"id": item.id, "version": item.version, "predicted": item.predicted, "blind": item.blind}
    if item.suggestion_hidden:  # the accept key and the attributions check it
        current["hidden"] = True
    history = pd.DataFrame(columns=HISTORY_COLUMNS) if item.blind else labelling.history(item.id)
    return Screen(item.text, describe(item, note), progress, current, seen, stack, history)


class LabelHandlers:
    """The Label view's handlers. `queue`, `search`, `dataset`: the queue selector, its text search
    and the dataset filter; `seen`, `stack`, `current`: the gr.State values of Screen."""

    def __init__(self, labelling: Labelling, predict: PredictActions) -> None:
        self.labelling = labelling
        self.predict = predict

    @guarded
    def load_queue(self, queue: str, search: str, dataset: str, stack: list, request: gr.Request) -> Screen:
        item = self.labelling.next_item(queue, search, [], user_of(request), dataset)
        return screen(self.labelling, item, [], stack, queue=queue)

    @guarded
    def first_load(self, current: dict | None, queue: str, search: str, dataset: str, stack: list,
                   request: gr.Request) -> Screen | list:
        """The tab opened: load the queue, unless an item is on screen already."""
        if current is not None:
            return [gr.update()] * len(Screen._fields)
        # the tab opened before the page's load set the default queue: take the default here too
        return self.load_queue(self.labelling.default_queue() if queue == "unlabeled" else queue, search, dataset,
                               stack, request)

    @guarded
    def label_and_next(self, label: str, current: dict | None, queue: str, search: str, dataset: str,
                       seen: list, stack: list, request: gr.Request) -> Screen:
        """Save `label` on the item on screen and show the queue's next item."""
        return self._save_and_next(label, current, (queue, search, dataset), seen, stack, user_of(request))

    @guarded
    def accept_suggestion(self, current: dict | None, queue: str, search: str, dataset: str, seen: list,
                          stack: list, request: gr.Request) -> Screen | list:
        """Save the model's suggestion on the item on screen (recorded as accepted) and show the next;
        on an item whose suggestion the audit hid, a warning and nothing else."""
        if current and current.get("hidden"):
            gr.Warning("The suggestion is hidden for this item (an audit of suggestion bias): there is none to "
                       "accept; choose a label.")
            return [gr.update()] * len(Screen._fields)
        if current and not current.get("predicted"):
            raise BadInput("The model has no suggestion for this example yet: choose a label.")
        label = current["predicted"] if current else ""
        return self._save_and_next(label, current, (queue, search, dataset), seen, stack, user_of(request),
                                   accepted=True)

    def _save_and_next(self, label: str, current: dict | None, where: tuple[str, str, str], seen: list,
                       stack: list, user: str | None, accepted: bool = False) -> Screen:
        if not current:
            raise BadInput("No example on screen: load a queue first.")
        queue, search, dataset = where
        try:
            saved = self.labelling.save_label(current["id"], label, current["version"], user,
                                              accepted_suggestion=accepted)
        except Conflict as exc:
            gr.Warning(str(exc))
            item = self.labelling.item(current["id"], queue, viewer=self.labelling.user(user))
            return screen(self.labelling, item, seen, stack, "Someone else changed this example: decide again.")
        seen = [*seen, current["id"]]
        stack = [*stack, (saved.example_id, saved.version)][-UNDO_DEPTH:]
        note = f"Saved #{saved.example_id}: {saved.previous or 'none'} → {saved.label}."
        return screen(self.labelling, self.labelling.next_item(queue, search, seen, user, dataset), seen, stack,
                      note, queue)

    @guarded
    def skip_shown(self, current: dict | None, queue: str, search: str, dataset: str, seen: list, stack: list,
                   request: gr.Request) -> Screen:
        """Give the item on screen back to the team and show the next."""
        if current:
            self.labelling.skip(current["id"], user_of(request))  # back to the team at once
            seen = [*seen, current["id"]]
        item = self.labelling.next_item(queue, search, seen, user_of(request), dataset)
        return screen(self.labelling, item, seen, stack, "Skipped.", queue)

    @guarded
    def undo_last(self, queue: str, search: str, dataset: str, seen: list, stack: list,
                  request: gr.Request) -> Screen:
        """Take back this person's newest change of the session and show that item again."""
        if not stack:
            raise BadInput("Nothing to undo in this session.")
        example_id, version = stack[-1]
        saved = self.labelling.undo(example_id, user_of(request), version)
        seen = [i for i in seen if i != example_id]
        # the undone item is on screen again, so it counts as left for this person whatever the queue says
        left, team = self.labelling.progress(queue, search, dataset, seen)
        item = self.labelling.item(example_id, queue, max(left, 1), max(team, 1),
                                   viewer=self.labelling.user(user_of(request)))  # its audit draw holds again
        return screen(self.labelling, item, seen, stack[:-1], f"Undone #{example_id}: back to {saved.label or 'none'}.")

    @guarded
    def attributions(self, on: bool, current: dict | None) -> dict:
        """The token attributions of the item on screen, when asked for (an update of the panel)."""
        if not on or not current:
            return gr.update(visible=bool(on), value=None)
        if current.get("hidden"):  # the attributions point at the predicted class: they would show it
            gr.Warning("The token attributions are off for this item: its suggestion is hidden (an audit of "
                       "suggestion bias).")
            return gr.update(visible=True, value=None)
        r = self.predict.explain(self.labelling.item(current["id"]).cleaned, None, True)
        warn(r.warnings)
        return gr.update(visible=True, value=r.highlighted)


@dataclass(frozen=True)
class LabelView:
    """The Label view's components."""

    queue: gr.Dropdown
    search: gr.Textbox
    dataset: gr.Dropdown
    load: gr.Button
    progress: gr.Markdown
    text: gr.Textbox
    info: gr.Markdown
    label_buttons: list[gr.Button]
    accept: gr.Button
    skip: gr.Button
    undo: gr.Button
    show_attr: gr.Checkbox
    attr: gr.HighlightedText
    history: gr.Dataframe
    current: gr.State
    seen: gr.State
    undo_stack: gr.State
    behaviour: MakerView | None = None  # "make a behaviour test from this example" (ui/train_behaviour.py)

    @property
    def outputs(self) -> list:
        """The components of a Screen, in its order."""
        return [self.text, self.info, self.progress, self.current, self.seen, self.undo_stack, self.history]


def layout(labels: tuple[str, ...], datasets: tuple[str, ...]) -> LabelView:
    """The view's components, from the queue selector down to the item's history."""
    with gr.Row():
        # the page's first load sets the default (ui/demo.py): a callable value would be a public endpoint
        queue = gr.Dropdown([(v, k) for k, v in QUEUES.items()], value="unlabeled", label="Queue",
                            elem_id="annot-queue", scale=2)
        search = gr.Textbox(label="Text search (for the 'Text search' queue)", elem_id="annot-search", scale=2)
        dataset = gr.Dropdown(list(datasets), value="all", label="Dataset", elem_id="annot-dataset", scale=1)
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
        history = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, elem_id="annot-item-history")
    behaviour = maker(labels, "annot-behaviour", "example", "Make a behaviour test from this example")
    return LabelView(queue, search, dataset, load, progress, text, info, label_buttons, accept, skip, undo,
                     show_attr, attr, history, current=gr.State(None), seen=gr.State([]), undo_stack=gr.State([]),
                     behaviour=behaviour)


def shortcuts(labels: tuple[str, ...]) -> None:
    """The keys: 1..n label, a accept, s skip, u undo (a page-wide listener that clicks the buttons)."""
    keymap = {str(i): f"annot-label-{i}" for i in range(1, len(labels) + 1)}
    keymap |= {"a": "annot-accept", "s": "annot-skip", "u": "annot-undo"}
    gr.HTML("", js_on_load=SHORTCUTS_JS % json.dumps(keymap), elem_id="annot-keys")


def wire(view: LabelView, handlers: LabelHandlers, labels: tuple[str, ...], tab: gr.Tab | None) -> None:
    """Every event of the view (private: the public API is annotate_api's)."""
    private = {"api_visibility": "private"}
    where = [view.queue, view.search, view.dataset]
    shown = [view.current, *where, view.seen, view.undo_stack]
    load_ev = gr.on([view.load.click, view.search.submit], handlers.load_queue, [*where, view.undo_stack],
                    view.outputs, **private)
    view.queue.input(handlers.load_queue, [*where, view.undo_stack], view.outputs, **private)
    events = [load_ev]
    for lab, btn in zip(labels, view.label_buttons):
        # the button's label travels as an input: the handler stays one named method
        events.append(btn.click(handlers.label_and_next, [gr.State(lab), *shown], view.outputs, **private))
    events.append(view.accept.click(handlers.accept_suggestion, shown, view.outputs, **private))
    events.append(view.skip.click(handlers.skip_shown, shown, view.outputs, **private))
    events.append(view.undo.click(handlers.undo_last, [*where, view.seen, view.undo_stack], view.outputs, **private))
    for ev in events:
        ev.success(handlers.attributions, [view.show_attr, view.current], [view.attr], **private)
    view.show_attr.change(handlers.attributions, [view.show_attr, view.current], [view.attr], **private)
    if view.behaviour is not None:  # the form starts from the item on screen
        wire_maker(view.behaviour, BehaviourActions(handlers.labelling.services))
        view.text.change(prefill, [view.text], [view.behaviour.text], **private)
    if tab is not None:
        tab.select(handlers.first_load, [view.current, *where, view.undo_stack], view.outputs, **private)
