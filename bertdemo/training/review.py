"""The review of a candidate version B against a baseline version A on the same examples, from
their stored probabilities: macro-F1 per slice with paired bootstrap intervals and ECE, the
examples whose prediction flipped, and the activation gate that decides whether B may serve
automatically. Plain numpy over arrays; no model, no database, no UI."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bertdemo.errors import BadInput
from bertdemo.text import MENTION_RE, URL_RE
from bertdemo.training.behaviour import TestResult
from bertdemo.training.evaluation import evaluate

LEVEL = 0.95  # the intervals the review shows
SEP = " / "  # "airline / has URL": the dataset, then the feature
ALL = "all"  # the pooled slice over every dataset
LENGTH_BUCKETS = ((0, 8, "length <=8 words"), (9, 20, "length 9-20 words"), (21, 10**9, "length >20 words"))
HASHTAG_RE = re.compile(r"(?<![\w&])#(?=\w*[^\W\d_])\w+")  # '&#39;' is an entity and '#1' a number
EMOJI_RE = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u231A\u231B\u23E9-\u23FA"
                      "\u2B05-\u2B07\u2B1B\u2B1C\u2B50\u2B55\u3030\u303D]")
FLIP_KINDS = ("fixed", "broken", "changed")


# ---- macro-F1 on stacks of confusion matrices --------------------------------------------------

def macro_f1(conf: np.ndarray) -> np.ndarray:
    """Macro-F1 of each confusion matrix in `conf` (R, k, k) [true, predicted] -> (R,). Every
    class counts, one with neither gold nor predicted examples as 0: sklearn's
    `f1_score(labels=range(k), average="macro", zero_division=0)`, as the version report uses."""
    tp = np.diagonal(conf, axis1=1, axis2=2).astype(np.float64)  # (R, k)
    denom = conf.sum(axis=2) + conf.sum(axis=1)  # gold + predicted per class (R, k)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(axis=1)


def accuracy(conf: np.ndarray) -> np.ndarray:
    """Accuracy of each confusion matrix in `conf` (R, k, k) -> (R,)."""
    total = conf.sum(axis=(1, 2)).astype(np.float64)
    return np.divide(np.trace(conf, axis1=1, axis2=2), total, out=np.zeros_like(total), where=total > 0)


@dataclass(frozen=True)
class Interval:
    value: float  # on all the examples
    low: float  # percentile interval of the bootstrap rounds (LEVEL)
    high: float

    def text(self) -> str:
        return f"{self.value:.3f} (95% CI {self.low:.3f} to {self.high:.3f})"

    def brief(self, signed: bool = False) -> str:
        """'0.812 (0.790 to 0.830)', or with `signed` '+0.012 (-0.004 to +0.027)': a table cell."""
        fmt = "{:+.3f}" if signed else "{:.3f}"
        return f"{fmt.format(self.value)} ({fmt.format(self.low)} to {fmt.format(self.high)})"


@dataclass(frozen=True)
class PairedBootstrap:
    """Both versions' metric and B - A, each with its interval, from the same resamples."""
    n: int
    a: Interval
    b: Interval
    diff: Interval  # B - A
    samples: np.ndarray = field(repr=False, compare=False)  # (n_boot,) B - A of each round

    def diff_high(self, alpha: float = 1 - LEVEL) -> float:
        """The upper end of the two-sided (1 - alpha) interval of B - A."""
        return float(np.quantile(self.samples, 1 - alpha / 2)) if self.samples.size else self.diff.value

    def worse(self, alpha: float = 1 - LEVEL) -> bool:
        """B is worse than A beyond the interval: all of it lies below 0."""
        return self.diff_high(alpha) < 0


def _interval(value: float, samples: np.ndarray) -> Interval:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Interval(round(float(value), 6), round(float(low), 6), round(float(high), 6))


