"""Model versions' rows and the serving one: list, register (the files through
training/files.py's VersionFiles), activate, roll back.

Holds the active Classifier, the one cached global of the app, and swaps it atomically: the
new version is loaded completely before the reference changes, so a request in flight keeps
the model it started with and every later request sees the new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.db import locks, versions
from bertdemo.db.models import ModelVersion, Rejection
from bertdemo.errors import Conflict, NotFound, NotReady
from bertdemo.model.classifier import Classifier
from bertdemo.training import serving
from bertdemo.training.config import FitResult, TrainConfig
from bertdemo.training.files import BrokenVersion, VersionFiles
from bertdemo.training.follow_up import Ticket, ignore, int8_behaviour
from bertdemo.training.records import Report

log = logging.getLogger(__name__)

QUICK_KIND = "quick"  # train_config["kind"] of a quick first version (training/quick_first.py)
KIND_TEXTS = {QUICK_KIND: "quick, frozen encoder"}  # how the Versions table, status line and report name a kind


class NoModelError(NotReady):
    """No version is active yet (the first model is still being trained), or none can be loaded."""


@dataclass(frozen=True)
class VersionInfo:
    """One model version's row, read once (VersionInfo.of)."""

    id: int
    name: str
    path: str
    created_at: datetime
    created_by: str
    is_active: bool
    metrics: dict
    report: str
    train_config: dict
    rejected: str = ""  # the newest rejection from the review: "by alice 2026-12-04 13:10: why" ("" if none)

    @classmethod
    def of(cls, v: ModelVersion, rejection: Rejection | None = None) -> VersionInfo:
        rejected = (f"by {rejection.user} {rejection.created_at:%Y-%m-%d %H:%M}: {rejection.reason}"
                    if rejection is not None else "")
        return cls(v.id, v.name, v.path, v.created_at, v.created_by, v.is_active, dict(v.metrics or {}),
                   v.report, dict(v.train_config or {}), rejected)

    @property
    def macro_f1(self) -> float | None:
        return self.metrics.get("macro_f1")

    @property
    def kind(self) -> str:
        """"quick" (a logistic regression on the frozen encoder: training/quick_first.py) or
        "fine-tune" (every version a training run made, and every version saved before kinds)."""
        return str(self.train_config.get("kind") or "fine-tune")

    @property
    def quick(self) -> bool:
        return self.kind == QUICK_KIND

    @property
    def kind_text(self) -> str:
        """The kind as people read it: "quick, frozen encoder", or "" for a fine-tuned version."""
        return KIND_TEXTS.get(self.kind, "")


