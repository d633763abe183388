"""Train tab: the training options form, the run's progress and plots, and the timer that keeps
them (and the versions panels of ui/train_versions.py) current.

Handlers are module-level functions (values in, values or a small frozen dataclass out, testable
without a browser) that the panels wire with `bind`; the work is in
bertdemo.actions.train.TrainingActions. A gr.Timer polls every second; plots are re-drawn only when
something changed (a new history row, a new state, a new version), so an idle page costs one
cheap status read.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, fields

import gradio as gr
from matplotlib.figure import Figure

from bertdemo.actions.behaviour import BehaviourActions
from bertdemo.actions.train import MODES, STARTS, TrainingActions, TrainingView, version_row
from bertdemo.training.config import TrainConfig
from bertdemo.ui import plots, train_behaviour, train_versions
from bertdemo.ui.binding import bind
from bertdemo.ui.common import ADMIN_ONLY, api_number, api_slider, guarded, user_of
from bertdemo.ui.train_versions import VersionsShown


# ------------------------------------------------------------------------- handlers
@dataclass(frozen=True)
class TrainForm:
    """The training form's values, named as the /start_training API names its parameters."""

    epochs: float
    learning_rate: float
    batch_size: float
    max_length: float
    seed: float
    mode: str
    start_from: str
    max_steps: float | None
    serve_when_trained: bool

    def config(self) -> TrainConfig:
        """The one TrainConfig of these values, checked once (BadInput names the option and its range)."""
        return TrainingActions.config_from_form(self.epochs, self.learning_rate, self.batch_size, self.max_length,
                                                self.seed, self.mode, self.start_from, self.max_steps)


@guarded
def start_training(actions: TrainingActions, request: gr.Request, **form: object) -> str:
    """Start a fine-tuning run on the labelled examples (admins only); returns at once with the run
    number. Poll /training_status for progress. With serve_when_trained the new version serves
    every tab as soon as it is trained; else activate it with /activate_version."""
    # `form`: the API's parameters, by name (options_panel wires them as inputs_kwargs), so this
    # endpoint keeps its nine named inputs while the handler takes one TrainForm
    values = TrainForm(**form)
    return actions.start(values.config(), user_of(request), values.serve_when_trained)


@guarded
def cancel_training(actions: TrainingActions, request: gr.Request) -> str:
    return actions.cancel(user_of(request))


def training_status(actions: TrainingActions) -> dict:
    """State, step, total_steps, message, version, report and the loss history of the current run."""
    return actions.status().as_api()


def progress_html(fraction: float, text: str, state: str, run_id: int | None = None) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    run = f"run #{run_id} · " if run_id else ""
    return (f'<div class="train-progress" data-state="{html.escape(state)}">'
            f'<progress id="train-progress-bar" max="100" value="{pct:.1f}" style="width:100%;height:1.2em"></progress>'
            f'<div id="train-progress-text">{run}{html.escape(state)} · {pct:.0f}% · {html.escape(text)}</div></div>')


# what the timer redraws, in the order of its outputs (TrainPoll.outputs and build's wiring agree on it)
POLL_OUTPUTS = ("progress", "curves", "report", "confusion", "reliability", "serving_note", "table", "choice",
                "compare_a", "compare_b", "seen")


@dataclass(frozen=True)
class TrainPoll:
    """One tick of the timer. The bar is always redrawn; with `redraw` False nothing else changed
    since `key` was drawn. `versions` None: the versions' part is unchanged."""

    progress: str  # the progress bar's HTML
    key: str  # what the page shows now, kept in its gr.State: the run's part, a newline, the versions' part
    redraw: bool = False
    curves: Figure | None = None  # None with redraw: an empty plot (no history yet)
    report: str = ""
    confusion: Figure | None = None
    reliability: Figure | None = None
    serving_note: str = ""
    versions: VersionsShown | None = None

    def outputs(self) -> list:
        """The values of POLL_OUTPUTS; gr.update() leaves a component as it is."""
        same = gr.update()
        run = {"curves": self.curves, "report": self.report, "confusion": self.confusion,
               "reliability": self.reliability, "serving_note": self.serving_note} if self.redraw else {}
        shown = self.versions.updates() if self.versions is not None else {}
        values = {"progress": self.progress, "seen": self.key} | run | shown
        return [values.get(name, same) for name in POLL_OUTPUTS]


def poll(actions: TrainingActions, last: str) -> TrainPoll:
    """The run's status and the versions now, against what the page drew last (`last`, a TrainPoll.key)."""
    v = actions.status()
    infos = actions.versions()
    serving = next((i.name for i in infos if i.is_active), None)
    # the run's part and the versions' part, compared apart (a serving note may hold any text)
    versions_key = json.dumps([len(infos), serving])
    key = json.dumps([v.run_id, v.state, len(v.history), v.serving]) + "\n" + versions_key
    bar = progress_html(*progress_line(v))
    if key == last:
        return TrainPoll(bar, last)
    shown = None
    if last.partition("\n")[2] != versions_key:
        shown = VersionsShown(tuple(version_row(i) for i in infos), tuple(i.name for i in infos), serving)
    return TrainPoll(bar, key, redraw=True, versions=shown, **_run_plots(v))


def progress_line(v: TrainingView) -> tuple[float, str, str, int | None]:
    """The bar's (fraction, text, state, run id): a running run's current phase with its own count
    ("re-scoring 12,800 / 27,166 examples (47%)"), not its training steps' 100%; with no run
    running, the serving version's background work after an activation while it runs; else the
    last run's outcome."""
    why = f" · why: {v.reason}" if v.reason else ""
    if v.running:
        phase = f"{v.phase['text']} · " if v.phase else ""
        return v.fraction, phase + (v.message or "") + why, v.state, v.run_id
    if v.activity:
        a = v.activity
        return (a["fraction"], f"{a['version']}: {a['text']} (it serves on PyTorch meanwhile)", "activating", None)
    return 1.0 if v.state == "succeeded" else v.fraction, (v.message or "no run yet") + why, v.state, v.run_id


