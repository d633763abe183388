"""The Train tab's actions, one per UI action, plain Python values in and out (no Gradio here):
start / poll / cancel a training run, list and activate versions, and review a candidate version
against a baseline (actions/review.py: slices with intervals, flips, the gate; one text's
attributions under both).

Admin-only actions check the role server-side with `auth.require_role`, so the HTTP API
(`start_training`, `activate_version`, `review_version`) is protected exactly like the buttons.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions import review as version_review
from bertdemo.db import runs
from bertdemo.errors import BadInput, NotFound
from bertdemo.model import explain
from bertdemo.model.classifier import Classifier
from bertdemo.services import Services
from bertdemo.text import clean_text
from bertdemo.training.behaviour import stored_suite
from bertdemo.training.comparison import review_set
from bertdemo.training.config import TrainConfig
from bertdemo.training.records import Phase
from bertdemo.training.registry import VersionInfo
from bertdemo.training.review import FLIP_KINDS
from bertdemo.validate import choice, flag, number, short
from bertdemo.validate import text as typed_text

MODES = ("full fine-tune", "frozen encoder (train the head only)")
# the third: a quick retrain, from the active version on the labels changed since it plus a replay sample
STARTS = ("base encoder", "active version", "active version, changed labels only (quick retrain)")


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
    phase: dict | None = None  # the running phase: name, done, total, unit, text ("re-scoring 12,800 / 27,166 ...")
    activity: dict | None = None  # the serving version's background work after an activation: version, phase

    def as_api(self) -> dict:
        return {"state": self.state, "run_id": self.run_id, "step": self.step, "total_steps": self.total_steps,
                "fraction": round(self.fraction, 4), "message": self.message, "version": self.version_name,
                "report": self.report, "history": list(self.history), "reason": self.reason,
                "serving": self.serving, "phase": self.phase, "activity": self.activity}


class TrainingActions:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self._models: dict[int, Classifier] = {}  # versions loaded for the review (at most 2)
        self._lock = threading.Lock()
        self._scored: tuple[tuple[int, int], version_review.Scored] | None = None  # the last reviewed pair
        self._last_gate: tuple[int, bool] | None = None  # (candidate id, gate passed) of the last review

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
                           init_from="base" if start_from == STARTS[0] else "active",
                           train_on="changed" if start_from == STARTS[2] else "all", max_steps=int(steps) or None)

    def start(self, config: TrainConfig, username: str | None, serve: bool = False) -> str:
        """Start a background run of `config` (TrainingActions.config_from_form builds it from the
        form). With `serve` False the new version is only registered: the admin compares it with
        the serving one and activates it below."""
        user = auth.require_role(self.services.engine, username, "admin")
        serve = flag(serve, "serve when trained")
        quick = ""
        if config.train_on == "changed":  # refused here, with the reason, rather than as a failed run
            quick = f" ({self.services.jobs.training_inputs(config).trained_on})"
        run_id = self.services.jobs.start(config, user=user, activate=serve)  # Busy if one runs
        then = "it will serve as soon as it is trained" if serve else "activate it below when you are happy"
        return f"Training run #{run_id} started{quick}; {then}."

    def cancel(self, username: str | None) -> str:
        auth.require_role(self.services.engine, username, "admin")
        if self.services.jobs.cancel():
            return "Cancelling: the run stops at the next step; the serving model is unchanged."
        return "No training run is in progress."

    def status(self) -> TrainingView:
        a = self.services.jobs.records.activity()
        activity = {"version": a.version, "run_id": a.run_id} | phase_dict(a.phase) if a is not None else None
        return replace(self._status(), serving=self.services.registry.serving_note() or "", activity=activity)

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
                            reason=st.reason, phase=phase_dict(st.phase) if st.phase_text() else None,
                            **_version_metrics(info))

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

    def activate(self, name: str, username: str | None, reason: str = "") -> str:
        """Serve `name` (admins only). `reason`: why, from the review's Activate B (recorded with
        the activation, and with the gate's verdict when this version was the last one reviewed)."""
        who = auth.require_role(self.services.engine, username, "admin")
        target = self._by_name(name)
        why = typed_text(reason or "", "The reason", 500).strip()
        serving = self.services.registry.active_version()
        kind = "rollback" if serving is not None and target.id < serving.id else "activation"
        recorded = f"{kind} in the Train tab" + (f" after the review{self._verdict_of(target)}: {why}" if why else "")
        info = self.services.jobs.activate(target.id, user=who, reason=recorded)
        follow = ("Its int8 path is built and checked, and the annotation queues re-scored with it, in the "
                  "background" if getattr(self.services.registry.serving.get(info.id), "pending", False) else
                  "The annotation queues are re-scored with it in the background")
        return f"Now serving **{info.name}** in every tab. {follow} (the progress line shows how far)."

    def reject(self, name: str, username: str | None, reason: str) -> str:
        """Record that version `name` must not serve (admins only; the reason is required): who,
        when and why, shown in the Versions table. The serving version cannot be rejected."""
        who = auth.require_role(self.services.engine, username, "admin")
        target = self._by_name(name)
        why = typed_text(reason or "", "The reason", 500).strip()
        if not why:
            raise BadInput(f"Say why {target.name} is rejected (the reason is recorded with your name).")
        info = self.services.registry.reject(target.id, who, why)
        return f"Rejected **{info.name}** ({info.rejected}). It stays registered; it does not serve."

    def _verdict_of(self, target: VersionInfo) -> str:
        """' (gate failed: manual override)' when `target` was the candidate of the last review and
        failed its gate; ' (gate passed)' when it passed; '' when it was not reviewed here."""
        last = self._last_gate
        if last is None or last[0] != target.id:
            return ""
        return " (gate passed)" if last[1] else " (gate failed: manual override)"

    def _by_name(self, name: str | None) -> VersionInfo:
        for v in self.versions():
            if v.name == name:
                return v
        raise NotFound(f"No model version named {short(name)}; choose one from the list.")

    # ------------------------------------------------------------------ the version review
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

    def review(self, a_name: str, b_name: str, kind: str | None = None, limit: int = 200, *,
               username: str | None = None, progress: version_review.Progress | None = None
               ) -> version_review.VersionReview:
        """Candidate `b_name` against baseline `a_name` on B's validation split (admins only: it may
        load models): slices with intervals, the flips (counts are totals; `kind` "fixed", "broken"
        or "changed" filters the listed rows), the gate's verdict; then the flips over the whole
        corpus from both versions' stored scores. Probabilities from the stored scores where both
        versions have them; the last pair's are kept, so a filter is instant."""
        auth.require_role(self.services.engine, username, "admin")
        started = time.perf_counter()
        a, b = self._by_name(a_name), self._by_name(b_name)
        kind = None if kind in (None, "", "all") else choice(kind, "The kind of flips", FLIP_KINDS)
        limit = int(number(limit, "The number of rows", 0, 10_000, whole=True))
        say = progress or (lambda _f, _m: None)
        scored = self._scored_pair(a, b, say)
        say(0.8, "Statistics: slices with bootstrap intervals, flips, the gate")
        result = version_review.build(scored, (a.name, b.name), self.settings.labels,
                                      lambda: self._model(b).predict_proba, kind=kind, limit=limit,
                                      tests=stored_suite(self.services.engine, self.settings.labels))
        say(0.9, "Flips over the whole corpus, from both versions' stored scores")
        corpus = version_review.corpus_flips(self.services.engine, (a, b), self.settings.labels, kind, limit,
                                             skip=frozenset(r.id for r in result.rows if r.id is not None))
        with self._lock:
            self._last_gate = (b.id, result.gate.passed)
        return replace(result, corpus=corpus, seconds=time.perf_counter() - started,
                       notes=result.notes + (("Both sides are the same version.",) if a.id == b.id else ()))

    def _scored_pair(self, a: VersionInfo, b: VersionInfo, say: version_review.Progress) -> version_review.Scored:
        key = (a.id, b.id)
        with self._lock:
            if self._scored is not None and self._scored[0] == key:
                return self._scored[1]
        say(0.05, f"Reading the validation split of {b.name}")
        rs = review_set(self.services.engine, self.services.registry.folder(b), b.name, self.settings.labels)
        say(0.1, "Reading the stored scores of both versions")
        scored = version_review.score(self.services.engine, rs, (a, b), self._model, self.settings.labels,
                                      progress=say)
        with self._lock:
            self._scored = (key, scored)  # one pair: the filter re-reads it, memory stays bounded
        return scored

    def attributions(self, text: str, a_name: str, b_name: str) -> AttributionPair:
        """Integrated Gradients of one text under each version, each towards the class that version
        predicts, labelled with the version and the class."""
        cleaned = clean_text(text, self.settings.max_chars)
        sides = []
        for name, role in ((a_name, "A"), (b_name, "B")):
            attr = explain.integrated_gradients(self._model(self._by_name(name)), cleaned)
            sides.append(AttributionSide(name, role, attr.target, attr.probs[attr.target],
                                         explain.highlighted(attr, merge=True)))
        return AttributionPair(sides[0], sides[1])