class Registry:
    """The versions' rows and the active (serving) classifier; `files` holds their folders."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._base_lock = threading.Lock()
        self._active: tuple[int, Classifier] | None = None
        self._seen: int | None = None  # the version this process last served or tried (pick_up compares)
        self._base: Classifier | None = None
        self.problem: str | None = None  # what the page says when the active version could not be loaded
        self.nothing_servable = False  # no version loaded at start: calls say `problem`
        self.serving: dict[int, serving.Serving] = {}  # version id -> what serves its inference
        self.files = VersionFiles(settings)  # the version folders; this class keeps the rows and the active one

    # ---------------------------------------------------------------- reading
    def versions(self) -> list[VersionInfo]:
        """Every version, newest first, with its newest rejection."""
        with Session(self.engine) as s:
            rejected = versions.latest_rejections(s)
            return [VersionInfo.of(v, rejected.get(v.id)) for v in versions.list_versions(s)]

    def get(self, version_id: int) -> VersionInfo:
        with Session(self.engine) as s:
            return VersionInfo.of(versions.get_version(s, version_id))

    def active_version(self) -> VersionInfo | None:
        with Session(self.engine) as s:
            v = versions.active_version(s)
            return VersionInfo.of(v) if v else None

    def folder(self, info: VersionInfo) -> Path:
        """The version's folder: its stored path, relative to the data directory unless absolute."""
        return self.files.folder(info.path)

    def load(self, info: VersionInfo, int8_now: bool = True) -> Classifier:
        """Load a version, or BrokenVersion saying why it cannot be (never a hub look-up of a
        folder that is not there). With `int8_now` False its int8 graph is left to the background
        work after an activation (prepare_serving), even when built: PyTorch serves meanwhile."""
        folder = self.folder(info)
        self.files.check_loadable(info.name, folder)
        try:
            clf = Classifier.load(folder, self.settings.labels, self.settings.device, self.settings.max_length,
                                  name=info.name, precision=serving.precision_for(self.settings.serving))
        except Exception as exc:  # any failure to read the files means the same to a person
            raise BrokenVersion(f"Model version {info.name} cannot be loaded from {folder}: "
                                f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        mode = self.settings.serving
        self.serving[info.id] = serving.attach(clf, folder, mode) if int8_now else serving.pending(clf, mode)
        return clf

    # ---------------------------------------------------------------- the serving path
    def prepare_serving(self, info: VersionInfo, clf: Classifier, report: Report = ignore,
                        ticket: Ticket | None = None) -> serving.Serving:
        """Build and gate the version's int8 graph if that is still to do, run the behaviour suite
        on it (results recorded under path "int8"), and attach it to `clf` when it may serve. Slow:
        call it off the request path; `report` follows its steps, and an abandoned `ticket` stops it
        (Abandoned) before it attaches anything."""
        folder, labels = self.folder(info), self.settings.labels
        if info.quick and self.settings.serving == "auto":
            self.serving[info.id] = state = serving.quick_version(clf)
            return state
        watch = serving.Watch(report, ticket or Ticket(info.name), int8_behaviour(self.engine, info.id, labels))
        state = serving.build(clf, folder, self.settings.serving,
                              lambda: serving.gate_set(self.engine, folder, info.name, labels), watch)
        self.serving[info.id] = state
        return state

    def serving_note(self) -> str | None:
        """What serves the active version's predictions, in one sentence (None before one is loaded)."""
        vid = self.active_id()
        state = self.serving.get(vid) if vid is not None else None
        return state.note if state else None

    def active(self) -> Classifier:
        """The serving classifier; loads the active version on first use."""
        current = self._active
        if current is not None:
            return current[1]
        with self._lock:
            if self._active is None:
                if self.problem is not None and self.nothing_servable:
                    raise NoModelError(self.problem)  # said at start; an activation clears it
                info = self.active_version()
                if info is None:
                    raise NoModelError("No model version is active yet.")
                self._seen = info.id
                self._active = (info.id, self.load(info))
            return self._active[1]

    def ensure_servable(self) -> str | None:
        """At start: load the active version. When it cannot be loaded, serve the newest version
        that loads (recorded as an activation with the reason), or, when none does, leave nothing
        active. Returns what the page should say (also kept in `self.problem`); None when the
        active version loads, or when there is none yet."""
        info = self.active_version()
        if info is None:
            return None
        self._seen = info.id
        try:
            with self._lock:
                self._active = (info.id, self.load(info))
            self.problem = None
            return None
        except BrokenVersion as exc:
            log.error("%s", exc)
            reasons = [str(exc)]
        for other in self.versions():  # newest first
            if other.id == info.id:
                continue
            try:
                clf = self.load(other)
            except BrokenVersion as exc:
                log.error("%s", exc)
                reasons.append(str(exc))
                continue
            self.activate(other.id, clf, user="system", reason=f"at start: {reasons[0]}")
            self.problem = (f"{reasons[0]} Serving {other.name} instead, the newest version that loads; an admin "
                            "can train a new version or activate another in the Train tab.")
            log.warning("%s", self.problem)
            return self.problem
        # the database keeps its active version: when the cause is outside the files (a wrong
        # BERTDEMO_DEVICE or BERTDEMO_LABELS), fixing it and restarting serves it again
        self.nothing_servable = True
        self.problem = ("No model version can be served: " + " ".join(reasons)
                        + " An admin can train a new version in the Train tab.")
        log.error("%s", self.problem)
        return self.problem

    def active_id(self) -> int | None:
        return self._active[0] if self._active else None

    def base(self) -> Classifier:
        """The base encoder (pre-trained, no fine-tuned head): for the Embeddings tab."""
        with self._base_lock:  # its own lock: loading it must not hold up the active model's first load
            if self._base is None:
                self._base = Classifier.load(self.settings.model_source, self.settings.labels,
                                             self.settings.device, self.settings.max_length, name="base encoder")
            return self._base

    # ---------------------------------------------------------------- writing
    def save(self, clf: Classifier, result: FitResult, config: TrainConfig, run_id: int | None, user: str,
             snapshot: Sequence[tuple[int, str, str]], validation: Sequence[tuple[str, str]] = (),
             kind: str = "") -> VersionInfo:
        """Write the version's files (VersionFiles.write: complete, or not there at all) and register
        it. The name is taken and the row committed in one transaction around the write, so a
        registered version always has complete files; a folder renamed into place whose row never
        committed is removed at the next start (cleanup_leftovers). `kind`: recorded in its
        train_config (VersionInfo.kind); "" for a fine-tuned version."""
        with Session(self.engine) as s, s.begin():
            name = versions.next_version_name(s)
            folder = self.files.write(name, clf, result, config, snapshot, validation)
            last = result.history[-1] if result.history else None  # the run's real length (max_steps may cut it)
            metrics = result.metrics() | ({"steps": last["step"], "epochs_trained": round(last["epoch"], 4)}
                                          if last else {})
            recipe = config.to_dict() | ({"kind": kind} if kind else {})
            v = versions.add_version(s, name=name, path=self.files.stored_path(folder),
                                     base_model=self.settings.model_source, created_by=user, metrics=metrics,
                                     report=result.report, train_config=recipe, run_id=run_id)
            return VersionInfo.of(v)

    def reject(self, version_id: int, user: str, reason: str) -> VersionInfo:
        """Record that `version_id` must not serve (who, why): Conflict for the serving version."""
        with Session(self.engine) as s, s.begin():
            v = versions.get_version(s, version_id)
            if v.is_active:
                raise Conflict(f"{v.name} is serving now: activate another version first (a rollback), then "
                               "reject it.")
            r = versions.reject_version(s, version_id, user, reason)
            return VersionInfo.of(v, r)

    def cleanup_leftovers(self) -> list[str]:
        """Remove the partial, scratch and unregistered version folders a killed process left
        (VersionFiles.cleanup_leftovers). Call it at start, before any training; returns the names removed."""
        stored = self.versions()
        # by folder name, not full path: a data dir that was moved keeps its versions
        return self.files.cleanup_leftovers({v.name for v in stored} | {Path(v.path).name for v in stored})

    def activate(self, version_id: int, clf: Classifier | None = None, user: str = "system",
                 reason: str = "") -> VersionInfo:
        """Make `version_id` the serving version: load it on PyTorch (its int8 graph is opened or
        built afterwards, off the request path: prepare_serving), warm it with one prediction, then
        flip the flag and the reference (recorded as an activation: who, why)."""
        info = self.get(version_id)
        loaded = clf if clf is not None else self.load(info, int8_now=False)
        if clf is not None:
            self.serving[info.id] = serving.pending(loaded, self.settings.serving)
        loaded.predict_proba(["warming up the serving copy"])  # the first person's prediction pays nothing
        with self._lock:
            with Session(self.engine) as s, s.begin():
                info = VersionInfo.of(versions.activate_version(s, version_id, user, reason))
            self._active, self._seen = (info.id, loaded), info.id
            self.problem, self.nothing_servable = None, False
        log.info("serving model version %s", info.name)
        return info


def pick_up(registry: Registry) -> tuple[VersionInfo, Classifier] | None:
    """Serve in `registry` the version another process activated (training/processes.py polls this): when
    the database's serving version is not the one this process last served or tried, load
    it (int8 graph attached if built), warm it, and swap, as `activate` does but recording
    nothing (the activation is recorded already). (info, classifier) when it swapped; None
    when nothing changed, before this process loaded any version (`active` loads the
    newest on first use), or when it cannot be loaded (logged; the current one serves on)."""
    with Session(registry.engine) as s:
        vid = locks.active_version_id(s)
    if (vid is None or vid in (registry._seen, registry.active_id())
            or (registry._active is None and not registry.nothing_servable)):
        return None
    registry._seen = vid
    try:
        info = registry.get(vid)
        loaded = registry.load(info)
    except (BrokenVersion, NotFound) as exc:
        log.error("another process activated version %s, which cannot be served here: %s", vid, exc)
        return None
    loaded.predict_proba(["warming up the serving copy"])
    with registry._lock:
        with Session(registry.engine) as s:
            # this process (or another) activated again meanwhile, or this process's own activation
            # committed just before our first look (it sets _seen under this lock)
            if locks.active_version_id(s) != vid or registry.active_id() == vid:
                return None
        registry._active = (vid, loaded)
        registry.problem, registry.nothing_servable = None, False
    log.info("serving model version %s, activated by another process", info.name)
    return info, loaded