def paired_bootstrap(y: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int],
                     metric: Callable[[np.ndarray], np.ndarray] = macro_f1, n_boot: int = 1000, seed: int = 0,
                     groups: Sequence[str] | None = None, n_classes: int | None = None) -> PairedBootstrap:
    """Paired percentile bootstrap of `metric` for predictions A and B of the gold classes `y`.

    Each round resamples the examples once (with replacement) and scores BOTH versions on that
    resample, so the interval of B - A reflects only where they differ (much narrower than two
    independent intervals). `groups` (one per example, e.g. its dataset) stratifies: each round
    resamples within each group, so the mix of groups stays fixed. `metric` maps confusion
    matrices (R, k, k) [gold, predicted] -> (R,).

    Exact and fast: a metric of confusion matrices sees a resample only through how many of its
    examples fall in each (gold, A, B) cell, k^3 = 27 cells, and for n draws with replacement
    those counts are multinomial(n, cell frequencies). So a round is one multinomial draw of 27
    counts, not n indices: the cost does not grow with n. Measured on this project's 2 shared
    CPU cores: 1000 rounds ~3 ms for 3,000 examples and for 27,000 (drawing the n indices per
    round and one np.bincount took ~0.7 s and ~3.2 s; sklearn's f1_score 2 x 1000 times ~10 s).
    """
    y, a, b = (np.asarray(v, dtype=np.int64) for v in (y, pred_a, pred_b))
    if not (y.shape == a.shape == b.shape and y.ndim == 1):
        raise BadInput(f"y, pred_a and pred_b must be 1-D and equally long; got {y.shape}, {a.shape}, {b.shape}")
    n = len(y)
    k = n_classes or int(max(y.max(initial=0), a.max(initial=0), b.max(initial=0))) + 1
    cell = (y * k + a) * k + b  # each example's (gold, A, B) cell (n,)
    counts = np.bincount(cell, minlength=k ** 3).reshape(1, k, k, k)
    value_a, value_b = float(metric(counts.sum(axis=3))[0]), float(metric(counts.sum(axis=2))[0])
    if n == 0 or n_boot <= 0:
        d = value_b - value_a
        return PairedBootstrap(n, Interval(value_a, value_a, value_a), Interval(value_b, value_b, value_b),
                               Interval(d, d, d), np.zeros(0))
    strata = [cell]
    if groups is not None:
        names = np.asarray([str(g) for g in groups])
        strata = [cell[names == g] for g in np.unique(names)]
    rng = np.random.default_rng(seed)
    draws = np.zeros((n_boot, k ** 3), dtype=np.int64)
    for part in strata:  # a stratum keeps its size in every round
        freq = np.bincount(part, minlength=k ** 3) / len(part)
        draws += rng.multinomial(len(part), freq, size=n_boot)
    draws = draws.reshape(n_boot, k, k, k)  # [round, gold, A, B]
    sa, sb = metric(draws.sum(axis=3)), metric(draws.sum(axis=2))
    return PairedBootstrap(n, _interval(value_a, sa), _interval(value_b, sb),
                           _interval(value_b - value_a, sb - sa), sb - sa)


# ---- slices -------------------------------------------------------------------------------------

def split_slice(name: str) -> tuple[str, str | None]:
    """'airline / has URL' -> ('airline', 'has URL'); 'airline' -> ('airline', None)."""
    dataset, _, feature = name.partition(SEP)
    return dataset, feature or None


def slice_masks(raw_texts: Sequence[str], datasets: Sequence[str | None],
                label_sources: Sequence[str | None]) -> dict[str, np.ndarray]:
    """Boolean masks (n,) of the review's slices: ALL, then per dataset (None counts as "other")
    the dataset itself and its length buckets (words of the raw text), has URL / @mention /
    #hashtag / emoji, crowd label (as imported) and corrected label (`label_sources` "corrected":
    changed by a person). Empty slices are left out."""
    texts = [t or "" for t in raw_texts]
    names = np.asarray([d or "other" for d in datasets])
    sources = np.asarray([s or "" for s in label_sources])
    words = np.asarray([len(t.split()) for t in texts])
    features = {lab: (words >= lo) & (words <= hi) for lo, hi, lab in LENGTH_BUCKETS}
    for lab, rx in (("has URL", URL_RE), ("has @mention", MENTION_RE), ("has #hashtag", HASHTAG_RE),
                    ("has emoji", EMOJI_RE)):
        features[lab] = np.asarray([bool(rx.search(t)) for t in texts], dtype=bool)
    features["crowd label"] = sources == "crowd"
    features["corrected label"] = sources == "corrected"
    masks = {ALL: np.ones(len(texts), dtype=bool)}
    for dataset in sorted(set(names.tolist())):
        in_set = names == dataset
        masks[dataset] = in_set
        masks.update({f"{dataset}{SEP}{lab}": in_set & m for lab, m in features.items()})
    return {name: m for name, m in masks.items() if m.any()}


