"""Model versions on disk and in the database: save, activate, roll back.

Holds the active Classifier, the one cached global of the app, and swaps it atomically: the
new version is loaded completely before the reference changes, so a request in flight keeps
the model it started with and every later request sees the new one.
"""

from __future__ import annotations

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
from bertdemo.db import versions
from bertdemo.db.models import ModelVersion
from bertdemo.errors import NotReady
from bertdemo.model.classifier import Classifier
from bertdemo.training.config import FitResult, TrainConfig

log = logging.getLogger(__name__)


_VERSION = re.compile(r"v\d+")  # a version folder, as store.next_version_name names them
_PARTIAL = re.compile(r"\.v\d+\.partial")  # a version being written (Registry.save)
_SCRATCH = re.compile(r"\.run-\d+")  # a run's scratch folder (JobRunner: weights from a ZeroGPU worker)


def _fsync(path: str | Path) -> None:
    """Flush one file, or one folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file under `root`, and the folders, to disk (so a power loss after the rename
    cannot leave a registered version with empty files; a process crash alone never could)."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            _fsync(os.path.join(dirpath, f))
        _fsync(dirpath)


class NoModelError(NotReady):
    """No version is active yet (the first model is still being trained)."""


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


class Registry:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._lock = threading.Lock()
        self._base_lock = threading.Lock()
        self._active: tuple[int, Classifier] | None = None
        self._base: Classifier | None = None

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

    def load(self, info: VersionInfo) -> Classifier:
        return Classifier.load(info.path, self.settings.labels, self.settings.device,
                               self.settings.max_length, name=info.name)

    def active(self) -> Classifier:
        """The serving classifier; loads the active version on first use."""
        current = self._active
        if current is not None:
            return current[1]
        with self._lock:
            if self._active is None:
                info = self.active_version()
                if info is None:
                    raise NoModelError("No model version is active yet.")
                self._active = (info.id, self.load(info))
            return self._active[1]

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
             snapshot: Sequence[tuple[int, str, str]]) -> VersionInfo:
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
                _fsync_tree(tmp)
                if final.exists():  # an unregistered folder of this name: a save killed after its rename
                    shutil.rmtree(final)
                tmp.rename(final)
                _fsync(root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            v = versions.add_version(s, name=name, path=str(final), base_model=self.settings.model_source,
                                  created_by=user, metrics=result.metrics(), report=result.report,
                                  train_config=config.to_dict(), run_id=run_id)
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

    def activate(self, version_id: int, clf: Classifier | None = None) -> VersionInfo:
        """Make `version_id` the serving version: load it, then flip the flag and the reference."""
        info = self.get(version_id)
        loaded = clf if clf is not None else self.load(info)
        with self._lock:
            with Session(self.engine) as s, s.begin():
                info = VersionInfo.of(versions.activate_version(s, version_id))
            self._active = (info.id, loaded)
        log.info("serving model version %s", info.name)
        return info

    def delete_files(self, info: VersionInfo) -> None:
        shutil.rmtree(Path(info.path), ignore_errors=True)