@dataclass(frozen=True)
class AttributionSide:
    """One version's attributions of a text, towards the class it predicts."""
    version: str
    role: str  # "A" (baseline) or "B" (candidate)
    target: str
    prob: float
    highlighted: list  # (word, score) pairs for gr.HighlightedText

    def label(self) -> str:
        """'v1 (A): towards negative (87%)': which version, which class the colours explain."""
        return f"{self.version} ({self.role}): towards {self.target} ({self.prob:.0%})"


@dataclass(frozen=True)
class AttributionPair:
    a: AttributionSide
    b: AttributionSide

    def line(self) -> str:
        return " · ".join(f"**{s.version}** ({s.role}): {s.target} ({s.prob:.0%})" for s in (self.a, self.b))


VERSION_COLUMNS = ("version", "serving", "macro-F1", "accuracy", "calibration (ECE)", "trained for",
                   "settings", "macro-F1 per dataset", "created", "by", "rejected")


def version_row(v: VersionInfo) -> list:
    """The Versions table's row of `v` (VERSION_COLUMNS): name, serving, macro-F1, accuracy, expected
    calibration error, the run's real length, settings summary, macro-F1 per dataset (ECE and per
    dataset empty for versions made before they were measured), created, by, its newest rejection."""
    c = v.train_config
    settings = (f"{c.get('epochs')} ep, lr {c.get('learning_rate')}, bs {c.get('batch_size')}, "
                f"len {c.get('max_length')}" + (", frozen" if c.get("freeze_encoder") else "")
                + (f", max {c['max_steps']} steps" if c.get("max_steps") else "")
                + (", from the active version" if c.get("init_from") == "active" else "")
                + (", changed labels + replay" if c.get("train_on") == "changed" else "")) if c else ""
    length = trained_for(v)
    if v.quick:  # a logistic regression head on the frozen encoder (training/quick_first.py): no steps
        settings, length = v.kind_text, f"{v.metrics.get('train_size', 0):,} tweets, logistic regression"
    per = v.metrics.get("per_dataset") or {}
    return [v.name, "yes" if v.is_active else "", _round(v.macro_f1), _round(v.metrics.get("accuracy")),
            _round(v.metrics.get("ece")), length, settings,
            " · ".join(f"{name} {m['macro_f1']:.3f}" for name, m in per.items()),
            v.created_at.strftime("%Y-%m-%d %H:%M"), v.created_by, v.rejected]


