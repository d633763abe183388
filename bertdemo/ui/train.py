"""Train tab: layout and wiring only; the work is in bertdemo.actions.train.TrainingActions.

A gr.Timer polls the runner every second; plots are re-drawn only when something changed
(a new history row, a new state, a new version), so idle pages cost one cheap status read.
"""

from __future__ import annotations

import html
import json

import gradio as gr

from bertdemo.actions.train import MODES, STARTS, TrainingActions
from bertdemo.errors import BadInput
from bertdemo.training.config import TrainConfig
from bertdemo.ui import plots
from bertdemo.ui.common import api_number, api_slider, guarded

VERSION_HEADERS = ["version", "serving", "macro-F1", "accuracy", "created", "by", "settings", "macro-F1 per dataset",
                   "ECE"]


def progress_html(fraction: float, text: str, state: str, run_id: int | None = None) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    run = f"run #{run_id} · " if run_id else ""
    return (f'<div class="train-progress" data-state="{html.escape(state)}">'
            f'<progress id="train-progress-bar" max="100" value="{pct:.1f}" style="width:100%;height:1.2em"></progress>'
            f'<div id="train-progress-text">{run}{html.escape(state)} · {pct:.0f}% · {html.escape(text)}</div></div>')


def build(actions: TrainingActions) -> None:
    d, lim = TrainConfig(), TrainConfig.limit  # defaults and bounds: TrainConfig owns them
    names = actions.version_names()  # the timer keeps these lists current
    gr.Markdown("Fine-tune the classifier on the labels in the database (your corrections included), "
                "watch it learn, compare it with the serving version, and switch every tab to it or back. "
                "Only admins may start training or activate a version.")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Accordion("Options", open=True):
                epochs = api_number(d.epochs, label="Epochs", minimum=lim("epochs").low, maximum=lim("epochs").high,
                                    step=0.5, elem_id="train-epochs")
                lr = api_number(d.learning_rate, label="Learning rate (peak, AdamW)", minimum=1e-7,
                                maximum=lim("learning_rate").high, elem_id="train-lr")
                # the sliders cover the useful part of the range; the API takes all of it
                batch = api_slider(4, 128, value=d.batch_size, step=4, label="Batch size", elem_id="train-batch")
                max_len = api_slider(16, 256, value=d.max_length, step=8, label="Max length (WordPieces)",
                                     elem_id="train-maxlen")
                seed = api_number(d.seed, label="Seed", precision=0, minimum=lim("seed").low, maximum=lim("seed").high,
                                  elem_id="train-seed")
                mode = gr.Radio(list(MODES), value=MODES[0], label="What to train", elem_id="train-mode")
                start_from = gr.Radio(list(STARTS), value=STARTS[0], label="Start from", elem_id="train-from")
                max_steps = api_number(0, label="Max steps (0 = no limit; for quick trials)", precision=0,
                                       minimum=0, maximum=lim("max_steps").high, elem_id="train-maxsteps")
                serve = gr.Checkbox(False, label="Serve the new version as soon as it is trained",
                                    elem_id="train-serve")
            with gr.Row():
                start = gr.Button("Train", variant="primary", elem_id="train-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="train-cancel")
            start_msg = gr.Markdown(elem_id="train-message")
        with gr.Column(scale=2):
            progress = gr.HTML(progress_html(0, "no run yet", "idle"), elem_id="train-progress")
            curves = gr.Plot(label="Training loss and validation curves", elem_id="train-curves")
            with gr.Row():
                report = gr.Textbox(label="Classification report (validation split)", lines=9, max_lines=20,
                                    interactive=False, elem_id="train-report")
                confusion = gr.Plot(label="Confusion matrix (validation split)", elem_id="train-confusion")
                reliability = gr.Plot(label="Calibration: can the shown probabilities be trusted?",
                                      elem_id="train-reliability")

    gr.Markdown("### Versions")
    table = gr.Dataframe(headers=VERSION_HEADERS, interactive=False, elem_id="versions-table", wrap=True)
    with gr.Row():
        # allow_custom_value: API callers may name a version made after the page was built; the
        # action checks the name against the registry
        choice = gr.Dropdown(label="Version to serve", choices=names, elem_id="version-choice", scale=2,
                             allow_custom_value=True)
        activate = gr.Button("Activate", elem_id="version-activate", scale=1)
    activate_msg = gr.Markdown(elem_id="activate-message")
    serving_md = gr.Markdown(elem_id="serving-path")

    gr.Markdown("### Before / after")
    with gr.Row():
        va = gr.Dropdown(label="Version A (before)", choices=names, elem_id="compare-a", allow_custom_value=True)
        vb = gr.Dropdown(label="Version B (after)", choices=names, elem_id="compare-b", allow_custom_value=True)
        compare = gr.Button("Compare", elem_id="compare-button")
    cmp_notes = gr.Markdown(elem_id="compare-notes")
    metrics = gr.Dataframe(headers=["metric", "A", "B"], interactive=False, elem_id="compare-metrics")
    changed = gr.Dataframe(headers=["id", "text", "label", "A predicts", "B predicts"], interactive=False,
                           wrap=True, max_height=320, elem_id="compare-changed",
                           column_widths=["7%", "57%", "12%", "12%", "12%"])
    with gr.Row():
        ctext = gr.Textbox(label="A text to explain under both versions", scale=3, elem_id="compare-text")
        cexplain = gr.Button("Explain under A and B", scale=1, elem_id="compare-explain")
    cpred = gr.Markdown(elem_id="compare-pred")
    with gr.Row():
        ha = gr.HighlightedText(label="Attributions under A", combine_adjacent=False, elem_id="attr-a")
        hb = gr.HighlightedText(label="Attributions under B", combine_adjacent=False, elem_id="attr-b")

    seen = gr.State("")  # what this page last drew: redraw only on change
    timer = gr.Timer(1.0)

    # ---------------------------------------------------------------- callbacks
    @guarded
    def start_training(epochs: float, learning_rate: float, batch_size: float, max_length: float, seed: float,
                       mode: str, start_from: str, max_steps: float, serve_when_trained: bool,
                       request: gr.Request):
        """Start a fine-tuning run on the labelled examples (admins only); returns at once with the run
        number. Poll /training_status for progress. With serve_when_trained the new version serves
        every tab as soon as it is trained; else activate it with /activate_version."""
        return actions.start(epochs, learning_rate, batch_size, max_length, seed, mode, start_from, max_steps,
                             serve_when_trained, request.username if request else None)

    @guarded
    def cancel_training(request: gr.Request):
        return actions.cancel(request.username if request else None)

    @guarded
    def activate_version(version_name: str, request: gr.Request):
        """Serve `version_name` (e.g. "v2") in every tab: a newer version or a rollback (admins only)."""
        return actions.activate(version_name, request.username if request else None)

    def poll(last: str):
        v = actions.status()
        rows = actions.versions_table()
        serving = next((r[0] for r in rows if r[1]), None)
        # what was drawn: the run's part and the versions' part, compared apart (a serving note may hold any text)
        versions_key = json.dumps([len(rows), serving])
        key = json.dumps([v.run_id, v.state, len(v.history), v.serving]) + "\n" + versions_key
        text = (v.message or "no run yet") + (f" · why: {v.reason}" if v.reason else "")
        bar = progress_html(1.0 if v.state == "succeeded" else v.fraction, text, v.state, v.run_id)
        if key == last:
            return (bar, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update(),
                    gr.update(), gr.update(), last)
        new_versions = last.partition("\n")[2] != versions_key
        names = [r[0] for r in rows]
        curve = plots.training_curves(v.history) if v.history else None
        cm = plots.confusion_matrix(v.confusion, v.labels) if v.confusion else None
        rel = plots.reliability_diagram(v.reliability, v.ece) if v.reliability else None
        if new_versions:
            dd = gr.update(choices=names, value=serving)
            da = gr.update(choices=names, value=names[1] if len(names) > 1 else serving)
            db = gr.update(choices=names, value=names[0] if names else None)
            tbl = rows
        else:
            dd = da = db = tbl = gr.update()
        note = f"**Serving path:** {v.serving}" if v.serving else ""
        return bar, curve, v.report, cm, tbl, dd, da, db, rel, note, key

    @guarded
    def run_compare(a: str, b: str):
        c = actions.compare(a, b)
        note = (f"{len(c.changed)} of {c.n_compared} examples changed prediction between **{c.a}** and "
                f"**{c.b}**." + "".join(f"\n\n{n}" for n in c.notes))
        return note, c.metrics, c.changed

    @guarded
    def run_explain(t: str, a: str, b: str):
        if not (t or "").strip():
            raise BadInput("Type a text to explain, or click a row of the changed examples.")
        return actions.attributions(t, a, b)

    def pick_changed(evt: gr.SelectData, rows):
        try:
            return rows.iloc[evt.index[0], 1]
        except (AttributeError, IndexError, TypeError):
            return gr.update()

    def training_status() -> dict:
        """State, step, total_steps, message, version, report and the loss history of the current run."""
        return actions.status().as_api()

    start.click(start_training, [epochs, lr, batch, max_len, seed, mode, start_from, max_steps, serve],
                [start_msg],
                api_name="start_training")
    cancel.click(cancel_training, None, [start_msg], api_visibility="private")
    timer.tick(poll, [seen], [progress, curves, report, confusion, table, choice, va, vb, reliability, serving_md, seen],
               api_visibility="private", show_progress="hidden", trigger_mode="always_last")
    gr.api(training_status, api_name="training_status")
    activate.click(activate_version, [choice], [activate_msg], api_name="activate_version")
    compare.click(run_compare, [va, vb], [cmp_notes, metrics, changed], api_visibility="private")
    changed.select(pick_changed, [changed], [ctext], api_visibility="private")
    gr.on([cexplain.click, ctext.submit], run_explain, [ctext, va, vb], [ha, hb, cpred], api_visibility="private")
