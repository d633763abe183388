"""Query strategies: which examples a model is least sure of, from its class probabilities. The
Annotate tab's "Most uncertain (entropy)" and "Breaking ties (smallest margin)" queues rank with
these, over a version's stored scores or the quick model's probabilities (Schröder et al.,
arXiv 2107.05687, and small-text: for transformers breaking ties often beats entropy).
"Diverse uncertain (BADGE)" also needs the sentence embeddings: it picks a batch that is both
uncertain and spread out (Ash et al., ICLR 2020), so the next k labels do not all ask the same
question. Plain numpy (threadpoolctl for BLAS threads): no database, no network. bench/al_sim.py
measures them against each other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

STRATEGIES = ("entropy", "margin")
BADGE_BATCH = 50  # items one BADGE batch picks (the bench's round of labels)
BADGE_POOL = 2000  # the candidates k-means++ runs over: the smallest margins (the whole corpus costs ~1 s)


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
    return ids_arr[rank_rows(ids_arr, probs, strategy)].tolist()


def rank_rows(ids: np.ndarray, probs: np.ndarray, strategy: str) -> np.ndarray:
    """The rows of `probs` in `rank`'s order (the positions, not the ids)."""
    key = -entropy(probs) if strategy == "entropy" else margin(probs)
    # rounding: float noise between two equal rows must not beat the id order
    return np.lexsort((np.asarray(ids, dtype=np.int64), np.round(key, 9)))


def disagreements(ids: Sequence[int], probs: np.ndarray, labels: Sequence[str],
                  current: Mapping[int, str]) -> list[int]:
    """Of `ids`, those whose label (`current`: {id: label}) is not the model's top class, the most
    confident model first, ties by id: "Model disagrees with the label"."""
    code = {lab: k for k, lab in enumerate(labels)}
    labelled = np.asarray(sorted(current), dtype=np.int64)
    classes = np.asarray([code.get(current[i], -1) for i in labelled.tolist()], dtype=np.int64)
    return disagreeing(ids, probs, labelled, classes).tolist()


def disagreeing(ids: Sequence[int] | np.ndarray, probs: np.ndarray, labelled: np.ndarray,
                classes: np.ndarray) -> np.ndarray:
    """`disagreements` in bulk: `labelled` (ascending ids) and `classes` (each one's label as a
    column of `probs`, -1 for none of them) are parallel arrays. One binary search per row and a
    sort of the disagreeing rows (~30 ms for 300k rows; the Python loop over a dict took ~0.5 s)."""
    ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    p = np.asarray(probs)
    if not len(ids_arr) or not len(labelled):
        return np.zeros(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(labelled, ids_arr), len(labelled) - 1)
    has = labelled[at] == ids_arr
    rows = np.flatnonzero(has)
    rows = rows[classes[at[rows]] != p[rows].argmax(axis=1)]
    conf = np.round(p[rows].max(axis=1).astype(np.float64), 9)  # float noise between equal rows: the id decides
    return ids_arr[rows[np.lexsort((ids_arr[rows], -conf))]]


def gradient_embeddings(probs: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(N, C*d) BADGE's gradient embeddings: the gradient of the cross-entropy with respect to a
    linear head's weights had the predicted class been the label, (onehot(argmax p) - p) outer x.
    Its length is |onehot - p| * |x|: near 0 for a confident row, largest for a tie."""
    p = np.asarray(probs, dtype=np.float32)
    x = np.asarray(vectors, dtype=np.float32)
    g = np.eye(p.shape[1], dtype=np.float32)[p.argmax(axis=1)] - p
    return (g[:, :, None] * x[:, None, :]).reshape(len(p), -1)


def badge(ids: Sequence[int], probs: np.ndarray, vectors: np.ndarray, k: int = BADGE_BATCH,
          pool: int = BADGE_POOL, seed: int = 0) -> list[int]:
    """A batch of `k` of `ids` (rows of `probs` and of the embeddings `vectors` are parallel), in
    the order picked: k-means++ seeding over the gradient embeddings of the `pool` smallest-margin
    rows. The first is the longest gradient (the most uncertain, weighted by its vector's length),
    each next one drawn with probability proportional to its squared distance to the nearest one
    picked, so near-duplicates of a picked item are (almost) never picked. That weight is capped at
    the row's own squared gradient length: a sure row's gradient is ~0, at the origin, far from
    every pick, and plain k-means++ would draw it for that (BADGE's known weak spot when sure rows
    are among the candidates). `seed` fixes the draws: the same fit gives the same batch."""
    from threadpoolctl import threadpool_limits

    ids_arr = np.asarray(ids, dtype=np.int64)
    if not len(ids_arr) or k <= 0:
        return []
    # one BLAS thread: 50 small matrix-vector products; two threads on two shared cores spin against
    # each other (0.1 s against 0.4-1.0 s for 27k examples, as in training/quick.py)
    with threadpool_limits(1):
        return _kmeans_pp(ids_arr, probs, vectors, k, pool, seed)


def _kmeans_pp(ids_arr: np.ndarray, probs: np.ndarray, vectors: np.ndarray, k: int, pool: int,
               seed: int) -> list[int]:
    """badge's draws (see there)."""
    candidates = np.asarray(rank(np.arange(len(ids_arr)), probs, "margin")[:pool], dtype=np.int64)
    g = gradient_embeddings(np.asarray(probs)[candidates], np.asarray(vectors)[candidates])
    rng = np.random.default_rng(seed)
    sq = np.einsum("ij,ij->i", g, g)
    first = int(np.argmax(np.round(sq, 9)))  # rounding: float noise between equal rows, the first row wins
    picked = [first]
    # squared distance to the nearest pick, capped at the row's own squared gradient length
    nearest = np.minimum(np.maximum(sq + sq[first] - 2.0 * (g @ g[first]), 0.0), sq)
    nearest[first] = 0.0
    while len(picked) < min(k, len(candidates)):
        total = float(nearest.sum())
        if total <= 1e-12:  # what is left duplicates the picks: take the rest by margin
            chosen = set(picked)
            rest = [n for n in range(len(candidates)) if n not in chosen]
            picked += rest[:k - len(picked)]
            break
        n = int(rng.choice(len(candidates), p=nearest / total))
        picked.append(n)
        nearest = np.minimum(nearest, np.maximum(sq + sq[n] - 2.0 * (g @ g[n]), 0.0))
        nearest[n] = 0.0
    return [int(ids_arr[candidates[n]]) for n in picked]


def badge_rank(ids: Sequence[int], probs: np.ndarray, vectors: np.ndarray, k: int = BADGE_BATCH,
               pool: int = BADGE_POOL, seed: int = 0) -> list[int]:
    """Every id: the BADGE batch of `k` first, then the rest by smallest margin (the queue once
    the batch is done, until the next fit picks a new batch)."""
    batch = badge(ids, probs, vectors, k, pool, seed)
    taken = set(batch)
    return batch + [i for i in rank(ids, probs, "margin") if i not in taken]
