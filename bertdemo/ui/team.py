"""Team tab (admins): annotations per item, retrain every N labels, the labelling guidelines, the
team's progress and agreement, and the adjudication queue. Layout and wiring only; the work is in
bertdemo.actions (distribution, autotrain, notes, agreement, adjudication)."""

from __future__ import annotations

import gradio as gr

from bertdemo.actions.adjudication import Adjudication
from bertdemo.actions.annotate import AnnotateActions
from bertdemo.actions.autotrain import MAX_EVERY
from bertdemo.actions.distribution import MAX_OVERLAP
from bertdemo.errors import BadInput, Conflict
from bertdemo.ui.common import api_number, guarded


def _user(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


def build(actions: AnnotateActions) -> None:
    adjudication = Adjudication(actions)
    with gr.Tab("Team (admins)"):
        with gr.Row():
            overlap = api_number(actions.work.overlap(), label="Annotations per item", minimum=1,
                                 maximum=MAX_OVERLAP, step=1, elem_id="annot-overlap")
            overlap_btn = gr.Button("Set", elem_id="annot-overlap-set")
            every = api_number(actions.autotrain.every(), label="Retrain every N labels (0 = off)", minimum=0,
                               maximum=MAX_EVERY, step=1, elem_id="team-retrain-every")
            every_btn = gr.Button("Set", elem_id="team-retrain-set")
        overlap_msg = gr.Markdown("With 2 or more annotations per item, each item goes to that many different "
                                  "people before it leaves the queues: what makes the agreement below meaningful. "
                                  "Retrain every N: after N new labels a training run starts in the background "
                                  "(the Train tab says why).", elem_id="annot-overlap-msg")
        with gr.Accordion("Labelling guidelines (shown beside every example; Markdown)", open=False):
            guide = gr.Textbox(actions.notes.guidelines(), lines=8, label="Guidelines", elem_id="team-guidelines")
            guide_btn = gr.Button("Save the guidelines", elem_id="team-guidelines-save")
        agree_btn = gr.Button("Refresh progress", elem_id="annot-agree-refresh")
        kappa = gr.Markdown(elem_id="annot-kappa")
        counts = gr.Dataframe(label="Per annotator", interactive=False, elem_id="annot-counts",
                              headers=["annotator", "changes", "items", "accepted suggestions", "last hour",
                                       "last change (UTC)"])
        pairs = gr.Dataframe(label="Cohen's kappa per pair", interactive=False, elem_id="annot-pairs",
                             headers=["annotator_a", "annotator_b", "items", "kappa"])
        gr.Markdown("### Adjudication\nItems whose annotators disagree: see every label and set the final one "
                    "(training uses it; items still waiting are left out of training).")
        adj_load = gr.Button("Next disagreement", elem_id="adj-next")
        adj_info = gr.Markdown(elem_id="adj-info")
        adj_text = gr.Textbox(label="Example", interactive=False, lines=2, elem_id="adj-text")
        adj_labels = gr.Dataframe(label="The annotators' labels", interactive=False, elem_id="adj-labels",
                                  headers=["annotator", "label", "when (UTC)", "how"])
        adj_case = gr.State(None)
        with gr.Row():
            adj_buttons = [gr.Button(f"final: {lab}", variant="primary", elem_id=f"adj-final-{i}")
                           for i, lab in enumerate(actions.labels, start=1)]

    @guarded
    def set_overlap(annotations_per_item: float, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """How many different people label each item before it leaves the queues (1 to 20; admins only)."""
        k = actions.set_annotations_per_item(annotations_per_item, _user(request))
        return f"Each item now goes to {k} {'person' if k == 1 else 'different people'}."

    @guarded
    def set_retrain_every(labels_between_runs: float, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """Start a training run in the background after every N new labels (0 = off, else 10 to
        1,000,000; admins only). Counting starts now."""
        n = actions.autotrain.set_every(labels_between_runs, _user(request))
        return f"A training run starts after every {n:,} new labels." if n else "Automatic retraining is off."

    @guarded
    def set_guidelines(guidelines: str, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """Replace the labelling guidelines (Markdown, at most 20,000 characters; admins only)."""
        actions.notes.set_guidelines(guidelines, _user(request))
        return "Guidelines saved: everyone sees them beside the example from their next item."

    @guarded
    def agreement(request: gr.Request):
        """Cohen's kappa over items labelled by two or more people, changes per annotator, and kappa
        per pair of annotators (admins only)."""
        a = actions.agreement(_user(request))
        k = (f"Cohen's kappa over {a.shared_items:,} items labelled by two or more people: **{a.kappa:.3f}**"
             if a.kappa is not None else
             f"Not enough items labelled by two people for kappa ({a.shared_items} so far).")
        k += f" · **{a.items_left:,}** items left in *Unlabeled* for the team" if a.items_left is not None else ""
        waiting = len(adjudication.waiting(_user(request)))
        done, n = actions.autotrain.pending()
        k += f" · **{waiting:,}** awaiting adjudication"
        k += f" · next automatic run after {n - done:,} more labels" if n else ""
        return k, a.counts, a.pairs

    def show_case(case, note: str = ""):
        if case is None:
            return None, "No disagreements to adjudicate. " + note, "", None
        info = (f"#{case.item.id} · current label **{case.item.label or 'none'}** · model suggests "
                f"**{case.item.predicted or '-'}** · {case.waiting:,} waiting · {note}")
        return {"id": case.item.id, "version": case.item.version}, info, case.item.text, case.labels

    @guarded
    def next_case_shown(request: gr.Request):
        return show_case(adjudication.next_case(_user(request)))

    @guarded
    def decide(label: str, cur: dict | None, request: gr.Request):
        if not cur:
            raise BadInput("Load a disagreement first.")
        try:
            saved = adjudication.decide(cur["id"], label, cur["version"], _user(request))
        except Conflict as exc:
            gr.Warning(str(exc))
            return show_case(adjudication.case(cur["id"], _user(request)), "Changed meanwhile: decide again.")
        return show_case(adjudication.next_case(_user(request)), f"Saved #{saved.example_id}: final {saved.label}.")

    @guarded
    def adjudicate(example_id: int, label: str, version: int, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Set the final label of an item its annotators disagree on (admins only); `version` as
        /next_disagreement returned it. Recorded with source "adjudication"."""
        return adjudication.decide(example_id, label, version, _user(request)).as_api()

    @guarded
    def next_disagreement(exclude: list[int] | None = None, request: gr.Request = None) -> dict | None:  # type: ignore[assignment]
        """The longest-waiting item whose annotators disagree, with every annotator's label; None when
        none is left (admins only)."""
        case = adjudication.next_case(_user(request), exclude)
        return case.as_api() if case else None

    overlap_btn.click(set_overlap, [overlap], [overlap_msg], api_name="set_annotations_per_item")
    every_btn.click(set_retrain_every, [every], [overlap_msg], api_name="set_retrain_every")
    guide_btn.click(set_guidelines, [guide], [overlap_msg], api_name="set_guidelines")
    agree_btn.click(agreement, None, [kappa, counts, pairs], api_name="agreement").then(
        actions.notes.guidelines, None, [guide], api_visibility="private")  # as another admin may have left them
    adj_out = [adj_case, adj_info, adj_text, adj_labels]
    adj_load.click(next_case_shown, None, adj_out, api_visibility="private")
    for lab, btn in zip(actions.labels, adj_buttons):
        btn.click(_bind(decide, lab), [adj_case], adj_out, api_visibility="private")
    gr.api(adjudicate, api_name="adjudicate")
    gr.api(next_disagreement, api_name="next_disagreement")


def _bind(fn, label: str):
    def bound(cur, request: gr.Request):
        return fn(label, cur, request)
    return bound
