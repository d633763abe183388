"""Query strategies: which examples a model is least sure of, from its class probabilities. The
Annotate tab's "Most uncertain (entropy)" and "Breaking ties (smallest margin)" queues rank with
these, over a version's stored scores or the quick model's probabilities (Schröder et al.,
arXiv 2107.05687, and small-text: for transformers breaking ties often beats entropy).
Plain numpy: no database, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

STRATEGIES = ("entropy", "margin")


def entropy(probs: np.ndarray) -> np.ndarray:
    """(N,) prediction entropy in nats of (N, C) probabilities: highest for a uniform row."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """(N,) the top class's probability minus the runner-up's: 0 when the two tie (breaking ties
    asks about the smallest first)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] < 2:
        return np.ones(len(p))
    top2 = np.partition(p, -2, axis=1)[:, -2:]  # (N, 2): runner-up, top
    return top2[:, 1] - top2[:, 0]


def rank(ids: Sequence[int], probs: np.ndarray, strategy: str) -> list[int]:
    """`ids` (parallel to the rows of `probs`) most informative first: highest entropy, or smallest
    margin; ties by id, so an order never depends on the storage's."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    ids_arr = np.asarray(ids, dtype=np.int64)
    if not len(ids_arr):
        return []
    key = -entropy(probs) if strategy == "entropy" else margin(probs)
    # rounding: float noise between two equal rows must not beat the id order
    order = np.lexsort((ids_arr, np.round(key, 9)))
    return [int(i) for i in ids_arr[order]]


def disagreements(ids: Sequence[int], probs: np.ndarray, labels: Sequence[str],
                  current: Mapping[int, str]) -> list[int]:
    """Of `ids`, those whose label (`current`: {id: label}) is not the model's top class, the most
    confident model first, ties by id: "Model disagrees with the label"."""
    p = np.asarray(probs, dtype=np.float64)
    if not len(p):
        return []
    top = p.argmax(axis=1)
    conf = p.max(axis=1)
    rows = [n for n, i in enumerate(ids) if (lab := current.get(int(i))) is not None and lab != labels[top[n]]]
    rows.sort(key=lambda n: (-round(float(conf[n]), 9), int(ids[n])))
    return [int(ids[n]) for n in rows]
