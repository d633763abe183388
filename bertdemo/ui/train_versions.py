"""The Train tab's version panels: the Versions table with activation (a newer version or a
rollback), and Before / after (two versions' metrics, the examples whose prediction changed, one
text's attributions under both). Handlers are module-level functions wired with `bind`; the timer
of ui/train.py keeps the table and the version lists current (VersionsShown)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from bertdemo.actions.train import VERSION_COLUMNS, TrainingActions
from bertdemo.errors import BadInput
from bertdemo.ui.binding import bind
from bertdemo.ui.common import guarded, user_of

METRIC_COLUMNS = ("metric", "A", "B")
CHANGED_COLUMNS = ("id", "text", "label", "A predicts", "B predicts")


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
        """The table and the three version lists, by ui/train.POLL_OUTPUTS name. Before / after
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


@guarded
def run_compare(actions: TrainingActions, a: str, b: str) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The note, the metrics side by side and the examples whose prediction changed from `a` to `b`."""
    c = actions.compare(a, b)
    note = (f"{len(c.changed)} of {c.n_compared} examples changed prediction between **{c.a}** and "
            f"**{c.b}**." + "".join(f"\n\n{n}" for n in c.notes))
    return note, table(c.metrics, METRIC_COLUMNS), table(c.changed, CHANGED_COLUMNS)


@guarded
def run_explain(actions: TrainingActions, text: str, a: str, b: str) -> tuple[list, list, str]:
    if not (text or "").strip():
        raise BadInput("Type a text to explain, or click a row of the changed examples.")
    return actions.attributions(text, a, b)


def pick_changed(rows: pd.DataFrame, evt: gr.SelectData) -> str | dict:
    """The text of the changed example whose row was clicked (the box is left as it is otherwise)."""
    try:
        return rows.iloc[evt.index[0], 1]
    except (AttributeError, IndexError, TypeError):
        return gr.update()


# ------------------------------------------------------------------------- panels
def versions_panel(actions: TrainingActions, names: list[str]) -> dict[str, gr.components.Component]:
    """The Versions table, the version to serve and Activate; returns the components the timer updates."""
    gr.Markdown("### Versions")
    versions = gr.Dataframe(table((), VERSION_COLUMNS), interactive=False, elem_id="versions-table", wrap=True,
                            column_widths=["8%", "8%", "8%", "8%", "12%", "8%", "22%", "18%", "8%"])
    with gr.Row():
        # allow_custom_value: API callers may name a version made after the page was built; the
        # action checks the name against the registry
        choice = gr.Dropdown(label="Version to serve", choices=names, elem_id="version-choice", scale=2,
                             allow_custom_value=True)
        activate = gr.Button("Activate", elem_id="version-activate", scale=1)
    message = gr.Markdown(elem_id="activate-message")
    serving_note = gr.Markdown(elem_id="serving-path")
    activate.click(bind(activate_version, actions), [choice], [message], api_name="activate_version")
    return {"table": versions, "choice": choice, "serving_note": serving_note}


def compare_panel(actions: TrainingActions, names: list[str]) -> dict[str, gr.components.Component]:
    """Before / after: two versions side by side; returns the version lists the timer updates."""
    gr.Markdown("### Before / after")
    with gr.Row():
        va = gr.Dropdown(label="Version A (before)", choices=names, elem_id="compare-a", allow_custom_value=True)
        vb = gr.Dropdown(label="Version B (after)", choices=names, elem_id="compare-b", allow_custom_value=True)
        compare = gr.Button("Compare", elem_id="compare-button")
    notes = gr.Markdown(elem_id="compare-notes")
    metrics = gr.Dataframe(table((), METRIC_COLUMNS), interactive=False, elem_id="compare-metrics")
    changed = gr.Dataframe(table((), CHANGED_COLUMNS), interactive=False, wrap=True, max_height=320,
                           elem_id="compare-changed", column_widths=["7%", "57%", "12%", "12%", "12%"])
    with gr.Row():
        text = gr.Textbox(label="A text to explain under both versions", scale=3, elem_id="compare-text")
        explain = gr.Button("Explain under A and B", scale=1, elem_id="compare-explain")
    prediction = gr.Markdown(elem_id="compare-pred")
    with gr.Row():
        ha = gr.HighlightedText(label="Attributions under A", combine_adjacent=False, elem_id="attr-a")
        hb = gr.HighlightedText(label="Attributions under B", combine_adjacent=False, elem_id="attr-b")
    compare.click(bind(run_compare, actions), [va, vb], [notes, metrics, changed], api_visibility="private")
    changed.select(pick_changed, [changed], [text], api_visibility="private")
    gr.on([explain.click, text.submit], bind(run_explain, actions), [text, va, vb], [ha, hb, prediction],
          api_visibility="private")
    return {"compare_a": va, "compare_b": vb}
