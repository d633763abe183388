"""The leave-one-topic-out protocol (issue 23): how a recipe does on tweets about a topic it never saw.

Every fold trains on all topics but one and is scored on the one left out; a fixed share of the
in-domain topic (the airline tweets, the annotation target) is held out of every fold's training
so the same recipe also gets an in-domain figure. bench/ood.py runs recipes through it; the tests
check that no topic leaks into its own training set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.metrics import f1_score

from bertdemo.datasets import stratified_split
from bertdemo.training.config import TrainConfig


@dataclass(frozen=True)
class Fold:
    """Row indices of one fold: `train` and `val` (a small slice for the loop's evaluation) never
    hold a row of `topic` or of the in-domain hold-out; `test` is the left-out topic's rows (at most
    test_cap of them, stratified); `in_domain` the in-domain hold-out (empty when the left-out topic
    is the in-domain one, whose whole set is then the test)."""

    topic: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    in_domain: np.ndarray


def _sample(idx: np.ndarray, strata: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """About n of `idx`, drawn without replacement, each stratum in proportion to its size (largest
    remainders), every stratum keeping at least one row when n allows; sorted."""
    if n >= len(idx):
        return np.sort(idx)
    keys, counts = np.unique(strata[idx], return_counts=True)
    exact = counts * n / len(idx)
    take = np.maximum(np.floor(exact).astype(int), np.minimum(1, counts))
    for k in np.argsort(-(exact - np.floor(exact))):
        if take.sum() >= n:
            break
        if take[k] < counts[k]:
            take[k] += 1
    picked = [rng.choice(idx[strata[idx] == key], size=t, replace=False) for key, t in zip(keys, take)]
    return np.sort(np.concatenate(picked))


def topic_folds(topics: Sequence[str], labels: Sequence[int], in_domain_topic: str = "airline",
                in_domain_fraction: float = 0.1, seed: int = 42, budget: int | None = None,
                test_cap: int | None = None, val_size: int = 256) -> list[Fold]:
    """One fold per topic, in order of first appearance. `budget`: each fold trains on at most this
    many rows, drawn stratified by (topic, label) from its pool with `seed`, so every recipe and
    seed of a run trains on the same rows; None: the whole pool."""
    topics_a, y = np.asarray(topics, dtype=object), np.asarray(labels)
    if len(topics_a) != len(y):
        raise ValueError("one topic per label")
    rng = np.random.default_rng(seed)
    strata = np.array([f"{t}\x1f{c}" for t, c in zip(topics_a, y)], dtype=object)
    held_out = np.zeros(len(y), dtype=bool)
    home = np.flatnonzero(topics_a == in_domain_topic)
    if len(home):
        _tr, va = stratified_split(y[home], in_domain_fraction, seed)
        held_out[home[va]] = True
    folds = []
    for topic in dict.fromkeys(topics_a.tolist()):
        pool = np.flatnonzero((topics_a != topic) & ~held_out)
        val = _sample(pool, strata, min(val_size, len(pool) // 10), rng)
        rest = np.setdiff1d(pool, val)
        train = rest if budget is None else _sample(rest, strata, budget, rng)
        test = np.flatnonzero(topics_a == topic)
        if test_cap is not None:
            test = _sample(test, strata, test_cap, rng)
        in_domain = np.flatnonzero(held_out) if topic != in_domain_topic else np.array([], dtype=int)
        folds.append(Fold(topic, train, val, test, in_domain))
    return folds


def macro_f1(y: Sequence[int], pred: Sequence[int], n_classes: int, balanced: bool = False) -> float:
    """Macro-F1 over the n classes (a class absent from both counts 0, as sklearn's zero_division=0).
    balanced: each example weighs 1 / (its class's count), so every class present weighs the same,
    as if the test set's class shares were equal (a visitor's sentences are not 63% complaints)."""
    y_a, p_a = np.asarray(y), np.asarray(pred)
    weights = None
    if balanced:
        counts = np.bincount(y_a, minlength=n_classes)
        weights = 1.0 / counts[y_a]
    present = sorted(set(y_a.tolist()))
    return float(f1_score(y_a, p_a, labels=present, average="macro", sample_weight=weights, zero_division=0))


# ------------------------------------------------------------------ what bench/ood.py measured
@dataclass(frozen=True)
class RecipeFigures:
    """A recipe's figures under the protocol (bench/README.md, "Out of domain"): macro-F1 on each
    left-out topic, averaged over seeds; their mean (± the sd of the seeds' means) and worst; the
    mean with every test class weighted equally; the in-domain airline hold-out."""

    ood_mean: float
    ood_sd: float
    worst: float
    worst_topic: str
    balanced: float
    in_domain: float
    seeds: int
    budget: int  # training rows per fold
    measured: str  # date

    def line(self) -> str:
        return (f"out of domain (this recipe, bench/ood.py: leave one of 5 topics out, {self.seeds} seeds, "
                f"{self.budget:,} training tweets per fold, {self.measured}): macro-F1 {self.ood_mean:.3f} ± "
                f"{self.ood_sd:.3f} on the topic left out, worst {self.worst:.3f} ({self.worst_topic}), "
                f"{self.balanced:.3f} with classes weighted equally; in-domain airline {self.in_domain:.3f}")


# options that change how a run goes but not what it learns
_NOT_RECIPE = {"seed": 42, "evals_per_epoch": 4, "max_steps": None, "precision": "auto", "val_fraction": 0.1}
# bench/README.md "Out of domain" (`python bench/ood.py --recipes default la1 --seeds 1 2 3`, 2026-12-04)
MEASURED: dict[TrainConfig, RecipeFigures] = {
    replace(TrainConfig(), **_NOT_RECIPE): RecipeFigures(  # the default since issue 23 (recipe "la1")
        0.559, 0.004, 0.459, "claritin", 0.642, 0.766, seeds=3, budget=3000, measured="2026-12-04"),
    replace(TrainConfig(logit_adjustment=0.0), **_NOT_RECIPE): RecipeFigures(  # the default before it
        0.527, 0.000, 0.437, "coachella_2015", 0.619, 0.764, seeds=3, budget=3000, measured="2026-12-04"),
}


def _key(config: TrainConfig) -> TrainConfig:
    return replace(config, **_NOT_RECIPE)


def recipe_line(config: TrainConfig) -> str:
    """The report's line on how the run's recipe does on topics it never saw: the measured figures,
    or that they were not measured (a run from the active version, other options)."""
    found = MEASURED.get(_key(config)) if config.init_from == "base" else None
    if found:
        return found.line()
    return "out of domain: this recipe was not measured (bench/ood.py measures a recipe on topics it never saw)"
