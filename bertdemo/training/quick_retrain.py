"""A quick retrain's examples: those whose label changed since the active version was trained (against
the labels snapshot saved in its folder), plus a replay sample of the unchanged rest, stratified by
dataset and label and seeded, so that the version learns the corrections without forgetting the
rest; validated on the active version's own validation split (current labels), which neither it nor
the quick retrain trains on. Plain selection: training/inputs.py reads the database and builds the
run's TrainingData from a QuickSelection."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertdemo.training.config import TrainingError
from bertdemo.training.files import VALIDATION_FILE

SNAPSHOT_FILE = "labels_snapshot.csv"  # training/files.py writes it: (example_id, label) of every label a version knew
# each changed example is trained on this many times in the run's one epoch. Measured (bench/bench_quick_retrain.py,
# 278 corrected tweets + 2,000 replay rows, bench/README.md "Quick retrain"): once, accuracy on the corrections
# 0.784 -> 0.867 (the full retrain: 0.878), validation macro-F1 -0.000 (-0.009 to +0.008) against the full retrain;
# twice it was 0.827, as the loop kept its lowest-validation-loss step, half-way through: no gain, so once
REPEAT_CHANGED = 1


@dataclass(frozen=True)
class QuickSelection:
    """What a quick retrain from `start` trains and validates on, by example id (each sorted)."""

    start: str  # the active version's name
    changed: tuple[int, ...]  # labels changed (or added) since `start` was trained, outside the validation split
    replay: tuple[int, ...]  # the replay sample of the unchanged labelled examples
    validation: tuple[int, ...]  # `start`'s validation split, of the examples labelled now
    changed_in_validation: int = 0  # changed labels in that split: validated on, never trained on
    repeat: int = REPEAT_CHANGED

    def training_ids(self) -> list[int]:
        """The training examples: each changed one `repeat` times, then the replay sample."""
        return [i for i in self.changed for _ in range(self.repeat)] + list(self.replay)

    def line(self) -> str:
        """What the version trained on, as its report and the Versions table say it."""
        also = (f" ({self.changed_in_validation:,} more changed labels are in the validation split: validated on, "
                "not trained on)" if self.changed_in_validation else "")
        return (f"quick retrain from {self.start}: {len(self.changed):,} changed labels + {len(self.replay):,} "
                f"replay rows{also}")


def read_trained_labels(folder: Path, name: str) -> dict[int, str]:
    """{example id: label} of the labels version `name` knew when it was trained (its snapshot)."""
    path = folder / SNAPSHOT_FILE
    if not path.is_file():
        raise TrainingError(f"A quick retrain needs the labels {name} was trained on; its folder has no "
                            f"{SNAPSHOT_FILE}. Train from the base encoder instead.")
    with open(path, encoding="utf-8", newline="") as f:
        return {int(r["example_id"]): r["label"] for r in csv.DictReader(f)}


def read_validation_texts(folder: Path, name: str) -> list[str]:
    """The cleaned texts of version `name`'s validation split."""
    path = folder / VALIDATION_FILE
    if not path.is_file():
        raise TrainingError(f"A quick retrain validates on {name}'s validation split, and {name} was saved "
                            "without it. Train from the base encoder instead.")
    with open(path, encoding="utf-8", newline="") as f:
        return [r["text"] for r in csv.DictReader(f)]


def changed_ids(current: Mapping[int, str], trained: Mapping[int, str]) -> list[int]:
    """Ids of the examples labelled now whose label differs from the one trained on, or that had none."""
    return sorted(i for i, label in current.items() if trained.get(i) != label)


def replay_sample(ids: Sequence[int], strata: Mapping[int, str], size: int, seed: int) -> list[int]:
    """`size` of `ids` (all when fewer), each stratum ((dataset, label) key) in its share of `ids`
    (largest remainders), drawn with `seed`; sorted."""
    if size >= len(ids):
        return sorted(ids)
    groups: dict[str, list[int]] = defaultdict(list)
    for i in sorted(ids):
        groups[strata[i]].append(i)
    keys = sorted(groups)
    exact = np.array([len(groups[k]) * size / len(ids) for k in keys])
    take = np.floor(exact).astype(int)
    for j in np.argsort(-(exact - take), kind="stable")[:size - int(take.sum())]:
        take[j] += 1
    rng = np.random.default_rng(seed)
    picked = [x for k, n in zip(keys, take) for x in rng.choice(groups[k], size=int(n), replace=False).tolist()]
    return sorted(int(x) for x in picked)


def select(start: str, current: Mapping[int, str], trained: Mapping[int, str], validation: Sequence[int],
           strata: Mapping[int, str], replay: int, seed: int) -> QuickSelection:
    """The quick retrain of `current` labels ({id: label}, labelled now) from version `start`, which
    was trained on `trained` ({id: label}) and validated on `validation` (ids). TrainingError when no
    label changed since (nothing to learn). `strata`: each example's (dataset, label) key."""
    val = sorted(set(validation) & set(current))
    held = set(val)
    changed = changed_ids(current, trained)
    learn = [i for i in changed if i not in held]
    if not learn:
        extra = (f" ({len(changed):,} changed labels are all in its validation split, which it never trains on)"
                 if changed else "")
        raise TrainingError(f"No label changed since {start} was trained{extra}: a quick retrain would have nothing "
                            "to learn. Label or correct some examples first, or train on every label.")
    rest = sorted(set(current) - held - set(learn))
    return QuickSelection(start, tuple(learn), tuple(replay_sample(rest, strata, replay, seed)), tuple(val),
                          len(changed) - len(learn), REPEAT_CHANGED)  # the module's, read now: the bench varies it