def report_text(report: str) -> str:
    """sklearn's classification report as the report box shows it: its header line names the first
    column ("class"), because gr.Code strips the leading blanks that would otherwise align it."""
    width = len("class")
    return "class" + report[width:] if report[:width].isspace() and "\n" not in report[:width] else report


def _run_plots(v: TrainingView) -> dict:
    """TrainPoll's fields of the run `v`: its curves, report, confusion matrix and calibration."""
    return {"curves": plots.training_curves(v.history) if v.history else None, "report": report_text(v.report),
            "confusion": plots.confusion_matrix(v.confusion, v.labels) if v.confusion else None,
            "reliability": plots.reliability_diagram(v.reliability, v.ece) if v.reliability else None,
            "serving_note": f"**Serving path:** {v.serving}" if v.serving else ""}


# ------------------------------------------------------------------------- panels
def options_panel(actions: TrainingActions) -> None:
    """The training options (defaults and bounds from TrainConfig), Train and Cancel."""
    d, lim = TrainConfig(), TrainConfig.limit
    with gr.Accordion("Options", open=True):
        form = {
            "epochs": api_number(d.epochs, label="Epochs", minimum=lim("epochs").low, maximum=lim("epochs").high,
                                 step=0.5, elem_id="train-epochs"),
            "learning_rate": api_number(d.learning_rate, label="Learning rate (peak, AdamW)", minimum=1e-7,
                                        maximum=lim("learning_rate").high, elem_id="train-lr"),
            # the sliders cover the useful part of the range; the API takes all of it
            "batch_size": api_slider(4, 128, value=d.batch_size, step=4, label="Batch size", elem_id="train-batch"),
            "max_length": api_slider(16, 256, value=d.max_length, step=8, label="Max length (WordPieces)",
                                     elem_id="train-maxlen"),
            "seed": api_number(d.seed, label="Seed", precision=0, minimum=lim("seed").low, maximum=lim("seed").high,
                               elem_id="train-seed"),
            "mode": gr.Radio(list(MODES), value=MODES[0], label="What to train", elem_id="train-mode"),
            "start_from": gr.Radio(list(STARTS), value=STARTS[0], label="Start from", elem_id="train-from",
                                   info="A quick retrain trains the active version on the labels changed since it "
                                        "was trained plus a replay sample of the rest (about a minute), validated "
                                        "on its validation split; its report says what it trained on."),
            "max_steps": api_number(0, label="Max steps (0 = no limit; for quick trials)", precision=0, minimum=0,
                                    maximum=lim("max_steps").high, elem_id="train-maxsteps"),
            "serve_when_trained": gr.Checkbox(False, label="Serve the new version as soon as it is trained",
                                              elem_id="train-serve"),
        }
    assert list(form) == [f.name for f in fields(TrainForm)]  # the API's parameters, in its order
    with gr.Row():
        start = gr.Button("Train", variant="primary", elem_id="train-start", elem_classes=ADMIN_ONLY)
        cancel = gr.Button("Cancel", variant="stop", elem_id="train-cancel", elem_classes=ADMIN_ONLY)
    message = gr.Markdown(elem_id="train-message")
    start.click(bind(start_training, actions), inputs_kwargs=form, outputs=[message], api_name="start_training")
    cancel.click(bind(cancel_training, actions), None, [message], api_visibility="private")


def progress_panel() -> dict[str, gr.components.Component]:
    """The run's progress bar, curves, confusion matrix, calibration and report, by POLL_OUTPUTS name."""
    shown = {"progress": gr.HTML(progress_html(0, "no run yet", "idle"), elem_id="train-progress"),
             "curves": gr.Plot(label="Training loss and validation curves", elem_id="train-curves")}
    with gr.Row():
        shown["confusion"] = gr.Plot(label="Confusion matrix (validation split)", elem_id="train-confusion")
        shown["reliability"] = gr.Plot(label="Calibration: can the shown probabilities be trusted?",
                                       elem_id="train-reliability")
    # monospace and the column's full width: the report's columns line up as sklearn printed them
    shown["report"] = gr.Code(label="Classification report (validation split)", language=None, lines=12,
                              max_lines=24, interactive=False, show_line_numbers=False,
                              elem_id="train-report")
    return shown


def build(actions: TrainingActions) -> None:
    names = actions.version_names()  # the timer keeps these lists current
    gr.Markdown("Fine-tune the classifier on the labels in the database (your corrections included), "
                "watch it learn, compare it with the serving version, and switch every tab to it or back. "
                "Only admins may start training or activate a version.")
    with gr.Row():
        with gr.Column(scale=1):
            options_panel(actions)
        with gr.Column(scale=2):
            shown = progress_panel()
    shown |= train_versions.versions_panel(actions, names)
    shown |= train_versions.compare_panel(actions, names, shown["table"])
    train_behaviour.build(BehaviourActions(actions.services), names, shown.get("flip_text"))
    shown["seen"] = gr.State("")  # TrainPoll.key of what this page drew last: redraw only on change
    gr.Timer(1.0).tick(bind(_poll_outputs, actions), [shown["seen"]], [shown[n] for n in POLL_OUTPUTS],
                       api_visibility="private", show_progress="hidden", trigger_mode="always_last")
    gr.api(bind(training_status, actions), api_name="training_status")


def _poll_outputs(actions: TrainingActions, last: str) -> list:
    return poll(actions, last).outputs()
