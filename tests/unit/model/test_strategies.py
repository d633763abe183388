"""Query strategies (model/strategies.py) on tiny cases whose order is known: entropy, breaking
ties, and the diverse BADGE batch (two tight clusters of uncertain examples: the batch takes one
from each; a certain example is never picked first)."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.model import strategies

TIE = [0.45, 0.5, 0.05]  # margin 0.05
CERTAIN = [0.98, 0.01, 0.01]  # margin 0.97


def two_clusters(noise: float = 1e-3, seed: int = 0) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Ids 0-4 around (1, 0) and 5-9 around (0, 1), all as uncertain (example 7 a little more: it
    is first), and id 10 certain, with the longest vector."""
    rng = np.random.default_rng(seed)
    vecs = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5 + [[3.0, 3.0]]) + rng.normal(0, noise, (11, 2))
    probs = np.array([TIE] * 10 + [CERTAIN])
    probs[7] = [0.4, 0.42, 0.18]  # margin 0.02: the longest gradient
    return list(range(11)), probs, vecs


def test_entropy_and_breaking_ties_order_a_known_case():
    probs = np.array([[0.5, 0.4, 0.1],     # margin 0.10
                      [0.34, 0.33, 0.33],  # margin 0.01, the highest entropy
                      [0.9, 0.05, 0.05],   # margin 0.85, the lowest entropy
                      [0.45, 0.1, 0.45]])  # margin 0.00: a tie
    assert strategies.rank([10, 11, 12, 13], probs, "margin") == [13, 11, 10, 12]
    assert strategies.rank([10, 11, 12, 13], probs, "entropy") == [11, 13, 10, 12]
    assert strategies.rank([], np.zeros((0, 3)), "margin") == []
    with pytest.raises(ValueError, match="strategy must be one of"):
        strategies.rank([1], probs[:1], "badge")
    same = np.array([[0.5, 0.5, 0.0]] * 3)
    assert strategies.rank([30, 10, 20], same, "margin") == [10, 20, 30]  # ties by id


def test_gradient_embeddings_are_zero_for_a_sure_prediction_and_longest_for_a_tie():
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    g = strategies.gradient_embeddings(probs, np.array([[3.0, 4.0], [3.0, 4.0]]))
    assert g.shape == (2, 6)
    assert np.allclose(g[0], 0)
    # (onehot(argmax) - p) outer x: (0.5, -0.5, 0) outer (3, 4)
    assert np.allclose(g[1], [1.5, 2.0, -1.5, -2.0, 0.0, 0.0])


@pytest.mark.parametrize("seed", range(20))
def test_the_diverse_batch_takes_one_from_each_cluster_and_never_the_certain_one_first(seed):
    ids, probs, vecs = two_clusters(seed=seed)
    batch = strategies.badge(ids, probs, vecs, k=2, pool=10, seed=seed)
    assert batch[0] == 7  # the longest gradient: the most uncertain, not the certain example's long vector
    assert batch[1] in range(5)  # the other cluster: a near-duplicate of 7 is (almost) never drawn
    # the whole pool: the certain example may be drawn later (BADGE's k-means++), but never first
    assert strategies.badge(ids, probs, vecs, k=1, pool=11, seed=seed) == [7]
    # entropy and breaking ties ask about cluster 5-9 twice in a row
    assert set(strategies.rank(ids, probs, "margin")[:2]) <= set(range(5, 10)) | {0}


def test_the_diverse_batch_is_the_same_for_the_same_fit_and_covers_the_candidates():
    ids, probs, vecs = two_clusters()
    assert strategies.badge(ids, probs, vecs, k=4, pool=10) == strategies.badge(ids, probs, vecs, k=4, pool=10)
    everything = strategies.badge(ids, probs, vecs, k=50, pool=10)
    assert sorted(everything) == list(range(10))  # only the 10 smallest margins are candidates
    assert strategies.badge([], np.zeros((0, 3)), np.zeros((0, 2)), k=5) == []


def test_duplicates_left_after_the_batch_come_by_margin():
    probs = np.array([[0.5, 0.45, 0.05]] * 3 + [[0.6, 0.3, 0.1]])
    vecs = np.ones((4, 2))
    # all four gradients point the same way up to their length: after the longest, 3 and the
    # duplicates of 0 are drawn by distance; exact duplicates of a pick have weight 0
    batch = strategies.badge([0, 1, 2, 3], probs, vecs, k=4, pool=4)
    assert batch[0] == 0 and sorted(batch) == [0, 1, 2, 3] and batch[1] == 3


def test_badge_rank_puts_the_batch_first_then_the_rest_by_margin():
    ids, probs, vecs = two_clusters()
    ranked = strategies.badge_rank(ids, probs, vecs, k=2, pool=10)
    assert ranked[:2] == strategies.badge(ids, probs, vecs, k=2, pool=10)
    assert sorted(ranked) == ids and ranked[-1] == 10  # the certain one last
    rest = [i for i in strategies.rank(ids, probs, "margin") if i not in ranked[:2]]
    assert ranked[2:] == rest


def _disagreements_by_hand(ids, probs, labels, current):
    """The definition, one row at a time: labelled, top class not the label, most confident first, ties by id."""
    rows = [n for n, i in enumerate(ids) if i in current and current[i] != labels[int(np.argmax(probs[n]))]]
    return [ids[n] for n in sorted(rows, key=lambda n: (-round(float(np.max(probs[n])), 9), ids[n]))]


@pytest.mark.parametrize("seed", range(5))
def test_disagreements_in_bulk_are_the_definition(seed):
    rng = np.random.default_rng(seed)
    labels = ("negative", "neutral", "positive")
    ids = rng.permutation(np.arange(1, 400) * 3).tolist()  # unsorted, with gaps
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=len(ids)).astype(np.float32)
    probs[5] = probs[9]  # equal confidence: the smaller id first
    # labels of ids the model never scored, and one label outside the app's (it disagrees with any prediction)
    current = {i: labels[int(rng.integers(3))] for i in ids[::2] + [7, 11]}
    current[ids[4]] = "sarcasm"
    want = _disagreements_by_hand(ids, probs, labels, current)
    assert strategies.disagreements(ids, probs, labels, current) == want
    code = {lab: k for k, lab in enumerate(labels)}
    labelled = np.asarray(sorted(current), dtype=np.int64)
    classes = np.asarray([code.get(current[i], -1) for i in labelled.tolist()])
    assert strategies.disagreeing(np.asarray(ids), probs, labelled, classes).tolist() == want
    assert ids[4] in want


def test_disagreements_of_nothing():
    empty = np.zeros(0, dtype=np.int64)
    assert strategies.disagreeing([1, 2], np.array([[0.9, 0.1], [0.2, 0.8]]), empty, empty).tolist() == []
    assert strategies.disagreements([], np.zeros((0, 2)), ("a", "b"), {1: "a"}) == []