@dataclass(frozen=True)
class SliceReview:
    name: str  # ALL, a dataset, or "dataset / feature"
    macro_f1: PairedBootstrap
    ece_a: float
    ece_b: float

    @property
    def is_dataset(self) -> bool:
        dataset, feature = split_slice(self.name)
        return feature is None and dataset != ALL

    def sentence(self) -> str:
        """'airline macro-F1 0.781 vs 0.823 (difference -0.042, 95% CI -0.060 to -0.025)': B vs A."""
        m = self.macro_f1
        return (f"{self.name} macro-F1 {m.b.value:.3f} vs {m.a.value:.3f} "
                f"(difference {m.diff.value:.3f}, 95% CI {m.diff.low:.3f} to {m.diff.high:.3f})")


@dataclass(frozen=True)
class Review:
    labels: tuple[str, ...]
    slices: tuple[SliceReview, ...]
    n_boot: int
    seed: int

    def slice(self, name: str) -> SliceReview:
        for s in self.slices:
            if s.name == name:
                return s
        raise KeyError(name)

    def worse_slices(self, alpha: float = 1 - LEVEL) -> list[SliceReview]:
        """The slices where B's macro-F1 is below A's beyond the (1 - alpha) paired interval."""
        return [s for s in self.slices if s.macro_f1.worse(alpha)]

    def rows(self) -> list[dict]:
        """One plain dict per slice, for a table."""
        return [{"slice": s.name, "n": s.macro_f1.n, "A": s.macro_f1.a.text(), "B": s.macro_f1.b.text(),
                 "B - A": s.macro_f1.diff.text(), "ECE A": s.ece_a, "ECE B": s.ece_b} for s in self.slices]


def _probs(p: np.ndarray, n: int, k: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n, k):
        raise BadInput(f"probabilities must have shape ({n}, {k}); got {p.shape}")
    return p


def review(y: Sequence[int], probs_a: np.ndarray, probs_b: np.ndarray, masks: dict[str, np.ndarray],
           labels: Sequence[str], n_boot: int = 1000, seed: int = 0) -> Review:
    """Macro-F1 of A and B with paired bootstrap intervals, and both ECEs, on every slice of
    `masks` (from slice_masks). `y` gold class ids (n,); `probs_*` (n, len(labels)). Every slice
    uses the same seed, so its figures do not depend on which other slices are reviewed.
    Measured on 2 shared CPU cores, 17 slices, 1000 rounds: ~0.13 s over 3,000 examples, ~0.24 s
    over 27,166 (most of it the ECE of bertdemo.training.evaluation)."""
    y = np.asarray(y, dtype=np.int64)
    k = len(labels)
    pa, pb = _probs(probs_a, len(y), k), _probs(probs_b, len(y), k)
    pred_a, pred_b = pa.argmax(axis=1), pb.argmax(axis=1)
    out = []
    for name, mask in masks.items():
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            continue
        boot = paired_bootstrap(y[m], pred_a[m], pred_b[m], n_boot=n_boot, seed=seed, n_classes=k)
        nones = [None] * int(m.sum())
        out.append(SliceReview(name, boot, evaluate(pa[m], y[m], nones, labels).ece,
                               evaluate(pb[m], y[m], nones, labels).ece))
    return Review(tuple(labels), tuple(out), n_boot, seed)


# ---- flips --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlipRow:
    id: object
    gold: str | None  # None: the example has no label
    a_label: str
    a_probs: tuple[float, ...]
    b_label: str
    b_probs: tuple[float, ...]
    kind: str  # "fixed" (B right, A wrong), "broken" (A right, B wrong) or "changed"


