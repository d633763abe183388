"""Matplotlib figures of the Team tab's "Is more labelling worth it?" panel: the versions' agreement
on the stopping pool, the learning curve with its fit and forecast, and the label distributions with
the suggestion shown and hidden. Figures are made with `matplotlib.figure.Figure`, as in ui/plots.py."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from bertdemo.actions.learning_curve import LearningCurveReport
from bertdemo.actions.stopping import StoppingReport
from bertdemo.actions.suggestion_audit import AuditReport
from bertdemo.ui.plots import layout_under_label

MAX_CURVES = 4  # "all" and the first three datasets: more lines are unreadable


def _empty(ax, text: str) -> None:  # noqa: ANN001 - a matplotlib Axes
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def stopping_plot(report: StoppingReport) -> Figure:
    """Cohen's kappa of each version with the one before it on the stopping pool, with the rule's
    threshold and the version it has been stable since."""
    fig = Figure(figsize=(7, 3.6), dpi=90)
    ax = fig.add_subplot()
    if not report.steps:
        _empty(ax, "No two versions with predictions on the stopping pool yet.")
    else:
        names = [s.version for s in report.steps]
        kappas = [s.kappa for s in report.steps]
        ax.plot(range(len(names)), kappas, "o-", label="kappa with the previous version")
        ax.axhline(report.threshold, color="tab:red", ls="--", lw=1, label=f"threshold {report.threshold:g}")
        if report.stable_since in names:
            ax.axvline(names.index(report.stable_since), color="tab:green", ls=":", lw=1.5,
                       label=f"stable since {report.stable_since}")
        ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 8 else 0)
        ax.set_ylim(min(0.0, min(kappas) - 0.05), 1.02)
        ax.set_ylabel("Cohen's kappa")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Agreement on the stopping pool ({report.pool_size:,} examples)", fontsize=10, loc="right")
    layout_under_label(fig)
    return fig


def learning_curve_plot(report: LearningCurveReport) -> Figure:
    """Macro-F1 per version against the labels it trained on, per dataset, with the fitted inverse
    power law and its forecasts (80% interval) where there were enough versions to fit."""
    fig = Figure(figsize=(7, 4.2), dpi=90)
    ax = fig.add_subplot()
    curves = [c for c in report.curves if c.points][:MAX_CURVES]
    if not curves:
        _empty(ax, "No versions with validation figures yet.")
    for i, c in enumerate(curves):
        colour = f"C{i}"
        fitted = [p for p in c.points if p.fitted]
        other = [p for p in c.points if not p.fitted]
        ax.plot([p.labels for p in fitted], [p.macro_f1 for p in fitted], "o", color=colour, label=c.dataset)
        if other:
            ax.plot([p.labels for p in other], [p.macro_f1 for p in other], "x", color=colour, alpha=0.6)
        if c.params is not None and fitted:
            last = max(f.labels for f in c.forecasts) if c.forecasts else max(p.labels for p in fitted)
            n = np.linspace(min(p.labels for p in fitted), last, 100)
            ax.plot(n, c.predict(n), "-", color=colour, lw=1)
            for f in c.forecasts:
                ax.errorbar([f.labels], [f.macro_f1], yerr=[[f.macro_f1 - f.low], [f.high - f.macro_f1]],
                            fmt="s", color=colour, capsize=3, alpha=0.8)
    if curves:
        ax.set_xlabel("labels trained on")
        ax.set_ylabel("validation macro-F1")
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right", fontsize=8, title="o fitted · x not fitted · ■ forecast", title_fontsize=7)
    ax.set_title("Learning curve", fontsize=10, loc="right")
    layout_under_label(fig)
    return fig


def audit_plot(report: AuditReport) -> Figure:
    """The label distribution of the labels given with the suggestion shown and hidden."""
    fig = Figure(figsize=(7, 3.6), dpi=90)
    ax = fig.add_subplot()
    labels = list(dict.fromkeys([*report.shown.distribution, *report.hidden.distribution]))
    if not labels or not (report.shown.labels or report.hidden.labels):
        _empty(ax, "No labels with the audit's condition recorded yet.")
    else:
        x = np.arange(len(labels))
        for off, st, colour in ((-0.2, report.shown, "tab:blue"), (0.2, report.hidden, "tab:orange")):
            ax.bar(x + off, [st.distribution.get(lab, 0.0) for lab in labels], width=0.4, color=colour,
                   label=f"suggestion {st.condition} ({st.labels:,} labels)")
        ax.set_xticks(x, labels)
        ax.set_ylabel("share of labels")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper right", fontsize=8)
    gap = f", gap {report.distribution_gap:.3f}" if report.distribution_gap is not None else ""
    ax.set_title(f"Suggestion-bias audit{gap}", fontsize=10, loc="right")
    layout_under_label(fig)
    return fig
