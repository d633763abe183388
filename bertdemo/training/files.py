"""Model versions' folders on disk: where a version's files live, writing them crash-safe (a hidden
partial folder, fsynced, renamed into place), checking that a folder can be loaded, and removing
what a killed save or run left behind. No database here: training/registry.py owns the rows."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path

from bertdemo.config import Settings
from bertdemo.errors import NotReady
from bertdemo.model.classifier import Classifier
from bertdemo.training.config import FitResult, TrainConfig

log = logging.getLogger(__name__)

VALIDATION_FILE = "validation.csv"  # a version's validation split (text, label): the int8 gate's set
# what a loadable version folder holds besides its weights (model.safetensors or pytorch_model.bin)
REQUIRED_FILES = ("config.json",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_VERSION = re.compile(r"v\d+")  # a version folder, as versions.next_version_name names them
_PARTIAL = re.compile(r"\.v\d+\.partial")  # a version being written (VersionFiles.write)
_SCRATCH = re.compile(r"\.run-\d+")  # a run's scratch folder (the runner: weights from a ZeroGPU worker)


class BrokenVersion(NotReady):
    """A version whose folder cannot be loaded (missing, moved, corrupted); the message says which
    and why."""


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


def version_folder(data_dir: Path, stored: str) -> Path:
    """A version's folder from its stored path: relative to the data directory unless absolute."""
    path = Path(stored)
    return path if path.is_absolute() else data_dir / path


class VersionFiles:
    """The models folder (`settings.models_dir`) and the version folders in it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.models_dir

    def folder(self, stored: str) -> Path:
        """A version's folder from its stored path (relative to the data directory unless absolute)."""
        return version_folder(self.settings.data_dir, stored)

    def stored_path(self, folder: Path) -> str:
        """What the database keeps for `folder`: relative to the data directory, so a moved or
        restored data directory serves at once."""
        return folder.relative_to(self.settings.data_dir).as_posix()

    def check_loadable(self, name: str, folder: Path) -> None:
        """BrokenVersion unless `folder` holds a model's config and weights (never a hub look-up of
        a folder that is not there)."""
        if not folder.is_dir():
            raise BrokenVersion(f"Model version {name} cannot be loaded: its folder {folder} does not exist.")
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing or not any((folder / f).is_file() for f in WEIGHT_FILES):
            raise BrokenVersion(f"Model version {name} cannot be loaded: its folder {folder} has no "
                                f"{', '.join(missing) or 'weights file'}.")

    def write(self, name: str, clf: Classifier, result: FitResult, config: TrainConfig,
              snapshot: Sequence[tuple[int, str, str]], validation: Sequence[tuple[str, str]] = ()) -> Path:
        """Write weights, tokenizer, metrics, settings, the label snapshot and the validation split
        to the folder `name`; returns it.

        Crash-safe: the files go to a hidden `.name.partial` folder, are fsynced, and the folder is
        renamed to `name` (atomic). A process killed here leaves only a hidden partial folder or an
        unregistered `vN`, which the next write of that name replaces and cleanup_leftovers removes."""
        self.root.mkdir(parents=True, exist_ok=True)
        final, tmp = self.root / name, self.root / f".{name}.partial"
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
            fsync(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def cleanup_leftovers(self, registered: Collection[str]) -> list[str]:
        """Remove what a process killed mid-save or mid-run left in the models folder: hidden
        `.vN.partial` and `.run-N` scratch folders, and `vN` folders not in `registered` (the folder
        names the registered versions use: renamed into place, killed before the row was committed).
        Anything else is kept. Returns the names removed."""
        if not self.root.is_dir():
            return []
        removed = []
        for p in sorted(self.root.iterdir()):
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
