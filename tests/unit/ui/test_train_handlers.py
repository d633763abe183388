"""The Train tab's handlers without a browser: the timer's poll is a named structure (TrainPoll)
that finds the serving version by its is_active field and redraws only what changed, and
start_training turns the nine form values into one checked TrainConfig (or refuses a value,
naming its bounds) before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import gradio as gr
import pandas as pd
import pytest

from bertdemo.actions.train import MODES, STARTS, VERSION_COLUMNS, TrainingView
from bertdemo.training.config import TrainConfig
from bertdemo.training.registry import VersionInfo
from bertdemo.ui import train
from bertdemo.ui.train import POLL_OUTPUTS, TrainPoll, poll, start_training
from bertdemo.ui.train_versions import VersionsShown, table

FORM = dict(epochs=2, learning_rate=1e-4, batch_size=16, max_length=32, seed=3, mode=MODES[1], start_from=STARTS[1],
            max_steps=5, serve_when_trained=True)


def _version(vid: int, active: bool = False) -> VersionInfo:
    return VersionInfo(vid, f"v{vid}", f"models/v{vid}", datetime(2026, 1, vid), "t", active,
                       {"macro_f1": 0.5 + vid / 100, "accuracy": 0.6}, "report", {"epochs": 1})


@dataclass
class FakeActions:
    """What the handlers use of TrainingActions: a status, the versions and start."""

    view: TrainingView = field(default_factory=lambda: TrainingView("idle", False, 0, 0, 0.0, ""))
    infos: list[VersionInfo] = field(default_factory=list)
    started: list[tuple] = field(default_factory=list)

    def status(self) -> TrainingView:
        return self.view

    def versions(self) -> list[VersionInfo]:
        return self.infos

    def start(self, config: TrainConfig, username: str | None, serve: bool = False) -> str:
        self.started.append((config, username, serve))
        return "Training run #1 started"


def test_poll_finds_the_serving_version_by_its_flag_not_its_position():
    # newest first, and the serving one is neither first nor second
    actions = FakeActions(infos=[_version(3), _version(2), _version(1, active=True)])
    p = poll(actions, "")
    assert isinstance(p, TrainPoll) and p.redraw
    assert p.versions == VersionsShown(p.versions.rows, ("v3", "v2", "v1"), "v1")
    assert [r[0] for r in p.versions.rows] == ["v3", "v2", "v1"] and p.versions.rows[2][1] == "yes"
    out = dict(zip(POLL_OUTPUTS, p.outputs()))
    assert out["choice"]["value"] == "v1" and out["choice"]["choices"] == ["v3", "v2", "v1"]
    assert out["compare_b"]["value"] == "v3" and out["compare_a"]["value"] == "v2"  # newest against the one before
    assert list(out["table"].columns) == list(VERSION_COLUMNS) and len(out["table"]) == 3
    assert out["seen"] == p.key and "no run yet" in out["progress"]


def test_poll_redraws_only_what_changed():
    actions = FakeActions(infos=[_version(1, active=True)])
    first = poll(actions, "")
    again = poll(actions, first.key)
    assert not again.redraw and again.versions is None and again.key == first.key
    out = dict(zip(POLL_OUTPUTS, again.outputs()))
    assert out["progress"] == again.progress  # the bar always
    assert all(out[n] == gr.update() for n in POLL_OUTPUTS if n not in ("progress", "seen"))
    # a run moves on: its plots are redrawn, the versions (unchanged) are not
    actions.view = TrainingView("running", True, 1, 4, 0.25, "Step 1/4", history=({"step": 1, "train_loss": 0.9},),
                                run_id=7)
    moved = poll(actions, first.key)
    assert moved.redraw and moved.versions is None and moved.curves is not None and moved.confusion is None
    assert "run #7 · running · 25%" in moved.progress
    out = dict(zip(POLL_OUTPUTS, moved.outputs()))
    assert out["table"] == gr.update() and out["curves"] is moved.curves
    # a new serving version: the versions' part is redrawn
    actions.infos = [_version(2, active=True), _version(1)]
    assert poll(actions, moved.key).versions.serving == "v2"


def test_poll_before_any_version_shows_the_table_headers():
    p = poll(FakeActions(), "")
    assert p.versions == VersionsShown((), (), None)
    empty = dict(zip(POLL_OUTPUTS, p.outputs()))["table"]
    assert isinstance(empty, pd.DataFrame) and list(empty.columns) == list(VERSION_COLUMNS) and empty.empty
    assert list(table((), ("a", "b")).columns) == ["a", "b"]


def test_start_training_builds_one_config_from_the_form():
    actions = FakeActions()
    assert start_training(actions, None, **FORM) == "Training run #1 started"
    [(config, user, serve)] = actions.started
    assert config == TrainConfig(epochs=2.0, learning_rate=1e-4, batch_size=16, max_length=32, seed=3,
                                 freeze_encoder=True, init_from="active", max_steps=5)
    assert user is None and serve is True
    start_training(actions, None, **(FORM | {"max_steps": 0, "mode": MODES[0], "serve_when_trained": False}))
    config, _user, serve = actions.started[1]
    assert config.max_steps is None and not config.freeze_encoder and serve is False


@pytest.mark.parametrize("name, value, message", [
    ("batch_size", 0, "Batch size (batch_size) must be a whole number from 1 to 1024, got 0."),
    ("epochs", 1e30, "Epochs (epochs) must be a number from 0.01 to 100, got 1e+30."),
    ("learning_rate", 0, "Learning rate (learning_rate) must be a number above 0 and up to 0.5"),
    ("max_steps", -1, "Max steps (0 = no limit) must be a whole number from 0 to 10000000"),
    ("mode", "lora", "What to train must be one of"),
])
def test_start_training_refuses_a_bad_value_naming_its_bounds(name, value, message):
    actions = FakeActions()
    with pytest.raises(gr.Error) as refused:
        start_training(actions, None, **(FORM | {name: value}))
    assert message in refused.value.message
    assert actions.started == []  # nothing started


def test_the_form_is_the_apis_parameters_in_order():
    assert [f for f in train.TrainForm.__dataclass_fields__] == list(FORM)


def test_the_train_plots_leave_the_top_band_to_the_plot_label():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from bertdemo.ui import plots

    history = [{"step": i, "epoch": i / 4, "train_loss": 1 - i / 10, **({"val_loss": 0.9, "val_macro_f1": 0.5}
                                                                        if i % 2 == 0 else {})} for i in range(1, 5)]
    bins = [{"low": 0.5, "high": 0.6, "n": 3, "confidence": 0.55, "accuracy": 0.5}]
    for fig in (plots.training_curves(history), plots.confusion_matrix([[1, 2], [3, 4]], ["a", "b"]),
                plots.reliability_diagram(bins, 0.05)):
        renderer = FigureCanvasAgg(fig).get_renderer()
        free = plots.LABEL_BAND_IN * fig.dpi * 0.9  # gr.Plot's label sits over the top of the image
        top = max(ax.get_tightbbox(renderer).y1 for ax in fig.axes)  # titles and tick labels included
        assert top <= fig.bbox.height - free, (fig.axes[0].get_title(), top, fig.bbox.height)


def test_the_report_header_names_its_first_column():
    sk = "              precision    recall\n\n    negative     0.8123    0.9012\n"
    shown = train.report_text(sk)
    assert shown.startswith("class         precision") and len(shown) == len(sk)
    assert train.report_text("") == "" and train.report_text("already text") == "already text"
