"""training/weights.py: each training example's loss weight."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.training.weights import example_weights

CONF = [1.0, 0.5, None, 0.8, 0.4, 1.0]
DATASETS = ["airline", "airline", "airline", "general", "general", None]
LABELS = [0, 0, 1, 1, 1, 2]


def test_confidence_times_the_general_tweets_factor():
    w = example_weights(CONF, DATASETS, LABELS, general_weight=0.5, keep_class_shares=False)
    assert w.dtype == np.float32
    assert list(w) == pytest.approx([1.0, 0.5, 1.0, 0.4, 0.2, 1.0])  # None weighs 1; only "general" is scaled


def test_kept_class_shares_leave_each_dataset_and_class_its_total_weight():
    w = example_weights(CONF, DATASETS, LABELS, general_weight=1.0, keep_class_shares=True)
    assert list(w) == pytest.approx([4 / 3, 2 / 3, 1.0, 4 / 3, 2 / 3, 1.0])
    # the sure label still counts more than the unsure one of its class, and every (dataset, class)
    # weighs what it would unweighted: its number of examples
    for d, c in {(d, c) for d, c in zip(DATASETS, LABELS)}:
        cell = [i for i in range(len(w)) if DATASETS[i] == d and LABELS[i] == c]
        assert w[cell].sum() == pytest.approx(len(cell))
    halved = example_weights(CONF, DATASETS, LABELS, general_weight=0.5, keep_class_shares=True)
    assert list(halved) == pytest.approx([4 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3, 1.0])


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="one confidence, dataset and label per example"):
        example_weights([1.0], ["airline", "airline"], [0, 1])
