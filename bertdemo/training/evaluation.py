"""What a version's report shows beyond the pooled numbers: macro-F1 per dataset (the airline
tweets and the general ones are different domains, and one pooled figure hides the weaker one)
and calibration (expected calibration error and a reliability table), so people can judge the
probabilities the Predict tab shows. Plain statistics with scikit-learn; no model, no database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Evaluation:
    per_dataset: dict[str, dict]  # dataset -> {"macro_f1", "accuracy", "n"}
    ece: float  # expected calibration error of the top class (equal-width confidence bins)
    reliability: list[dict]  # per bin: {"low", "high", "n", "confidence", "accuracy"}

    def lines(self) -> str:
        """For the text report."""
        out = ["macro-F1 per dataset (validation split):"]
        out += [f"  {name:<10} {m['macro_f1']:.4f}  (accuracy {m['accuracy']:.4f}, n={m['n']:,})"
                for name, m in self.per_dataset.items()]
        out.append(f"calibration: expected calibration error {self.ece:.4f} ({CALIBRATION_BINS} confidence bins)")
        return "\n".join(out)


def evaluate(probs: np.ndarray, y: Sequence[int], groups: Sequence[str | None], labels: Sequence[str],
             bins: int = CALIBRATION_BINS) -> Evaluation:
    """`probs` (N, classes) predicted probabilities; `y` true class ids; `groups` each example's
    dataset (None counts as "other")."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    pred = probs.argmax(axis=1)
    names = np.asarray([g or "other" for g in groups])
    per: dict[str, dict] = {}
    for name in sorted(set(names.tolist())):
        m = names == name
        per[name] = {"macro_f1": round(float(f1_score(y[m], pred[m], labels=list(range(len(labels))),
                                                       average="macro", zero_division=0)), 4),
                     "accuracy": round(float((y[m] == pred[m]).mean()), 4), "n": int(m.sum())}
    conf = probs.max(axis=1)
    correct = (pred == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if not m.any():
            table.append({"low": round(lo, 2), "high": round(hi, 2), "n": 0, "confidence": None, "accuracy": None})
            continue
        c, a = float(conf[m].mean()), float(correct[m].mean())
        ece += m.mean() * abs(c - a)
        table.append({"low": round(lo, 2), "high": round(hi, 2), "n": int(m.sum()), "confidence": round(c, 4),
                      "accuracy": round(a, 4)})
    return Evaluation(per, round(float(ece), 4), table)
