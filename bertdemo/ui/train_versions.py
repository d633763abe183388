"""The Train tab's version panels: the Versions table with activation (a newer version or a
rollback), and the version review (candidate B against baseline A: slices with intervals, the
gate's verdict, the flips with a filter, a flip's attributions under both, Activate B with a
reason). Handlers are module-level functions wired with `bind`; the timer
of ui/train.py keeps the table and the version lists current (VersionsShown)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from bertdemo.actions.review import FLIP_COLUMNS, SLICE_COLUMNS, VersionReview
from bertdemo.actions.train import VERSION_COLUMNS, TrainingActions
from bertdemo.errors import BadInput
from bertdemo.ui.binding import bind
from bertdemo.ui.common import ADMIN_ONLY, guarded, user_of


def table(rows: object, columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows as a frame with named columns: an empty table still shows its headers (not 1 2 3)."""
    return pd.DataFrame(list(rows or ()), columns=list(columns))


@dataclass(frozen=True)
class VersionsShown:
    """The versions as the tab lists them: the table's rows (VERSION_COLUMNS), the names newest first,
    and the serving one (the version whose is_active is set; None before the first activation)."""

    rows: tuple[list, ...]
    names: tuple[str, ...]
    serving: str | None

    def updates(self) -> dict:
        """The table and the three version lists, by ui/train.POLL_OUTPUTS name. The review
        proposes the newest version (B) against the one before it (A)."""
        names = list(self.names)
        return {"table": table(self.rows, VERSION_COLUMNS),
                "choice": gr.update(choices=names, value=self.serving),
                "compare_a": gr.update(choices=names, value=names[1] if len(names) > 1 else self.serving),
                "compare_b": gr.update(choices=names, value=names[0] if names else None)}


# ------------------------------------------------------------------------- handlers
@guarded
def activate_version(actions: TrainingActions, version_name: str, request: gr.Request) -> str:
    """Serve `version_name` (e.g. "v2") in every tab: a newer version or a rollback (admins only)."""
    return actions.activate(version_name, user_of(request))


def versions_now(actions: TrainingActions) -> pd.DataFrame:
    """The Versions table as it is now: redrawn right after an activation, a rollback or a
    rejection, so the serving mark moves at once (the timer would take up to a second more)."""
    return table(actions.versions_table(), VERSION_COLUMNS)


@dataclass(frozen=True)
class ReviewShown:
    """What the review panel shows of one review (REVIEW_OUTPUTS order): where the figures come
    from, the gate's verdict, the slices, the flips' totals and the listed flips; `reviewed` (kept
    in a gr.State) names the pair, so the filter, a flip's attributions and Activate B use it."""

    status: str
    verdict: str
    slices: pd.DataFrame
    counts: str
    flips: pd.DataFrame
    reviewed: dict

    @classmethod
    def of(cls, r: VersionReview) -> ReviewShown:
        notes = "".join(f" {n}" for n in r.notes)
        return cls(f"Reviewed {r.source()}{notes}", f"**{r.verdict()}**", table(r.slice_rows(), SLICE_COLUMNS),
                   f"**Flips:** {r.counts()}", flip_table(r), {"a": r.a, "b": r.b, "passed": r.gate.passed})

    def outputs(self) -> tuple:
        return self.status, self.verdict, self.slices, self.counts, self.flips, self.reviewed


def flip_table(r: VersionReview) -> pd.DataFrame:
    """The listed flips: B's validation split first, then the rest of the corpus (the "set" column)."""
    return table([f.row() for f in r.listed()], FLIP_COLUMNS)


def _kind(choice: str | None) -> str | None:
    return None if choice in (None, "", "all") else choice


