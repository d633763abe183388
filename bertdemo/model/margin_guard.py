"""The margin guard of the int8 path: texts whose int8 top-two logit gap is under it are re-scored
by the fp32 model. Its arithmetic on two sets of logits for the same texts (fp32's and int8's): each
text's top-two gap, by how much int8 overstated its top class's lead, the guard fitted on a version's
gate set, the logits the guarded path serves, and the cross-fitted version of those the gate measures
(each half under the guard fitted on the other half)."""

from __future__ import annotations

import numpy as np

# texts whose int8 top-two logit gap is under the guard are re-scored by the fp32 PyTorch model. The
# guard is fitted per version on its gate set (`fit_guard`): a fixed one is not scale-free (measured
# 2026-12-04: a fully trained version's int8 errors reach 0.44 logits, the quick version's, whose
# logistic-regression head has 300x larger weights, 2.3, a barely trained one's logits are all small).
# This is the guard of gates saved before it was fitted (their gate.json has no other).
MARGIN_GUARD = 0.3
GUARD_SAFETY = 1.1  # the fitted guard is this times the largest int8 error measured on the gate set


def top_two_gap(logits: np.ndarray) -> np.ndarray:
    """Per row: the top logit minus the runner-up's (what the guard compares)."""
    top = np.sort(logits, axis=1)
    return top[:, -1] - top[:, -2] if logits.shape[1] > 1 else np.full(len(logits), np.inf)


def overstatement(ref_logits: np.ndarray, int8_logits: np.ndarray) -> np.ndarray:
    """Per text: by how much int8 overstated its top class's lead over any other class, in logits
    (0 when it overstated none). int8's label differs from fp32's only where its top-two gap is at
    most this, so a guard above a text's overstatement re-scores that text whenever it could flip."""
    if not len(int8_logits):
        return np.zeros(0)
    rows, top = np.arange(len(int8_logits)), int8_logits.argmax(1)
    lead_q = int8_logits[rows, top][:, None] - int8_logits
    lead_ref = ref_logits[rows, top][:, None] - ref_logits
    over = lead_q - lead_ref
    over[rows, top] = 0.0
    return np.maximum(over.max(1), 0.0)


def fit_guard(ref_logits: np.ndarray, int8_logits: np.ndarray, safety: float = GUARD_SAFETY) -> float:
    """The guard for one version: `safety` times the largest overstatement on these texts. Scale-free
    by construction (a version with small logits has small errors and gets a small guard), and
    distribution-free: a new text's error exceeds the largest of n measured ones with probability
    1/(n+1), and even then flips only when its gap is also that small. No texts: MARGIN_GUARD."""
    over = overstatement(ref_logits, int8_logits)
    return round(float(safety * over.max()), 4) if len(over) else MARGIN_GUARD


def guarded(ref_logits: np.ndarray, int8_logits: np.ndarray, guard: float) -> np.ndarray:
    """What the served path returns: int8's logits, with the rows under `guard` taken from fp32."""
    out = int8_logits.copy()
    rows = top_two_gap(int8_logits) < guard
    out[rows] = ref_logits[rows]
    return out


def cross_fitted(ref_logits: np.ndarray, int8_logits: np.ndarray, safety: float = GUARD_SAFETY,
                 one: tuple[np.ndarray, np.ndarray] | None = None):
    """The served logits with each half of the set (alternate rows) under the guard fitted on the
    other half, so the gate measures the guard on texts it was not fitted on. `one`: (row indices,
    their logits scored one text at a time on the fixed-shape graphs); their errors join each half's
    fit, and the served logits of both are returned."""
    out, odd = int8_logits.copy(), np.arange(len(int8_logits)) % 2 == 1
    idx, q1 = one if one is not None else (np.zeros(0, dtype=int), int8_logits[:0])
    out1, odd1, ref1 = q1.copy(), odd[idx], ref_logits[idx]
    for this, other, this1, other1 in ((~odd, odd, ~odd1, odd1), (odd, ~odd, odd1, ~odd1)):
        guard = fit_guard(np.concatenate([ref_logits[other], ref1[other1]]),
                          np.concatenate([int8_logits[other], q1[other1]]), safety)
        out[this] = guarded(ref_logits[this], int8_logits[this], guard)
        out1[this1] = guarded(ref1[this1], q1[this1], guard)
    return out if one is None else (out, out1)
