"""The version review (the Train tab's review panel and /review_version): candidate B against
baseline A on B's validation split (training/comparison.review_set), as slices with bootstrap
intervals, the flips and the activation gate's verdict (training/review.py). Each version's
probabilities come from its stored scores (written when it was activated) wherever it has them,
and from its model only for the rest, so reviewing two activated versions runs no model."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import examples, versions
from bertdemo.model.classifier import Classifier
from bertdemo.training.behaviour import BehaviourTest, must_pass_failures, run_suite, starter_suite
from bertdemo.training.comparison import ReviewSet
from bertdemo.training.registry import VersionInfo
from bertdemo.training.review import FLIP_KINDS, Flips, GateResult, Review, flips, gate, review, slice_masks

Progress = Callable[[float, str], None]  # (fraction done, what runs now)
ModelOf = Callable[[VersionInfo], Classifier]
SLICE_COLUMNS = ("slice", "n", "A macro-F1 (95% CI)", "B macro-F1 (95% CI)", "B - A (95% CI)", "ECE A", "ECE B",
                 "worse")
FLIP_COLUMNS = ("id", "text", "gold", "A predicts", "A prob.", "B predicts", "B prob.", "kind", "set")
VALIDATION, CORPUS = "validation", "corpus"  # the two sets the flips are counted and listed on
WORSE = "worse beyond CI"  # the mark of a slice whose whole B - A interval lies below 0


@dataclass(frozen=True)
class Scored:
    """The review set and both versions' probabilities on it, (n, k) each."""
    rs: ReviewSet
    probs_a: np.ndarray
    probs_b: np.ndarray
    stored: tuple[int, int]  # examples whose probabilities came from stored scores, A and B


def score(engine: Engine, rs: ReviewSet, pair: tuple[VersionInfo, VersionInfo], model_of: ModelOf,
          labels: Sequence[str], use_stored: bool = True, progress: Progress | None = None) -> Scored:
    """Both versions' probabilities on `rs`: stored scores where a version has them (unless
    `use_stored` is False), its model (`model_of`) for the rest."""
    a, b = pair
    stored: dict[int, dict[int, list]] = {a.id: {}, b.id: {}}
    if use_stored:
        with Session(engine) as s:
            stored = versions.stored_probs(s, [a.id, b.id], [i for i in rs.ids if i is not None])
    probs, counts = {}, {}
    for step, info in enumerate((a, b)):
        if info.id not in probs:  # a version against itself is scored once
            if progress:
                progress(0.1 + 0.35 * step, f"Reading {info.name}'s probabilities")
            probs[info.id], counts[info.id] = _probs(rs, info, stored[info.id], model_of, len(labels),
                                                     progress, 0.25 + 0.35 * step)
    return Scored(rs, probs[a.id], probs[b.id], (counts[a.id], counts[b.id]))


def _probs(rs: ReviewSet, info: VersionInfo, stored: dict[int, list], model_of: ModelOf, k: int,
           progress: Progress | None, at: float) -> tuple[np.ndarray, int]:
    """`info`'s (n, k) probabilities on `rs` and how many came from `stored` (example id -> probs)."""
    out = np.zeros((len(rs.texts), k))
    have = [j for j, i in enumerate(rs.ids) if i is not None and len(stored.get(i) or ()) == k]
    if have:
        out[have] = np.asarray([stored[rs.ids[j]] for j in have], dtype=np.float64)
    rest = sorted(set(range(len(rs.texts))) - set(have))
    if rest:
        if progress:
            progress(at, f"Scoring {len(rest):,} examples with {info.name} (no stored scores for them)")
        out[rest] = model_of(info).predict_proba([rs.texts[j] for j in rest])
    return out, len(have)