@guarded
def run_review(actions: TrainingActions, a: str, b: str, kind: str, request: gr.Request,
               progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's way to ask for a tracker
    """Review candidate `b` against baseline `a` (admins only): ReviewShown's outputs."""
    r = actions.review(a, b, _kind(kind), username=user_of(request), progress=lambda f, m: progress(f, desc=m))
    return ReviewShown.of(r).outputs()


@guarded
def filter_flips(actions: TrainingActions, reviewed: dict | None, kind: str, request: gr.Request) -> tuple:
    """The flips' totals and the rows of one kind ("all", "fixed", "broken") of the reviewed pair;
    the totals stay those of every flip."""
    if not reviewed:
        return gr.update(), gr.update()
    r = actions.review(reviewed["a"], reviewed["b"], _kind(kind), username=user_of(request))
    return f"**Flips:** {r.counts()}", flip_table(r)


@guarded
def review_version(actions: TrainingActions, baseline: str, candidate: str, kind: str | None = None,
                   request: gr.Request = None) -> dict:  # type: ignore[assignment]
    """The review of version `candidate` (B, e.g. "v2") against `baseline` (A, e.g. "v1") on the
    candidate's validation split (admins only): slices (macro-F1 of A and B with 95% bootstrap
    intervals, B - A, ECE), the activation gate's verdict, the flips' totals per kind and
    transition, and up to 200 flips (`kind`: all, fixed, broken or changed)."""
    return actions.review(baseline, candidate, _kind(kind), username=user_of(request)).as_api()


@guarded
def run_explain(actions: TrainingActions, text: str, a: str, b: str, reviewed: dict | None) -> tuple:
    """Integrated Gradients of `text` under both versions (the reviewed pair, else the lists'),
    each panel labelled with its version and the class it explains."""
    if not (text or "").strip():
        raise BadInput("Type a text to explain, or click a row of the flips.")
    if reviewed:
        a, b = reviewed["a"], reviewed["b"]
    pair = actions.attributions(text, a, b)
    return (gr.update(value=pair.a.highlighted, label=pair.a.label()),
            gr.update(value=pair.b.highlighted, label=pair.b.label()), pair.line())


def pick_flip(rows: pd.DataFrame, evt: gr.SelectData) -> str | dict:
    """The text of the flip whose row was clicked (the box is left as it is otherwise)."""
    try:
        return rows.iloc[evt.index[0], FLIP_COLUMNS.index("text")]
    except (AttributeError, IndexError, TypeError):
        return gr.update()


@guarded
def activate_reviewed(actions: TrainingActions, reviewed: dict | None, reason: str, request: gr.Request) -> str:
    """Serve the reviewed candidate B (admins only), the reason recorded; after a failed gate (the
    manual override) a reason is required."""
    if not reviewed:
        raise BadInput("Review a version first: Activate B serves the candidate of the review.")
    if not reviewed.get("passed") and not (reason or "").strip():
        raise BadInput(f"The gate failed for {reviewed['b']}: say why it should serve anyway (the reason is recorded).")
    return actions.activate(reviewed["b"], user_of(request), reason or "")


@guarded
def reject_reviewed(actions: TrainingActions, reviewed: dict | None, reason: str, request: gr.Request) -> str:
    """Record that the reviewed candidate B must not serve (admins only), with the reason typed
    beside it (required): who, when and why show in the Versions table."""
    if not reviewed:
        raise BadInput("Review a version first: Reject B rejects the candidate of the review.")
    return actions.reject(reviewed["b"], user_of(request), reason or "")


# ------------------------------------------------------------------------- panels
def versions_panel(actions: TrainingActions, names: list[str]) -> dict[str, gr.components.Component]:
    """The Versions table, the version to serve and Activate; returns the components the timer updates."""
    gr.Markdown("### Versions")
    versions = gr.Dataframe(table((), VERSION_COLUMNS), interactive=False, elem_id="versions-table", wrap=True,
                            column_widths=["8%", "8%", "7%", "7%", "9%", "10%", "13%", "12%", "9%", "6%", "11%"])
    with gr.Row():
        # allow_custom_value: API callers may name a version made after the page was built; the
        # action checks the name against the registry
        choice = gr.Dropdown(label="Version to serve", choices=names, elem_id="version-choice", scale=2,
                             allow_custom_value=True)
        activate = gr.Button("Activate", elem_id="version-activate", elem_classes=ADMIN_ONLY, scale=1)
    message = gr.Markdown(elem_id="activate-message")
    serving_note = gr.Markdown(elem_id="serving-path")
    activate.click(bind(activate_version, actions), [choice], [message], api_name="activate_version").then(
        bind(versions_now, actions), None, [versions], api_visibility="private", show_progress="hidden")
    return {"table": versions, "choice": choice, "serving_note": serving_note}


def compare_panel(actions: TrainingActions, names: list[str], versions: gr.Dataframe | None = None
                  ) -> dict[str, gr.components.Component]:
    """The version review: candidate B against baseline A; returns the version lists the timer
    updates and `flip_text`, the box a clicked flip fills. `versions`: the Versions table, redrawn
    after Activate B or Reject B."""
    gr.Markdown("### Review a version\nCandidate **B** against baseline **A** (usually the serving one) on B's "
                "validation split: macro-F1 per slice with 95% bootstrap intervals, calibration, the examples "
                "whose prediction flipped (on the validation split, then on the whole corpus from both versions' "
                "stored scores), and the activation gate's verdict. Then activate B, or reject it, with a reason.")
    with gr.Row():
        va = gr.Dropdown(label="Version A (baseline)", choices=names, elem_id="compare-a", allow_custom_value=True)
        vb = gr.Dropdown(label="Version B (candidate)", choices=names, elem_id="compare-b", allow_custom_value=True)
        go = gr.Button("Review B against A", elem_id="review-button", elem_classes=ADMIN_ONLY)
    shown = [gr.Markdown(elem_id="review-status"), gr.Markdown(elem_id="review-gate"),
             gr.Dataframe(table((), SLICE_COLUMNS), interactive=False, wrap=True, max_height=420,
                          elem_id="review-slices"),
             gr.Markdown(elem_id="review-counts")]
    kind = gr.Radio(["all", "fixed", "broken"], value="all", label="Flips to list", elem_id="review-filter")
    rows = gr.Dataframe(table((), FLIP_COLUMNS), interactive=False, wrap=True, max_height=320, elem_id="review-flips",
                        column_widths=["6%", "36%", "8%", "9%", "7%", "9%", "7%", "8%", "10%"])
    reviewed = gr.State(None)
    with gr.Row():
        text = gr.Textbox(label="A text to explain under both versions (or click a flip)", scale=3,
                          elem_id="compare-text")
        explain = gr.Button("Explain under A and B", scale=1, elem_id="compare-explain")
    prediction = gr.Markdown(elem_id="compare-pred")
    with gr.Row():
        ha = gr.HighlightedText(label="A: attributions", combine_adjacent=False, elem_id="attr-a")
        hb = gr.HighlightedText(label="B: attributions", combine_adjacent=False, elem_id="attr-b")
    with gr.Row():
        reason = gr.Textbox(label="Why B should serve, or why it is rejected (recorded with your name; required to "
                                  "reject, and to activate when the gate failed)", scale=3, elem_id="review-reason")
        activate = gr.Button("Activate B", scale=1, elem_id="review-activate", elem_classes=ADMIN_ONLY)
        reject = gr.Button("Reject B", scale=1, variant="stop", elem_id="review-reject", elem_classes=ADMIN_ONLY)
    activated = gr.Markdown(elem_id="review-activate-message")
    go.click(bind(run_review, actions), [va, vb, kind], [*shown, rows, reviewed], api_visibility="private")
    kind.change(bind(filter_flips, actions), [reviewed, kind], [shown[3], rows], api_visibility="private")
    explain_inputs, explain_outputs = [text, va, vb, reviewed], [ha, hb, prediction]
    rows.select(pick_flip, [rows], [text], api_visibility="private").then(
        bind(run_explain, actions), explain_inputs, explain_outputs, api_visibility="private")
    gr.on([explain.click, text.submit], bind(run_explain, actions), explain_inputs, explain_outputs,
          api_visibility="private")
    for button, handler in ((activate, activate_reviewed), (reject, reject_reviewed)):
        done = button.click(bind(handler, actions), [reviewed, reason], [activated], api_visibility="private")
        if versions is not None:
            done.then(bind(versions_now, actions), None, [versions], api_visibility="private", show_progress="hidden")
    gr.api(bind(review_version, actions), api_name="review_version")
    return {"compare_a": va, "compare_b": vb, "flip_text": text}  # flip_text: ui/train_behaviour.py takes it