def trained_for(v: VersionInfo) -> str:
    """The run's real length: '30 steps (0.04 epochs)', and what a quick retrain trained on ('66 steps
    (1.00 epochs) · quick retrain from v2: 280 changed labels + 2,000 replay rows'). A max_steps run
    stops before its configured epochs. Versions saved before the length was stored get it from their
    settings and training set size, as the loop counts it (training/loop.py); '' when neither is known."""
    m, c = v.metrics, v.train_config
    on = f" · {m['trained_on']}" if m.get("trained_on") else ""
    steps, epochs = m.get("steps"), m.get("epochs_trained")
    if steps is None:
        try:
            per_epoch = math.ceil(math.ceil(int(m["train_size"]) / int(c["batch_size"])) / int(m.get("processes") or 1))
            steps = max(1, round(float(c["epochs"]) * per_epoch))
            steps = min(steps, int(c["max_steps"])) if c.get("max_steps") else steps
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return on.removeprefix(" · ")
        epochs = steps / per_epoch
    return f"{steps:,} steps ({epochs:.2f} epochs){on}"


def phase_dict(p: Phase) -> dict:
    """A phase as /training_status gives it."""
    return {"name": p.name, "done": p.done, "total": p.total, "unit": p.unit, "fraction": round(p.fraction, 4),
            "text": p.text()}


def _version_metrics(info: VersionInfo | None) -> dict:
    """The TrainingView fields read from a version's stored metrics (none without a version)."""
    if info is None:
        return {}
    return {"confusion": info.metrics.get("confusion"), "reliability": tuple(info.metrics.get("reliability") or ()),
            "ece": info.metrics.get("ece")}


def _round(x: object) -> object:
    return round(x, 4) if isinstance(x, float) else x
