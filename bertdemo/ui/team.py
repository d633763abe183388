"""Team tab: for admins, annotations per item, retrain every N labels, the labelling guidelines, the
team's progress and agreement, and the adjudication queue; for everyone, whether more labelling is
worth it (ui/team_value.py). Layout, wiring and the handlers
(TeamHandlers; most are API endpoints too); the work is in bertdemo.actions (distribution,
autotrain, notes, agreement, adjudication), handed over as AnnotateAdapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.adjudication import Case
from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.autotrain import MAX_EVERY
from bertdemo.actions.distribution import MAX_OVERLAP
from bertdemo.errors import BadInput, Conflict
from bertdemo.ui import team_value
from bertdemo.ui.common import ADMIN_ONLY, api_number, guarded, user_of

COUNT_COLUMNS = ["annotator", "changes", "items", "accepted suggestions", "last hour", "last change (UTC)"]
PAIR_COLUMNS = ["annotator_a", "annotator_b", "items", "kappa"]
CASE_COLUMNS = ["annotator", "label", "when (UTC)", "how"]


class Progress(NamedTuple):
    """The team's progress (the outputs, in order; also /agreement's result)."""

    summary: str  # Markdown: kappa, items left, awaiting adjudication, the next automatic run
    counts: pd.DataFrame  # COUNT_COLUMNS
    pairs: pd.DataFrame  # PAIR_COLUMNS


class CaseShown(NamedTuple):
    """An adjudication case on screen (the outputs, in order)."""

    case: dict | None  # {"id", "version"} of the item (gr.State)
    info: str
    text: str
    labels: pd.DataFrame  # CASE_COLUMNS


def show_case(case: Case | None, note: str = "") -> CaseShown:
    if case is None:
        return CaseShown(None, "No disagreements to adjudicate. " + note, "", pd.DataFrame(columns=CASE_COLUMNS))
    info = (f"#{case.item.id} · current label **{case.item.label or 'none'}** · model suggests "
            f"**{case.item.predicted or '-'}** · {case.waiting:,} waiting · {note}")
    return CaseShown({"id": case.item.id, "version": case.item.version}, info, case.item.text, case.labels)


class TeamHandlers:
    def __init__(self, adapters: AnnotateAdapters) -> None:
        self.work = adapters.work
        self.autotrain = adapters.autotrain
        self.notes = adapters.notes
        self.progress = adapters.progress
        self.adjudication = adapters.adjudication

    @guarded
    def set_overlap(self, annotations_per_item: float, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """How many different people label each item before it leaves the queues (1 to 20; admins only)."""
        k = self.work.set_overlap(annotations_per_item, user_of(request))
        return f"Each item now goes to {k} {'person' if k == 1 else 'different people'}."

    @guarded
    def set_retrain_every(self, labels_between_runs: float, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """Start a training run in the background once people relabelled N distinct examples (0 = off,
        else 10 to 1,000,000; admins only). Counting starts now. The new version serves only if it
        passes the activation gate against the serving one."""
        n = self.autotrain.set_every(labels_between_runs, user_of(request))
        return (f"A training run starts each time {n:,} distinct examples were relabelled." if n
                else "Automatic retraining is off.")

    @guarded
    def set_guidelines(self, guidelines: str, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """Replace the labelling guidelines (Markdown, at most 20,000 characters; admins only)."""
        self.notes.set_guidelines(guidelines, user_of(request))
        return "Guidelines saved: everyone sees them beside the example from their next item."

    @guarded
    def agreement(self, request: gr.Request) -> Progress:
        """Cohen's kappa over items labelled by two or more people, changes per annotator, and kappa
        per pair of annotators (admins only)."""
        a = self.progress.agreement(user_of(request))
        k = (f"Cohen's kappa over {a.shared_items:,} items labelled by two or more people: **{a.kappa:.3f}**"
             if a.kappa is not None else
             f"Not enough items labelled by two people for kappa ({a.shared_items} so far).")
        k += f" · **{a.items_left:,}** items left in *Unlabeled* for the team" if a.items_left is not None else ""
        waiting = len(self.adjudication.waiting(user_of(request)))
        done, n = self.autotrain.pending()
        k += f" · **{waiting:,}** awaiting adjudication"
        k += f" · next automatic run after {n - done:,} more labels" if n else ""
        return Progress(k, a.counts, a.pairs)

    @guarded
    def next_case_shown(self, request: gr.Request) -> CaseShown:
        return show_case(self.adjudication.next_case(user_of(request)))

    @guarded
    def decide(self, label: str, case: dict | None, request: gr.Request) -> CaseShown:
        """Set the final label of the case on screen and show the next one."""
        if not case:
            raise BadInput("Load a disagreement first.")
        try:
            saved = self.adjudication.decide(case["id"], label, case["version"], user_of(request))
        except Conflict as exc:
            gr.Warning(str(exc))
            return show_case(self.adjudication.case(case["id"], user_of(request)), "Changed meanwhile: decide again.")
        return show_case(self.adjudication.next_case(user_of(request)),
                         f"Saved #{saved.example_id}: final {saved.label}.")

    @guarded
    def adjudicate(self, example_id: int, label: str, version: int, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Set the final label of an item its annotators disagree on (admins only); `version` as
        /next_disagreement returned it. Recorded with source "adjudication"."""
        return self.adjudication.decide(example_id, label, version, user_of(request)).as_api()

    @guarded
    def next_disagreement(self, exclude: list[int] | None = None, request: gr.Request = None) -> dict | None:  # type: ignore[assignment]
        """The longest-waiting item whose annotators disagree, with every annotator's label; None when
        none is left (admins only)."""
        case = self.adjudication.next_case(user_of(request), exclude)
        return case.as_api() if case else None


