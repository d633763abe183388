"""The Team tab's "Is more labelling worth it?" panel (issue 25): stopping signals, the learning
curve, annotation time and the suggestion-bias audit, for everyone (an annotator sees their own
rows, an admin everyone's), with the audit's share an admin's setting. Layout, wiring and the
handlers (ValueHandlers, each an API endpoint too); the figures are computed in
bertdemo.actions.labelling_value and the four modules it combines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure

from bertdemo.actions.labelling_value import FORMATS, LabellingValue, ValueReport
from bertdemo.ui import value_plots
from bertdemo.ui.common import ADMIN_ONLY, api_number, guarded, user_of

KAPPA_COLUMNS = ["version", "previous", "kappa", "pool examples"]
PACE_COLUMNS = ["annotator", "labels", "median s", "p90 s", "labels/hour", "last hour", "last day"]
AUDIT_COLUMNS = ["annotator", "shown", "hidden", "accepted", "acceptance rate", "overturned", "overturn rate",
                 "accepts < 1 s", "longest fast run", "flagged"]


class Panel(NamedTuple):
    """The panel's outputs, in order."""
    summary: str  # Markdown: the four verdicts in plain sentences
    kappa_plot: Figure
    curve_plot: Figure
    audit_plot: Figure
    kappas: pd.DataFrame  # KAPPA_COLUMNS
    pace: pd.DataFrame  # PACE_COLUMNS
    people: pd.DataFrame  # AUDIT_COLUMNS


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(float(x), digits)


def summary(r: ValueReport) -> str:
    """The four verdicts, each one paragraph."""
    lines = [f"**Stopping signals.** {r.stopping.message}"]
    for c in r.curve.curves[:1]:  # "all": the per-dataset curves are in the plot and the export
        lines.append(f"**Learning curve ({c.dataset}).** {c.message}")
    lines.append(f"**Annotation time.** {r.time.message}")
    a = r.audit
    lines.append(f"**Suggestion-bias audit** (suggestion hidden for {a.share:.0%} of handed-out items). {a.message} "
                 f"Agreement with the model: shown {_pct(a.shown.agree_model)}, hidden {_pct(a.hidden.agree_model)}; "
                 f"with final labels: shown {_pct(a.shown.agree_final)} ({a.shown.n_final}), "
                 f"hidden {_pct(a.hidden.agree_final)} ({a.hidden.n_final}).")
    who = "everyone's rows (admin)" if r.viewer.admin else f"your own rows ({r.viewer.name})"
    lines.append(f"<small>As of {r.at:%Y-%m-%d %H:%M} UTC · the tables show {who}.</small>")
    return "\n\n".join(lines)


def panel_of(r: ValueReport) -> Panel:
    kappas = pd.DataFrame([[s.version, s.previous, round(s.kappa, 4), s.n] for s in r.stopping.steps],
                          columns=KAPPA_COLUMNS)
    pace = pd.DataFrame([[p.user, p.labels, _num(p.median_s), _num(p.p90_s), _num(p.per_hour), p.last_hour,
                          p.last_day] for p in r.time.people], columns=PACE_COLUMNS)
    people = pd.DataFrame([[p.user, p.shown, p.hidden, p.accepted, _pct(p.acceptance_rate), p.overturned,
                            _pct(p.overturn_rate), p.fast_accepts, p.longest_fast_run, "yes" if p.flagged else ""]
                           for p in r.audit.people], columns=AUDIT_COLUMNS)
    return Panel(summary(r), value_plots.stopping_plot(r.stopping), value_plots.learning_curve_plot(r.curve),
                 value_plots.audit_plot(r.audit), kappas, pace, people)


