"""The Train tab's actions, one per UI action, plain Python values in and out (no Gradio here):
start / poll / cancel a training run, list and activate versions, and compare two versions
(metrics side by side, the examples whose prediction changed, one text's attributions).

Admin-only actions check the role server-side with `auth.require_role`, so the HTTP API
(`start_training`, `activate_version`) is protected exactly like the buttons.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.db import runs, versions
from bertdemo.errors import BadInput, NotFound
from bertdemo.model import explain
from bertdemo.model.classifier import Classifier
from bertdemo.services import Services
from bertdemo.text import clean_text
from bertdemo.training.config import TrainConfig
from bertdemo.training.registry import VersionInfo
from bertdemo.validate import choice, number, short

MODES = ("full fine-tune", "frozen encoder (train the head only)")
STARTS = ("base encoder", "active version")
METRIC_ROWS = ("macro_f1", "accuracy", "best_val_loss", "best_step", "train_size", "val_size", "seconds",
               "samples_per_s", "device", "precision")


@dataclass(frozen=True)
class TrainingView:
    """One poll of the runner, as the tab shows it. `history` rows: step, epoch, train_loss and,
    at evaluation steps, val_loss and val_macro_f1."""

    state: str
    running: bool
    step: int
    total_steps: int
    fraction: float
    message: str
    history: tuple[dict, ...] = ()
    report: str = ""
    confusion: list[list[int]] | None = None
    labels: tuple[str, ...] = ()
    version_name: str | None = None
    run_id: int | None = None
    reason: str = ""
    reliability: tuple[dict, ...] = ()  # calibration bins of the version's validation split
    ece: float | None = None  # why the run started when no person clicked Start (retrain every N labels)
    serving: str = ""  # what scores texts for the active version (int8 or PyTorch, and why)

    def as_api(self) -> dict:
        return {"state": self.state, "run_id": self.run_id, "step": self.step, "total_steps": self.total_steps,
                "fraction": round(self.fraction, 4), "message": self.message, "version": self.version_name,
                "report": self.report, "history": list(self.history), "reason": self.reason,
                "serving": self.serving}


@dataclass(frozen=True)
class VersionComparison:
    a: str
    b: str
    metrics: list[list]  # rows: [metric, value under a, value under b] (+ per-class F1 rows)
    changed: list[list]  # rows: [example id, text, current label, prediction a, prediction b]
    n_compared: int  # examples with a stored score under both versions
    notes: list[str] = field(default_factory=list)


class TrainingActions:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self._models: dict[int, Classifier] = {}  # versions loaded for comparison (at most 2)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ training
    @staticmethod
    def config_from_form(epochs: float, learning_rate: float, batch_size: float, max_length: float,
                         seed: float, mode: str = MODES[0], start_from: str = STARTS[0],
                         max_steps: float | None = None) -> TrainConfig:
        """The form's values as a TrainConfig, which checks them (BadInput names the option and its
        range). The form's max steps 0 means no limit."""
        choice(mode, "What to train", MODES)
        choice(start_from, "Start from", STARTS)
        steps = number(0 if max_steps is None else max_steps, "Max steps (0 = no limit)", 0,
                       TrainConfig.limit("max_steps").high, whole=True)
        return TrainConfig(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
                           seed=seed, freeze_encoder=mode == MODES[1],
                           init_from="active" if start_from == STARTS[1] else "base", max_steps=int(steps) or None)

    def start(self, config: TrainConfig, username: str | None, serve: bool = False) -> str:
        """Start a background run of `config` (TrainingActions.config_from_form builds it from the
        form). With `serve` False the new version is only registered: the admin compares it with
        the serving one and activates it below."""
        user = auth.require_role(self.services.engine, username, "admin")
        if serve not in (True, False, None):  # 1 and 0 too; a string "false" must not mean yes
            raise BadInput(f"serve when trained must be true or false, got {short(serve)}.")
        run_id = self.services.jobs.start(config, user=user, activate=bool(serve))  # Busy if one runs
        then = "it will serve as soon as it is trained" if serve else "activate it below when you are happy"
        return f"Training run #{run_id} started; {then}."

    def cancel(self, username: str | None) -> str:
        auth.require_role(self.services.engine, username, "admin")
        if self.services.jobs.cancel():
            return "Cancelling: the run stops at the next step; the serving model is unchanged."
        return "No training run is in progress."

    def status(self) -> TrainingView:
        return replace(self._status(), serving=self.services.registry.serving_note() or "")

    def _status(self) -> TrainingView:
        st = self.services.jobs.status()
        if st.state == "idle":  # nothing ran in this process: show the last recorded run, if any
            with Session(self.services.engine) as s:
                run = runs.latest_record(s)
            if run is not None:
                return self._recorded(run)
        info = self._by_name(st.version_name) if st.state == "succeeded" and st.version_name else None
        return TrainingView(state=st.state, running=st.running, step=st.step, total_steps=st.total_steps,
                            fraction=st.fraction, message=st.message, history=st.history, report=st.report,
                            labels=tuple(self.settings.labels), version_name=st.version_name, run_id=st.run_id,
                            reason=st.reason, **_version_metrics(info))

    def _recorded(self, run: runs.RunRecord) -> TrainingView:
        """The view of a run recorded by an earlier process."""
        info = self.services.registry.get(run.version_id) if run.version_id else None
        return TrainingView(
            state=run.status, running=False, step=run.step, total_steps=run.total_steps,
            fraction=run.step / run.total_steps if run.total_steps else 0.0, message=run.message,
            history=run.history, report=info.report if info else "", labels=tuple(self.settings.labels),
            version_name=info.name if info else None, run_id=run.id, reason=run.reason, **_version_metrics(info))

    # ------------------------------------------------------------------ versions
    def versions(self) -> list[VersionInfo]:
        return self.services.registry.versions()

    def version_names(self) -> list[str]:
        return [v.name for v in self.versions()]

    def versions_table(self) -> list[list]:
        """One row per version, newest first (version_row)."""
        return [version_row(v) for v in self.versions()]

    def activate(self, name: str, username: str | None) -> str:
        who = auth.require_role(self.services.engine, username, "admin")
        target = self._by_name(name)
        serving = self.services.registry.active_version()
        kind = "rollback" if serving is not None and target.id < serving.id else "activation"
        info = self.services.jobs.activate(target.id, user=who, reason=f"{kind} in the Train tab")
        return (f"Now serving **{info.name}** in every tab. The annotation queues are being re-scored "
                "with it in the background.")

    def _by_name(self, name: str | None) -> VersionInfo:
        for v in self.versions():
            if v.name == name:
                return v
        raise NotFound(f"No model version named {short(name)}; choose one from the list.")

    # ------------------------------------------------------------------ before / after
    def _model(self, info: VersionInfo) -> Classifier:
        reg = self.services.registry
        if reg.active_id() == info.id:
            return reg.active()
        with self._lock:
            if info.id not in self._models:
                while len(self._models) >= 2:
                    self._models.pop(next(iter(self._models)))
                self._models[info.id] = reg.load(info)
            return self._models[info.id]

    def _ensure_scores(self, info: VersionInfo) -> bool:
        """Score every example with `info` unless it was already (versions never activated)."""
        with Session(self.services.engine) as s:
            if versions.has_scores(s, info.id):
                return False
        self.services.jobs.rescore(info, self._model(info))
        return True

    def compare(self, a_name: str, b_name: str, limit: int = 200) -> VersionComparison:
        a, b = self._by_name(a_name), self._by_name(b_name)
        notes = [f"Scored the examples with {v.name} first (it had never been activated)."
                 for v in ({a.id: a, b.id: b}.values()) if self._ensure_scores(v)]
        rows = [[m, a.metrics.get(m), b.metrics.get(m)] for m in METRIC_ROWS]
        for lab in self.settings.labels:
            fa = (a.metrics.get("report_dict") or {}).get(lab, {}).get("f1-score")
            fb = (b.metrics.get("report_dict") or {}).get(lab, {}).get("f1-score")
            rows.append([f"F1 {lab}", fa, fb])
        rows = [[m, _round(x), _round(y)] for m, x, y in rows]
        with Session(self.services.engine) as s:
            n, changed = versions.changed_predictions(s, a.id, b.id, limit)
        if a.id == b.id:
            notes.append("Both sides are the same version.")
        return VersionComparison(a.name, b.name, rows, changed, n, notes)

    def attributions(self, text: str, a_name: str, b_name: str) -> tuple[list, list, str]:
        """Integrated Gradients of one text under each version (for gr.HighlightedText), and a
        line with both predictions."""
        cleaned = clean_text(text, self.settings.max_chars)
        out, lines = [], []
        for name in (a_name, b_name):
            info = self._by_name(name)
            attr = explain.integrated_gradients(self._model(info), cleaned)
            out.append(explain.highlighted(attr, merge=True))
            lines.append(f"**{name}**: {attr.target} ({attr.probs[attr.target]:.0%})")
        return out[0], out[1], " · ".join(lines)