@dataclass(frozen=True)
class FlipView:
    """One flip as the review lists it: the example, its gold label, each version's label and the
    probability it gave that label, and whether B fixed, broke or changed it."""
    id: int | None
    text: str
    gold: str | None
    a_label: str
    a_prob: float
    b_label: str
    b_prob: float
    kind: str
    set: str = VALIDATION  # "validation" (B's validation split) or "corpus" (the rest, from stored scores)

    def row(self) -> list:
        return [self.id, self.text, self.gold, self.a_label, self.a_prob, self.b_label, self.b_prob, self.kind,
                self.set]


@dataclass(frozen=True)
class CorpusFlips:
    """The flips over every example both versions have stored scores for (`flips.n` of them):
    totals per kind and transition, and up to the requested number of rows of the requested kind
    (validation examples left out of the rows: the review lists them first)."""
    flips: Flips
    rows: tuple[FlipView, ...]


def corpus_flips(engine: Engine, pair: tuple[VersionInfo, VersionInfo], labels: Sequence[str],
                 kind: str | None = None, limit: int = 200, skip: frozenset[int] = frozenset()) -> CorpusFlips | None:
    """The flips of candidate B against A over the whole corpus from their stored scores (no model
    runs): counted in the database, the probabilities read for the changed examples only. None when
    one of them has no stored scores (never activated). `skip`: ids not to list (already listed)."""
    a, b = pair
    with Session(engine) as s:
        if not (versions.has_scores(s, a.id) and versions.has_scores(s, b.id)):
            return None
        got = versions.stored_flips(s, a.id, b.id)
        k = len(labels)
        y = [labels.index(g) if g in labels else None for g in got.gold]
        pa = np.asarray(got.probs_a, dtype=np.float64).reshape(-1, k)
        pb = np.asarray(got.probs_b, dtype=np.float64).reshape(-1, k)
        f = flips(got.ids, y, pa, pb, labels, kind=kind, limit=limit + len(skip))
        listed = [r for r in f.rows if r.id not in skip][:limit]
        texts = examples.texts_of(s, [r.id for r in listed])
    rows = tuple(FlipView(r.id, texts.get(r.id, ("", None))[0], r.gold, r.a_label, round(max(r.a_probs), 4), r.b_label,
                          round(max(r.b_probs), 4), r.kind, CORPUS) for r in listed)
    # every changed example was read, so the totals are right; only n (unchanged ones too) comes from the count
    return CorpusFlips(replace(f, n=got.n), rows)


@dataclass(frozen=True)
class VersionReview:
    """Candidate `b` against baseline `a`. `flips` counts ALL the flips (per transition, per kind);
    `rows` lists at most the requested number of the requested kind."""
    a: str
    b: str
    on: str
    review: Review
    gate: GateResult
    flips: Flips
    rows: tuple[FlipView, ...]
    kind: str | None  # None: every kind
    stored: tuple[int, int]  # examples read from stored scores, A and B
    seconds: float
    notes: tuple[str, ...] = ()
    corpus: CorpusFlips | None = None  # the flips over the whole corpus from stored scores (None: not both stored)

    def listed(self) -> tuple[FlipView, ...]:
        """The flips the panel lists: B's validation split first, then the rest of the corpus."""
        return self.rows + (self.corpus.rows if self.corpus else ())

    def slice_rows(self) -> list[list]:
        """SLICE_COLUMNS rows, the slices worse beyond their interval marked."""
        worse = {s.name for s in self.review.worse_slices()}
        return [[s.name, s.macro_f1.n, s.macro_f1.a.brief(), s.macro_f1.b.brief(),
                 s.macro_f1.diff.brief(signed=True),
                 round(s.ece_a, 4), round(s.ece_b, 4), WORSE if s.name in worse else ""] for s in self.review.slices]

    def verdict(self) -> str:
        """The gate's verdict, one line."""
        if self.gate.passed:
            return f"Gate passed: {self.b} may serve by itself ({', '.join(self.gate.checked)} checked)."
        return f"Gate failed: {'; '.join(self.gate.failed)}."

    def counts(self) -> str:
        """The flips' totals per kind and per transition, on the validation split and on the whole
        corpus (each line names its set and its size; the totals are never the listed rows)."""
        lines = [_flip_line(f"On {self.b}'s validation split", self.flips)]
        if self.corpus is not None:
            lines.append(_flip_line("On the whole corpus (every example both versions have stored scores for)",
                                    self.corpus.flips))
        else:
            lines.append("Whole corpus: not counted, since one version has no stored scores yet (a version gets "
                         "them when it is activated).")
        listed = self.listed()
        lines.append(f"Listed: {len(listed):,} {self.kind or 'of any kind'} ({len(self.rows):,} from the validation "
                     f"split first, then {len(listed) - len(self.rows):,} from the rest of the corpus).")
        return "\n\n".join(lines)

    def source(self) -> str:
        n = self.flips.n
        how = [f"{name}: {'stored scores' if k == n else f'stored scores for {k:,}, the model for {n - k:,}'}"
               if k else f"{name}: its model" for name, k in ((self.a, self.stored[0]), (self.b, self.stored[1]))]
        return f"{self.b} (B) against {self.a} (A) on {self.on} ({n:,} examples; {'; '.join(how)}; " \
               f"{self.seconds:.1f} s)."

    def as_api(self) -> dict:
        return {"a": self.a, "b": self.b, "on": self.on, "n": self.flips.n,
                "slices": [dict(zip(SLICE_COLUMNS, r)) for r in self.slice_rows()],
                "gate": {"passed": self.gate.passed, "failed": list(self.gate.failed),
                         "checked": list(self.gate.checked)},
                "flips": _flips_api(self.flips),
                "corpus_flips": _flips_api(self.corpus.flips) if self.corpus else None,
                "kind": self.kind or "all", "rows": [dict(zip(FLIP_COLUMNS, r.row())) for r in self.listed()],
                "seconds": round(self.seconds, 3), "notes": list(self.notes)}