class ValueHandlers:
    def __init__(self, value: LabellingValue) -> None:
        self.value = value

    @guarded
    def panel(self, request: gr.Request) -> Panel:
        return panel_of(self.value.report(user_of(request)))

    @guarded
    def report(self, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """All four figures as one object: stopping signals, learning curve, annotation time and the
        suggestion-bias audit (annotators get their own rows, admins everyone's)."""
        return self.value.report(user_of(request)).as_api()

    @guarded
    def stopping(self, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Cohen's kappa of each version with the previous one on the stopping pool, and whether the
        stabilizing-predictions rule says the model has stopped changing."""
        return self.value.stopping_report(user_of(request)).as_api()

    @guarded
    def learning_curve(self, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Macro-F1 per version and dataset against the labels it trained on, the fitted inverse power
        law and its forecast for +100 and +500 labels with an 80% interval."""
        return self.value.curve_report(user_of(request)).as_api()

    @guarded
    def annotation_time(self, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Seconds per label per person (median, p90), labels per hour, the team's pace and the hours
        left for the Unlabeled queue (annotators get their own row, admins everyone's)."""
        return self.value.time_report(user_of(request)).as_api()

    @guarded
    def suggestion_audit(self, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Labels given with the model's suggestion shown vs hidden (distribution, agreement with the
        final labels and with the model, time), and per person acceptance, overturned accepts and
        runs of very fast accepts (annotators get their own row, admins everyone's)."""
        return self.value.audit_report(user_of(request)).as_api()

    @guarded
    def set_audit_share(self, share: float, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """The share of handed-out items whose suggestion is hidden (0 to 0.5; 0 turns the audit
        off; admins only)."""
        got = self.value.audit.set_share(share, user_of(request))
        return (f"The suggestion is now hidden for {got:.0%} of the items handed out." if got
                else "The suggestion-bias audit is off: every item shows the suggestion.")

    @guarded
    def export(self, file_format: str, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """The figures as a file: csv (one long table with a section column) or json."""
        return str(self.value.export(file_format, user_of(request)))


@dataclass(frozen=True)
class ValueView:
    refresh: gr.Button
    outputs: list  # in Panel's order
    share: gr.Number
    share_btn: gr.Button
    share_msg: gr.Markdown
    fmt: gr.Dropdown
    export_btn: gr.Button
    export_file: gr.File


def layout(value: LabellingValue) -> ValueView:
    gr.Markdown("### Is more labelling worth it?\nWhether the model still changes from version to version "
                "(stopping signals), what more labels are forecast to bring (learning curve), how long the "
                "rest takes (annotation time), and whether the model's suggestions bend the labels "
                "(an audit that hides the suggestion for a share of items). docs/annotate.md explains "
                "each figure.", elem_id="value-intro")
    refresh = gr.Button("Refresh the figures", elem_id="value-refresh")
    text = gr.Markdown(elem_id="value-summary")
    with gr.Row():
        kappa_plot = gr.Plot(label="Stopping signals", elem_id="value-kappa-plot")
        curve_plot = gr.Plot(label="Learning curve", elem_id="value-curve-plot")
    audit_plot = gr.Plot(label="Suggestion-bias audit", elem_id="value-audit-plot")
    kappas = gr.Dataframe(label="Kappa per version", interactive=False, headers=KAPPA_COLUMNS, elem_id="value-kappas")
    pace = gr.Dataframe(label="Annotation time", interactive=False, headers=PACE_COLUMNS, elem_id="value-pace")
    people = gr.Dataframe(label="Suggestions per annotator", interactive=False, headers=AUDIT_COLUMNS,
                          elem_id="value-people")
    with gr.Row(elem_classes=ADMIN_ONLY):
        share = api_number(value.audit.share(), label="Hide the suggestion for this share of items (0 = off)",
                           minimum=0, maximum=0.5, step=0.05, elem_id="value-share")
        share_btn = gr.Button("Set", elem_id="value-share-set")
    share_msg = gr.Markdown(elem_id="value-share-msg")
    with gr.Row():
        fmt = gr.Dropdown(list(FORMATS), value="csv", label="Export as", elem_id="value-format")
        export_btn = gr.Button("Export the figures", elem_id="value-export")
    export_file = gr.File(label="Figures", elem_id="value-export-file")
    return ValueView(refresh, [text, kappa_plot, curve_plot, audit_plot, kappas, pace, people], share, share_btn,
                     share_msg, fmt, export_btn, export_file)


def wire(view: ValueView, handlers: ValueHandlers) -> None:
    view.refresh.click(handlers.panel, None, view.outputs, api_visibility="private")
    view.share_btn.click(handlers.set_audit_share, [view.share], [view.share_msg], api_name="set_audit_share")
    view.export_btn.click(handlers.export, [view.fmt], [view.export_file], api_name="export_labelling_value")
    gr.api(handlers.report, api_name="labelling_value")
    gr.api(handlers.stopping, api_name="stopping_signals")
    gr.api(handlers.learning_curve, api_name="learning_curve")
    gr.api(handlers.annotation_time, api_name="annotation_time")
    gr.api(handlers.suggestion_audit, api_name="suggestion_audit")


def build(value: LabellingValue) -> None:
    """The panel, wired (inside the Team tab)."""
    wire(layout(value), ValueHandlers(value))
