"""A run's nested validation split when it starts from a version: the start version's validation
examples stay in validation, the examples it trained on go to training, and only the examples it
never saw are split (stratified, at val_fraction), so the validation set never holds an example the
start weights were fitted to and grows with the labels. Plain selection: training/inputs.py reads
the database and the start version's folder and builds the run's TrainingData from a NestedSplit."""

from __future__ import annotations

import csv
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertdemo.datasets import stratified_split
from bertdemo.training.files import VALIDATION_FILE
from bertdemo.training.quick_retrain import SNAPSHOT_FILE


@dataclass(frozen=True)
class StartVersion:
    """What a start version saw, from its folder: every example it trained or validated on."""

    name: str
    labelled: frozenset[int]  # ids in its labels snapshot: its training and validation examples
    validation_texts: tuple[str, ...]  # its validation split's cleaned texts (validation.csv); () when not saved


@dataclass(frozen=True)
class NestedSplit:
    """Indices (into the run's snapshot) of a run from `start`, and how its validation was made."""

    train: np.ndarray
    val: np.ndarray
    start: str
    kept: int  # `start`'s validation examples still labelled (not awaiting adjudication): validated on again
    new_val: int  # examples `start` never saw, drawn into validation at val_fraction
    new_train: int  # examples `start` never saw, drawn into training

    def line(self) -> str:
        """What the run trained and validated on, as its report and the Versions table say it."""
        return (f"every label, from {self.start}; validation: {self.kept:,} of {self.start}'s validation examples "
                f"+ {self.new_val:,} new")


def read_start(folder: Path, name: str) -> StartVersion | None:
    """What version `name` (in `folder`) saw; None when it was saved without its labels snapshot."""
    snapshot = folder / SNAPSHOT_FILE
    if not snapshot.is_file():
        return None
    with open(snapshot, encoding="utf-8", newline="") as f:
        labelled = frozenset(int(r["example_id"]) for r in csv.DictReader(f))
    texts: tuple[str, ...] = ()
    if (folder / VALIDATION_FILE).is_file():
        with open(folder / VALIDATION_FILE, encoding="utf-8", newline="") as f:
            texts = tuple(r["text"] for r in csv.DictReader(f))
    return StartVersion(name, labelled, texts)


def split_new(y: np.ndarray, groups: Sequence[str | None], val_fraction: float,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of examples new to the start version: the usual stratified split
    (datasets.stratified_split); when too few to stratify (a class with one example, fewer examples
    than strata), a seeded plain draw of round(n x val_fraction)."""
    n = len(y)
    if n == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    try:
        return stratified_split(y, val_fraction, seed, list(groups))
    except ValueError:  # scikit-learn refuses: too few per stratum
        n_val = round(n * val_fraction)
        val = np.sort(np.random.default_rng(seed).permutation(n)[:n_val])
        return np.setdiff1d(np.arange(n), val), val


def nested_split(ids: Sequence[int], y: np.ndarray, groups: Sequence[str | None], start: StartVersion,
                 start_val_ids: Collection[int], val_fraction: float, seed: int) -> NestedSplit:
    """The split of the labelled examples `ids` (labels `y`, datasets `groups`) for a run from `start`,
    whose validation examples are `start_val_ids` (its validation texts, mapped to ids): those stay in
    validation, the rest of what it saw goes to training, the examples it never saw are split_new."""
    kept_ids = set(start_val_ids)
    seen = set(start.labelled) | kept_ids
    kept = [k for k, i in enumerate(ids) if i in kept_ids]
    new = [k for k, i in enumerate(ids) if i not in seen]
    new_tr, new_va = split_new(np.asarray(y)[new], [groups[k] for k in new], val_fraction, seed)
    val = np.array(sorted(kept + [new[j] for j in new_va]), dtype=int)
    train = np.setdiff1d(np.arange(len(ids)), val)
    return NestedSplit(train, val, start.name, len(kept), len(new_va), len(new_tr))
