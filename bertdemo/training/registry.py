"""Model versions on disk and in the database: save, activate, roll back.

Holds the active Classifier, the one cached global of the app, and swaps it atomically: the
new version is loaded completely before the reference changes, so a request in flight keeps
the model it started with and every later request sees the new one.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.db import examples, versions
from bertdemo.db.models import ModelVersion
from bertdemo.errors import NotReady
from bertdemo.model.classifier import Classifier
from bertdemo.training import serving
from bertdemo.training.config import FitResult, TrainConfig

log = logging.getLogger(__name__)


VALIDATION_FILE = "validation.csv"  # a version's validation split (text, label): the int8 gate's set
GATE_SAMPLE = 2000  # labelled examples the int8 gate uses for a version saved without its split
CALIBRATION_SAMPLE = 500  # texts that fix the int8 graph's activation scales (one at a time: ~8 s)
_VERSION = re.compile(r"v\d+")  # a version folder, as store.next_version_name names them
_PARTIAL = re.compile(r"\.v\d+\.partial")  # a version being written (Registry.save)
_SCRATCH = re.compile(r"\.run-\d+")  # a run's scratch folder (JobRunner: weights from a ZeroGPU worker)


def fsync(path: str | Path) -> None:
    """Flush one file, or one folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root`, and the folders, to disk (so a power loss after the rename
    cannot leave a registered version with empty files; a process crash alone never could)."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fsync(os.path.join(dirpath, f))
        fsync(dirpath)


class NoModelError(NotReady):
    """No version is active yet (the first model is still being trained), or none can be loaded."""


class BrokenVersion(NotReady):
    """A version whose folder cannot be loaded (missing, moved, corrupted); the message says which
    and why."""


# what a loadable version folder holds besides its weights (model.safetensors or pytorch_model.bin)
REQUIRED_FILES = ("config.json",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class VersionInfo:
    id: int
    name: str
    path: str
    created_at: datetime
    created_by: str
    is_active: bool
    metrics: dict
    report: str
    train_config: dict

    @classmethod
    def of(cls, v: ModelVersion) -> VersionInfo:
        return cls(v.id, v.name, v.path, v.created_at, v.created_by, v.is_active, dict(v.metrics or {}),
                   v.report, dict(v.train_config or {}))

    @property
    def macro_f1(self) -> float | None:
        return self.metrics.get("macro_f1")


def version_folder(data_dir: Path, stored: str) -> Path:
    """A version's folder from its stored path: relative to the data directory unless absolute."""
    path = Path(stored)
    return path if path.is_absolute() else data_dir / path


class Registry:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._base_lock = threading.Lock()
        self._active: tuple[int, Classifier] | None = None
        self._base: Classifier | None = None
        self.problem: str | None = None  # what the page says when the active version could not be loaded
        self.nothing_servable = False  # no version loaded at start: calls say `problem`
        self.serving: dict[int, serving.Serving] = {}  # version id -> what serves its inference

    # ---------------------------------------------------------------- reading
    def versions(self) -> list[VersionInfo]:
        with Session(self.engine) as s:
            return [VersionInfo.of(v) for v in versions.list_versions(s)]

    def get(self, version_id: int) -> VersionInfo:
        with Session(self.engine) as s:
            return VersionInfo.of(versions.get_version(s, version_id))

    def active_version(self) -> VersionInfo | None:
        with Session(self.engine) as s:
            v = versions.active_version(s)
            return VersionInfo.of(v) if v else None

    def folder(self, info: VersionInfo) -> Path:
        """The version's folder: its stored path, relative to the data directory unless absolute."""
        return version_folder(self.settings.data_dir, info.path)

    def load(self, info: VersionInfo) -> Classifier:
        """Load a version, or BrokenVersion saying why it cannot be (never a hub look-up of a
        folder that is not there)."""
        folder = self.folder(info)
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if not folder.is_dir():
            raise BrokenVersion(f"Model version {info.name} cannot be loaded: its folder {folder} does not exist.")
        if missing or not any((folder / f).is_file() for f in WEIGHT_FILES):
            raise BrokenVersion(f"Model version {info.name} cannot be loaded: its folder {folder} has no "
                                f"{', '.join(missing) or 'weights file'}.")
        try:
            clf = Classifier.load(folder, self.settings.labels, self.settings.device, self.settings.max_length,
                                  name=info.name, precision=serving.precision_for(self.settings.serving))
        except Exception as exc:  # any failure to read the files means the same to a person
            raise BrokenVersion(f"Model version {info.name} cannot be loaded from {folder}: "
                                f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        self.serving[info.id] = serving.attach(clf, folder, self.settings.serving)
        return clf

    # ---------------------------------------------------------------- the serving path
    def prepare_serving(self, info: VersionInfo, clf: Classifier) -> serving.Serving:
        """Build and gate the version's int8 graph if that is still to do (slow: call it off the
        request path), and attach it to `clf` when it may serve."""
        state = serving.build(clf, self.folder(info), self.settings.serving, lambda: self.gate_set(info))
        self.serving[info.id] = state
        return state

    def serving_note(self) -> str | None:
        """What serves the active version's predictions, in one sentence (None before one is loaded)."""
        vid = self.active_id()
        state = self.serving.get(vid) if vid is not None else None
        return state.note if state else None

    def gate_set(self, info: VersionInfo) -> tuple[list[str], list[int], str, list[str]]:
        """The labelled texts the int8 gate compares on (the version's validation split, or for a
        version saved without it, a fixed sample of labelled examples) and the texts its
        activation scales are calibrated on (a fixed sample of the other examples)."""
        labels = list(self.settings.labels)
        f = self.folder(info) / VALIDATION_FILE
        with Session(self.engine) as s:  # one read of the database for both
            if f.is_file():
                with open(f, encoding="utf-8", newline="") as fh:
                    rows = [(r["text"], r["label"]) for r in csv.DictReader(fh) if r["label"] in labels]
                on = f"the validation split of {info.name}"
            else:
                rows = [(t, lab) for _i, t, lab in examples.labeled_examples(s) if lab in labels]
                rows = rows[:: max(1, len(rows) // GATE_SAMPLE)][:GATE_SAMPLE]
                on = "a sample of the labelled examples"
            texts = [t for t, _ in rows]
            held_out = set(texts)
            others = [t for _i, t in examples.all_texts(s) if t not in held_out]
        calibration = (others[:: max(1, len(others) // CALIBRATION_SAMPLE)][:CALIBRATION_SAMPLE]
                       or texts[:CALIBRATION_SAMPLE])
        return texts, [labels.index(lab) for _, lab in rows], on, calibration

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
             snapshot: Sequence[tuple[int, str, str]], validation: Sequence[tuple[str, str]] = ()) -> VersionInfo:
        """Write weights, tokenizer, metrics, settings and the label snapshot; register the version.

        Crash-safe: the files go to a hidden `.vN.partial` folder, are fsynced, and the folder is
        renamed to `vN` (atomic) before the row is committed. So a registered version always has
        complete files, and a process killed mid-save leaves only a hidden partial folder or an
        unregistered `vN`, which the next save of that name replaces and the next app start
        removes (cleanup_leftovers)."""
        root = self.settings.models_dir
        root.mkdir(parents=True, exist_ok=True)
        with Session(self.engine) as s, s.begin():
            name = versions.next_version_name(s)
            final = root / name
            tmp = root / f".{name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                clf.save(tmp)
                (tmp / "metrics.json").write_text(json.dumps(result.metrics(), indent=1))
                (tmp / "history.json").write_text(json.dumps(result.history))
                (tmp / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1))
                (tmp / "classification_report.txt").write_text(result.report)
                with open(tmp / "labels_snapshot.csv", "w", encoding="utf-8") as f:
                    f.write("example_id,label\n")
                    f.writelines(f"{i},{lab}\n" for i, _t, lab in snapshot)
                with open(tmp / VALIDATION_FILE, "w", encoding="utf-8", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(["text", "label"])
                    w.writerows(validation)
                fsync_tree(tmp)
                if final.exists():  # an unregistered folder of this name: a save killed after its rename
                    shutil.rmtree(final)
                tmp.rename(final)
                fsync(root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            # relative to the data directory: a moved or restored data directory serves at once
            v = versions.add_version(s, name=name, path=final.relative_to(self.settings.data_dir).as_posix(),
                                     base_model=self.settings.model_source, created_by=user, metrics=result.metrics(),
                                     report=result.report, train_config=config.to_dict(), run_id=run_id)
            return VersionInfo.of(v)

    def cleanup_leftovers(self) -> list[str]:
        """Remove what a process killed mid-save or mid-run left in the models folder: hidden
        `.vN.partial` and `.run-N` scratch folders, and `vN` folders that no registered version
        has (renamed into place, killed before the row was committed). Registered versions'
        folders and anything else are kept. Call it at start, before any training; returns the
        names removed."""
        root = self.settings.models_dir
        if not root.is_dir():
            return []
        with Session(self.engine) as s:
            stored = versions.list_versions(s)
        # by folder name, not full path: a data dir that was moved keeps its versions
        registered = {v.name for v in stored} | {Path(v.path).name for v in stored}
        removed = []
        for p in sorted(root.iterdir()):
            if not p.is_dir() or p.is_symlink():
                continue
            leftover = (_PARTIAL.fullmatch(p.name) or _SCRATCH.fullmatch(p.name)
                        or (_VERSION.fullmatch(p.name) and p.name not in registered))
            if leftover:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        if removed:
            log.warning("removed %d leftover model folder(s) of an interrupted save or run: %s",
                        len(removed), ", ".join(removed))
        return removed

    def activate(self, version_id: int, clf: Classifier | None = None, user: str = "system",
                 reason: str = "") -> VersionInfo:
        """Make `version_id` the serving version: load it, then flip the flag and the reference
        (recorded as an activation: who, why)."""
        info = self.get(version_id)
        loaded = clf if clf is not None else self.load(info)
        with self._lock:
            with Session(self.engine) as s, s.begin():
                info = VersionInfo.of(versions.activate_version(s, version_id, user, reason))
            self._active = (info.id, loaded)
            self.problem, self.nothing_servable = None, False
        log.info("serving model version %s", info.name)
        return info

    def delete_files(self, info: VersionInfo) -> None:
        shutil.rmtree(self.folder(info), ignore_errors=True)