def _flip_line(where: str, f: Flips) -> str:
    kinds = ", ".join(f"{k} {f.kinds.get(k, 0):,}" for k in FLIP_KINDS)
    moves = ", ".join(f"{t} {n:,}" for t, n in f.transitions.items()) or "none"
    return f"{where}: **{f.total:,} of {f.n:,}** examples changed prediction ({kinds}). By transition: {moves}."


def _flips_api(f: Flips) -> dict:
    return {"n": f.n, "total": f.total, "kinds": dict(f.kinds), "transitions": dict(f.transitions)}


def build(scored: Scored, names: tuple[str, str], labels: Sequence[str], b_proba: Callable[[], Callable] | None,
          kind: str | None = None, limit: int = 200, n_boot: int = 1000,
          tests: Sequence[BehaviourTest] | None = None) -> VersionReview:
    """The review of `scored` (names A, B). The gate's behaviour check runs only the must-pass ones
    of `tests` (behaviour.stored_suite; None: the starter suite), on B (`b_proba()` gives its
    predict_proba); with none marked it passes without loading B."""
    started = time.perf_counter()
    rs = scored.rs
    rv = review(rs.y, scored.probs_a, scored.probs_b, slice_masks(rs.raw_texts, rs.datasets, rs.sources), labels,
                n_boot=n_boot)
    must = [t for t in (starter_suite() if tests is None else tests) if t.must_pass]
    failures = must_pass_failures(run_suite(must, b_proba(), labels)) if must and b_proba else []
    notes = () if must else ("No behaviour test is marked must pass yet, so the gate's behaviour check passes.",)
    # flips by position in the review set: its ids may be None (an example deleted since training)
    f = flips(range(len(rs.texts)), rs.y, scored.probs_a, scored.probs_b, labels, kind=kind, limit=limit)
    rows = tuple(FlipView(rs.ids[r.id], rs.raw_texts[r.id], r.gold, r.a_label, round(max(r.a_probs), 4), r.b_label,
                          round(max(r.b_probs), 4), r.kind) for r in f.rows)
    return VersionReview(names[0], names[1], rs.on, rv, gate(rv, failures, None), f, rows, kind, scored.stored,
                         time.perf_counter() - started, notes)
