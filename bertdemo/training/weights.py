"""Each training example's weight in the loss: the crowd's confidence in its label
(TrainConfig.confidence_weighted) times a factor for the auxiliary general tweets
(TrainConfig.general_weight). The runner and bench/recipes.py both take them from here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def example_weights(confidence: Sequence[float | None], datasets: Sequence[str | None], labels: Sequence[int],
                    general_weight: float = 1.0, keep_class_shares: bool = True) -> np.ndarray:
    """One weight per example. `confidence` is the crowd's agreement on each label (None: a label a
    person set, or an import without the figure: 1). With keep_class_shares the confidences are
    divided by their mean within each (dataset, label), so that a class whose crowd agreed less (the
    airline tweets' neutral: 0.82 against 0.93 for negative) keeps its share of the loss: the
    uncertain labels of a class count less than its sure ones, but the class does not count less
    than it did unweighted, which would shift the model's prior away from it."""
    conf = np.array([1.0 if c is None else float(c) for c in confidence], dtype=np.float64)
    groups = np.array(["" if d is None else d for d in datasets], dtype=object)
    y = np.asarray(labels)
    if not (len(conf) == len(groups) == len(y)):
        raise ValueError("one confidence, dataset and label per example")
    if keep_class_shares:
        for g in set(groups.tolist()):
            for c in np.unique(y):
                cell = (groups == g) & (y == c)
                if cell.any():
                    conf[cell] /= conf[cell].mean()
    return (conf * np.where(groups == "general", general_weight, 1.0)).astype(np.float32)
