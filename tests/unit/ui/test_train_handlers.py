"""The Train tab's handlers without a browser: the timer's poll is a named structure (TrainPoll)
that finds the serving version by its is_active field and redraws only what changed, and
start_training turns the nine form values into one checked TrainConfig (or refuses a value,
naming its bounds) before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import gradio as gr
import pandas as pd
import pytest

from bertdemo.actions.train import MODES, STARTS, VERSION_COLUMNS, TrainingView
from bertdemo.training.config import TrainConfig
from bertdemo.training.registry import VersionInfo
from bertdemo.ui import train
from bertdemo.ui.train import POLL_OUTPUTS, TrainPoll, poll, progress_html, start_training
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


# ------------------------------------------------------------------ the version review
def _review_set(n: int = 40):
    import numpy as np

    from bertdemo.training.comparison import ReviewSet

    y = np.arange(n) % 3
    return ReviewSet(texts=[f"text {i}" for i in range(n)], raw_texts=[f"Text {i} @united" for i in range(n)],
                     y=y, ids=list(range(100, 100 + n)), datasets=["airline"] * n, sources=["crowd"] * n,
                     on="the validation split of v2")


def _scored(n: int = 40):
    """A right on all but the first 6; B fixes 4 of those, breaks examples 10-12, changes 4-5's wrong label."""
    import numpy as np

    from bertdemo.actions.review import Scored

    rs = _review_set(n)
    pa = np.full((n, 3), 0.1)
    pa[np.arange(n), rs.y] = 0.8
    pa[:6] = 0.1
    pa[np.arange(6), (rs.y[:6] + 1) % 3] = 0.8  # A wrong on 0-5
    pb = pa.copy()
    pb[:4] = 0.1
    pb[np.arange(4), rs.y[:4]] = 0.7  # fixed
    pb[4:6] = 0.1
    pb[np.arange(4, 6), (rs.y[4:6] + 2) % 3] = 0.6  # changed: wrong under both, differently
    pb[10:13] = 0.1
    pb[np.arange(10, 13), (rs.y[10:13] + 1) % 3] = 0.9  # broken
    return Scored(rs, pa, pb, (n, n))


@dataclass
class FakeReviewActions:
    """What the review handlers use of TrainingActions: review (on fixed probabilities, 2 rows at
    most, as a capped list would), attributions and activate."""

    calls: list = field(default_factory=list)

    def review(self, a, b, kind=None, limit=200, *, username=None, progress=None):
        from bertdemo.actions.review import build

        self.calls.append((a, b, kind, username))
        if progress:
            progress(0.5, "scoring")
        return build(_scored(), (a, b), ("negative", "neutral", "positive"), None, kind=kind, limit=2, n_boot=200)

    def attributions(self, text, a, b):
        from bertdemo.actions.train import AttributionPair, AttributionSide

        return AttributionPair(AttributionSide(a, "A", "negative", 0.81, [("late", 0.9)]),
                               AttributionSide(b, "B", "neutral", 0.55, [("late", 0.2)]))

    def activate(self, name, username, reason=""):
        self.calls.append(("activate", name, reason))
        return f"Now serving **{name}**"


def test_the_review_shows_total_flip_counts_though_the_list_is_capped():
    from bertdemo.actions.review import FLIP_COLUMNS, SLICE_COLUMNS
    from bertdemo.ui.train_versions import run_review

    actions = FakeReviewActions()
    status, verdict, slices, counts, flips, reviewed = run_review(actions, "v1", "v2", "all", None)
    assert counts.startswith("**Flips:** On v2's validation split: **9 of 40** examples changed prediction "
                             "(fixed 4, broken 3, changed 2).")
    assert "Listed: 2 of any kind" in counts and len(flips) == 2  # the rows are capped, the counts are not
    # no stored scores here: the whole corpus is not counted, and the panel says so rather than guessing
    assert "Whole corpus: not counted" in counts and set(flips["set"]) == {"validation"}
    assert list(flips.columns) == list(FLIP_COLUMNS) and list(slices.columns) == list(SLICE_COLUMNS)
    assert "negative -> neutral" in counts and "on the validation split of v2 (40 examples" in status
    assert slices.iloc[0]["slice"] == "all" and "(" in slices.iloc[0]["A macro-F1 (95% CI)"]
    assert reviewed == {"a": "v1", "b": "v2", "passed": "Gate passed" in verdict}
    assert actions.calls == [("v1", "v2", None, None)]