VERSION_COLUMNS = ("version", "serving", "macro-F1", "accuracy", "created", "by", "settings", "macro-F1 per dataset",
                   "ECE")


def version_row(v: VersionInfo) -> list:
    """The Versions table's row of `v` (VERSION_COLUMNS): name, serving, macro-F1, accuracy, created,
    by, settings summary, macro-F1 per dataset, expected calibration error (the last two empty for
    versions made before they were measured)."""
    c = v.train_config
    settings = (f"{c.get('epochs')} ep, lr {c.get('learning_rate')}, bs {c.get('batch_size')}, "
                f"len {c.get('max_length')}" + (", frozen" if c.get("freeze_encoder") else "")
                + (f", max {c['max_steps']} steps" if c.get("max_steps") else "")
                + (", from the active version" if c.get("init_from") == "active" else "")) if c else ""
    per = v.metrics.get("per_dataset") or {}
    return [v.name, "yes" if v.is_active else "", _round(v.macro_f1), _round(v.metrics.get("accuracy")),
            v.created_at.strftime("%Y-%m-%d %H:%M"), v.created_by, settings,
            " · ".join(f"{name} {m['macro_f1']:.3f}" for name, m in per.items()), _round(v.metrics.get("ece"))]


def _version_metrics(info: VersionInfo | None) -> dict:
    """The TrainingView fields read from a version's stored metrics (none without a version)."""
    if info is None:
        return {}
    return {"confusion": info.metrics.get("confusion"), "reliability": tuple(info.metrics.get("reliability") or ()),
            "ece": info.metrics.get("ece")}


def _round(x: object) -> object:
    return round(x, 4) if isinstance(x, float) else x