@dataclass(frozen=True)
class TeamView:
    overlap: gr.Number
    overlap_btn: gr.Button
    every: gr.Number
    every_btn: gr.Button
    message: gr.Markdown
    guide: gr.Textbox
    guide_btn: gr.Button
    agree_btn: gr.Button
    progress: list  # kappa, counts, pairs: in Progress' order
    adj_load: gr.Button
    adj_out: list  # case, info, text, labels: in CaseShown's order
    adj_buttons: list[gr.Button]


def settings_layout(handlers: TeamHandlers) -> list:
    """The settings row, its message and the guidelines' editor."""
    with gr.Row():
        overlap = api_number(handlers.work.overlap(), label="Annotations per item", minimum=1,
                             maximum=MAX_OVERLAP, step=1, elem_id="annot-overlap")
        overlap_btn = gr.Button("Set", elem_id="annot-overlap-set")
        every = api_number(handlers.autotrain.every(), label="Retrain every N labels (0 = off)", minimum=0,
                           maximum=MAX_EVERY, step=1, elem_id="team-retrain-every")
        every_btn = gr.Button("Set", elem_id="team-retrain-set")
    message = gr.Markdown("With 2 or more annotations per item, each item goes to that many different "
                          "people before it leaves the queues: what makes the agreement below meaningful. "
                          "Retrain every N: once N distinct examples were relabelled, a training run starts in "
                          "the background (the Train tab says why); it serves only if it passes the "
                          "activation gate.", elem_id="annot-overlap-msg")
    with gr.Accordion("Labelling guidelines (shown beside every example; Markdown)", open=False):
        guide = gr.Textbox(handlers.notes.guidelines(), lines=8, label="Guidelines", elem_id="team-guidelines")
        guide_btn = gr.Button("Save the guidelines", elem_id="team-guidelines-save")
    return [overlap, overlap_btn, every, every_btn, message, guide, guide_btn]


def review_layout(labels: tuple[str, ...]) -> list:
    """The progress and agreement tables, and the adjudication queue."""
    agree_btn = gr.Button("Refresh progress", elem_id="annot-agree-refresh")
    kappa = gr.Markdown(elem_id="annot-kappa")
    counts = gr.Dataframe(label="Per annotator", interactive=False, elem_id="annot-counts", headers=COUNT_COLUMNS)
    pairs = gr.Dataframe(label="Cohen's kappa per pair", interactive=False, elem_id="annot-pairs",
                         headers=PAIR_COLUMNS)
    gr.Markdown("### Adjudication\nItems whose annotators disagree: see every label and set the final one "
                "(training uses it; items still waiting are left out of training).")
    adj_load = gr.Button("Next disagreement", elem_id="adj-next")
    adj_info = gr.Markdown(elem_id="adj-info")
    adj_text = gr.Textbox(label="Example", interactive=False, lines=2, elem_id="adj-text")
    adj_labels = gr.Dataframe(label="The annotators' labels", interactive=False, elem_id="adj-labels",
                              headers=CASE_COLUMNS)
    with gr.Row():
        adj_buttons = [gr.Button(f"final: {lab}", variant="primary", elem_id=f"adj-final-{i}")
                       for i, lab in enumerate(labels, start=1)]
    return [agree_btn, [kappa, counts, pairs], adj_load, [gr.State(None), adj_info, adj_text, adj_labels],
            adj_buttons]


def wire(view: TeamView, handlers: TeamHandlers, labels: tuple[str, ...]) -> None:
    private = {"api_visibility": "private"}
    view.overlap_btn.click(handlers.set_overlap, [view.overlap], [view.message], api_name="set_annotations_per_item")
    view.every_btn.click(handlers.set_retrain_every, [view.every], [view.message], api_name="set_retrain_every")
    view.guide_btn.click(handlers.set_guidelines, [view.guide], [view.message], api_name="set_guidelines")
    view.agree_btn.click(handlers.agreement, None, view.progress, api_name="agreement").then(
        handlers.notes.guidelines, None, [view.guide], **private)  # as another admin may have left them
    view.adj_load.click(handlers.next_case_shown, None, view.adj_out, **private)
    for lab, btn in zip(labels, view.adj_buttons):
        # the button's label travels as an input: the handler stays one named method
        btn.click(handlers.decide, [gr.State(lab), view.adj_out[0]], view.adj_out, **private)
    gr.api(handlers.adjudicate, api_name="adjudicate")
    gr.api(handlers.next_disagreement, api_name="next_disagreement")


def build(adapters: AnnotateAdapters) -> None:
    """The Team tab, wired."""
    handlers = TeamHandlers(adapters)
    with gr.Tab("Team"):
        # the settings, progress and adjudication are an admin's only (each endpoint checks the role
        # anyway); the labelling-value panel below is everyone's, each person seeing their own rows
        gr.Markdown("The team's settings, progress and adjudication are for admins; *Is more labelling "
                    "worth it?* below is for everyone.", elem_id="team-note")
        with gr.Column(elem_classes=ADMIN_ONLY, elem_id="team-admin"):
            settings = settings_layout(handlers)
            review = review_layout(adapters.labels)
        team_value.build(adapters.value)
    wire(TeamView(*settings, *review), handlers, adapters.labels)