@dataclass(frozen=True)
class Flips:
    """The examples whose predicted label differs between A and B. `total`, `transitions` and
    `kinds` count ALL of them; `rows` holds at most the requested number."""
    n: int  # examples compared
    total: int
    transitions: dict[str, int]  # "negative -> neutral" -> count, A's label first
    kinds: dict[str, int]  # "fixed" / "broken" / "changed" -> count
    rows: tuple[FlipRow, ...]  # the largest probability shifts first

    def of_kind(self, kind: str) -> list[FlipRow]:
        return [r for r in self.rows if r.kind == kind]

    def summary(self) -> str:
        shown = f" (showing {len(self.rows):,})" if len(self.rows) < self.total else ""
        return f"{self.total:,} of {self.n:,} examples changed prediction{shown}"


def flips(ids: Sequence, y: Sequence[int | None], probs_a: np.ndarray, probs_b: np.ndarray,
          labels: Sequence[str], kind: str | None = None, limit: int = 200) -> Flips:
    """The flips between A and B. `y` gold class ids, None or -1 where unlabelled; `kind`
    keeps only "fixed", "broken" or "changed" rows (the counts stay totals); `limit` caps rows."""
    if kind is not None and kind not in FLIP_KINDS:
        raise BadInput(f"kind must be one of {', '.join(FLIP_KINDS)}; got {kind!r}")
    k = len(labels)
    gold = np.asarray([-1 if v is None else int(v) for v in y], dtype=np.int64)
    pa, pb = _probs(probs_a, len(gold), k), _probs(probs_b, len(gold), k)
    a, b = pa.argmax(axis=1), pb.argmax(axis=1)
    changed = np.flatnonzero(a != b)
    kinds = np.full(len(gold), "changed", dtype=object)
    kinds[(b == gold) & (a != gold)] = "fixed"
    kinds[(a == gold) & (b != gold)] = "broken"
    pair, counts = np.unique(a[changed] * k + b[changed], return_counts=True)
    transitions = {f"{labels[p // k]} -> {labels[p % k]}": int(c) for p, c in zip(pair, counts)}
    kind_counts = {name: int((kinds[changed] == name).sum()) for name in FLIP_KINDS}
    pick = changed if kind is None else changed[kinds[changed] == kind]
    shift = np.abs(pb[pick] - pa[pick]).sum(axis=1)
    pick = pick[np.argsort(-shift, kind="stable")][:max(0, limit)]
    ids = list(ids)
    rows = tuple(FlipRow(ids[i], labels[gold[i]] if gold[i] >= 0 else None, labels[a[i]],
                         tuple(round(float(x), 4) for x in pa[i]), labels[b[i]],
                         tuple(round(float(x), 4) for x in pb[i]), str(kinds[i])) for i in pick)
    return Flips(len(gold), len(changed), transitions, kind_counts, rows)


# ---- the activation gate ------------------------------------------------------------------------

@dataclass(frozen=True)
class GateResult:
    passed: bool
    failed: tuple[str, ...]  # one readable sentence per failing check
    checked: tuple[str, ...]  # what was checked, e.g. ("datasets", "behaviour", "int8")

    def text(self) -> str:
        if self.passed:
            return "gate passed: " + ", ".join(self.checked)
        return "gate failed: " + "; ".join(self.failed)


def gate(review: Review | None, must_pass_failures: Sequence[TestResult], int8_ok: bool | None,
         alpha: float = 1 - LEVEL) -> GateResult:
    """Whether B may serve automatically: no dataset slice worse than A beyond the paired
    interval, no must-pass behaviour test failing, and the int8 gate passed. `review` None:
    nothing is active yet (the first version), so there is no baseline to compare with;
    `int8_ok` None: the path that will serve is not int8, so that gate does not apply."""
    failed: list[str] = []
    checked: list[str] = []
    if review is not None:
        checked.append("datasets")
        failed += [s.sentence() for s in review.worse_slices(alpha) if s.is_dataset]
    checked.append("behaviour tests")
    failed += [r.sentence() for r in must_pass_failures]
    if int8_ok is not None:
        checked.append("int8")
        if not int8_ok:
            failed.append("the int8 gate failed: the int8 build does not match PyTorch on the serving path")
    return GateResult(not failed, tuple(failed), tuple(checked))
