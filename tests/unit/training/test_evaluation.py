"""Macro-F1 per dataset and calibration (expected calibration error, reliability bins)."""

from __future__ import annotations

import numpy as np

from bertdemo.training.evaluation import evaluate

LABELS = ("negative", "neutral", "positive")


def test_per_dataset_macro_f1_scores_each_domain_on_its_own():
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 2, 1, 1, 1]] * 0.9 + 0.1 / 3  # perfect on "a", half wrong on "b"
    ev = evaluate(probs, y, ["a", "a", "a", "b", "b", "b"], LABELS)
    assert ev.per_dataset["a"] == {"macro_f1": 1.0, "accuracy": 1.0, "n": 3}
    assert ev.per_dataset["b"]["accuracy"] == round(1 / 3, 4) and ev.per_dataset["b"]["macro_f1"] < 0.5
    assert "a " in ev.lines() and "expected calibration error" in ev.lines()


def test_a_calibrated_model_has_a_small_ece_and_an_overconfident_one_a_large_one():
    rng = np.random.default_rng(0)
    n = 20_000
    conf = rng.uniform(0.5, 1.0, n)  # the top class's probability
    y = np.zeros(n, dtype=int)
    right = rng.uniform(size=n) < conf  # right exactly as often as it claims
    pred = np.where(right, 0, 1)
    probs = np.zeros((n, 3))
    probs[np.arange(n), pred] = conf
    probs[np.arange(n), 2 - (pred == 2)] += 1 - conf  # the rest on another class
    ev = evaluate(probs, y, [None] * n, LABELS)
    assert ev.ece < 0.02 and sum(b["n"] for b in ev.reliability) == n
    over = probs.copy()
    over[np.arange(n), pred] = 0.99
    assert evaluate(over, y, [None] * n, LABELS).ece > 0.15
    assert set(evaluate(probs, y, [None] * n, LABELS).per_dataset) == {"other"}
