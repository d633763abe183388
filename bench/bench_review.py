"""The version review's statistics at the corpus's size: the paired bootstrap of macro-F1 (1,000
rounds), the per-slice review and the flips, against the obvious baseline (resampling example
indices and calling scikit-learn's f1_score for each version in every round).

    python bench/bench_review.py [--n 27166] [--rounds 1000] [--baseline-rounds 100]

The baseline runs fewer rounds (it is slow) and its time is scaled to --rounds; the table prints
both times and their ratio, with the CPU model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import cpu_model  # noqa: E402

from bertdemo.training.review import flips, paired_bootstrap, review, slice_masks  # noqa: E402

LABELS = ("negative", "neutral", "positive")


def synthetic(n: int, seed: int = 0):
    """Gold labels, two versions' probabilities (B right a little more often), texts and datasets."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.63, 0.21, 0.16])

    def version(right: float) -> np.ndarray:
        pred = np.where(rng.random(n) < right, y, rng.integers(0, 3, n))
        probs = rng.dirichlet(np.ones(3), n) * 0.4
        probs[np.arange(n), pred] += 0.6
        return probs / probs.sum(1, keepdims=True)

    words = ["great", "flight", "@united", "delayed", "http://t.co/x", "#travel", "bag", "lost", "crew"]
    texts = [" ".join(rng.choice(words, rng.integers(3, 30))) for _ in range(n)]
    datasets = np.where(rng.random(n) < 0.54, "airline", "general").tolist()
    sources = np.where(rng.random(n) < 0.03, "corrected", "crowd").tolist()
    return y, version(0.80), version(0.82), texts, datasets, sources


def baseline(y: np.ndarray, a: np.ndarray, b: np.ndarray, rounds: int) -> None:
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        f1_score(y[idx], a[idx], average="macro", labels=[0, 1, 2], zero_division=0)
        f1_score(y[idx], b[idx], average="macro", labels=[0, 1, 2], zero_division=0)


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=27_166, help="examples compared (the bundled corpus: 27,166)")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--baseline-rounds", type=int, default=100, help="rounds the slow baseline actually runs")
    args = parser.parse_args()
    y, pa, pb, texts, datasets, sources = synthetic(args.n)
    a, b = pa.argmax(1), pb.argmax(1)
    ours = timed(lambda: paired_bootstrap(y, a, b, n_boot=args.rounds))
    base = timed(lambda: baseline(y, a, b, args.baseline_rounds)) * args.rounds / args.baseline_rounds
    masks_s = timed(lambda: slice_masks(texts, datasets, sources))
    masks = slice_masks(texts, datasets, sources)
    review_s = timed(lambda: review(y, pa, pb, masks, LABELS, n_boot=args.rounds))
    flips_s = timed(lambda: flips(list(range(args.n)), y, pa, pb, LABELS))
    cpu = cpu_model()
    print(f"| step ({args.n:,} examples, {len(masks)} slices) | ours (s) | baseline (s) | ratio | CPU |")
    print("|---|---|---|---|---|")
    print(f"| paired bootstrap, {args.rounds} rounds | {ours:.3f} | {base:.2f} | {base / max(ours, 1e-9):.0f}x | {cpu} |")
    print(f"| slice masks | {masks_s:.3f} | | | {cpu} |")
    print(f"| review, every slice | {review_s:.3f} | | | {cpu} |")
    print(f"| flips | {flips_s:.3f} | | | {cpu} |")


if __name__ == "__main__":
    main()