def test_the_filter_keeps_the_totals_and_lists_one_kind():
    from bertdemo.ui.train_versions import filter_flips, run_review

    actions = FakeReviewActions()
    everything = run_review(actions, "v1", "v2", "all", None)[3]
    counts, flips = filter_flips(actions, {"a": "v1", "b": "v2", "passed": True}, "broken", None)
    assert counts.replace("Listed: 2 broken", "") == everything.replace("Listed: 2 of any kind", "")
    assert set(flips["kind"]) == {"broken"} and len(flips) == 2
    assert actions.calls[-1] == ("v1", "v2", "broken", None)
    assert filter_flips(actions, None, "fixed", None) == (gr.update(), gr.update())  # nothing reviewed yet


def test_a_worse_slice_is_marked_and_the_gate_names_it():
    from bertdemo.actions.review import WORSE, build

    s = _scored(300)
    worse = build(type(s)(s.rs, s.probs_a, _shifted(s.probs_a), s.stored), ("v1", "v2"),
                  ("negative", "neutral", "positive"), None, n_boot=200)
    marked = {r[0] for r in worse.slice_rows() if r[-1] == WORSE}
    assert "airline" in marked and "all" in marked
    assert not worse.gate.passed and worse.verdict().startswith("Gate failed: airline macro-F1")
    api = worse.as_api()
    assert api["gate"]["passed"] is False and api["flips"]["total"] == worse.flips.total > 0
    assert api["slices"][0]["slice"] == "all" and len(api["rows"]) == min(200, worse.flips.total)


def _shifted(p):
    import numpy as np

    return np.roll(p, 1, axis=1)  # every prediction one class off: always wrong where A was right


def test_a_flips_attributions_are_labelled_with_version_and_class():
    from bertdemo.ui.train_versions import pick_flip, run_explain

    actions = FakeReviewActions()
    ha, hb, line = run_explain(actions, "my flight was late", "v7", "v8", {"a": "v1", "b": "v2", "passed": True})
    assert ha["label"] == "v1 (A): towards negative (81%)" and hb["label"] == "v2 (B): towards neutral (55%)"
    assert ha["value"] == [("late", 0.9)] and "**v2** (B): neutral (55%)" in line
    rows = table([[1, "the text", "negative", "neutral", 0.8, "negative", 0.7, "fixed"]],
                 ("id", "text", "gold", "A predicts", "A prob.", "B predicts", "B prob.", "kind"))
    assert pick_flip(rows, gr.SelectData(None, {"index": [0, 4], "value": 0.8})) == "the text"
    with pytest.raises(gr.Error, match="Type a text to explain"):
        run_explain(actions, " ", "v1", "v2", None)


def test_activate_b_needs_a_reason_only_after_a_failed_gate():
    from bertdemo.ui.train_versions import activate_reviewed

    actions = FakeReviewActions()
    with pytest.raises(gr.Error, match="Review a version first"):
        activate_reviewed(actions, None, "why", None)
    with pytest.raises(gr.Error, match="The gate failed for v2: say why"):
        activate_reviewed(actions, {"a": "v1", "b": "v2", "passed": False}, "  ", None)
    assert activate_reviewed(actions, {"a": "v1", "b": "v2", "passed": False}, "fixes the lounge tweets", None) \
        == "Now serving **v2**"
    assert activate_reviewed(actions, {"a": "v1", "b": "v3", "passed": True}, "", None) == "Now serving **v3**"
    assert actions.calls == [("activate", "v2", "fixes the lounge tweets"), ("activate", "v3", "")]


def test_the_progress_line_shows_the_running_phase_then_an_activations_background_work():
    from bertdemo.ui.train import progress_line

    scoring = {"name": "scoring", "done": 12_800, "total": 27_166, "unit": "examples", "fraction": 0.4712,
               "text": "re-scoring 12,800 / 27,166 examples (47%), about 0.4 min left"}
    running = TrainingView("running", True, 30, 30, 0.4712, "Re-scoring the examples with v2", run_id=3,
                           phase=scoring)
    fraction, text, state, run = progress_line(running)
    assert (fraction, state, run) == (0.4712, "running", 3)  # the phase's own fraction, not the 30 steps' 100%
    assert text.startswith("re-scoring 12,800 / 27,166 examples (47%), about 0.4 min left · Re-scoring")
    assert "run #3 · running · 47% · re-scoring 12,800 / 27,166" in progress_html(fraction, text, state, run)
    # the run is over; the version activated after it is still building its int8 path: the bar follows that
    done = TrainingView("succeeded", False, 30, 30, 1.0, "Version v2 saved", run_id=3,
                        activity={"version": "v2", "run_id": None, "name": "int8", "done": 1, "total": 3,
                                  "unit": "steps", "fraction": 0.3333,
                                  "text": "building and gating the int8 path 1 / 3 steps (33%)"})
    shown = "v2: building and gating the int8 path 1 / 3 steps (33%) (it serves on PyTorch meanwhile)"
    assert progress_line(done) == (0.3333, shown, "activating", None)
    assert progress_line(replace(done, activity=None)) == (1.0, "Version v2 saved", "succeeded", 3)
