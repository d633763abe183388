"""Comparing a candidate version with a baseline before the candidate may serve on its own: both
score the candidate's validation split (saved beside it), training/review.py turns the two sets of
probabilities into per-slice macro-F1 with paired bootstrap intervals, flips and the activation
gate, and the behaviour suite (training/behaviour.py: the stored one, or the starter suite) runs
on the candidate. Used by the
runner before an automatic activation and by `bertdemo review vA vB`."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import examples
from bertdemo.errors import NotReady
from bertdemo.training.behaviour import BehaviourTest, TestResult, must_pass_failures, run_suite, starter_suite
from bertdemo.training.files import VALIDATION_FILE
from bertdemo.training.review import Flips, GateResult, Review, flips, gate, review, slice_masks

log = logging.getLogger(__name__)
PredictProba = Callable[[list[str]], np.ndarray]  # texts -> (n, len(labels)) probabilities


@dataclass(frozen=True)
class ReviewSet:
    """The examples a comparison scores: a version's validation split joined with the database.
    The lists are parallel, one entry per example."""
    texts: list[str]  # cleaned, as the models see them
    raw_texts: list[str]  # as typed (slices: URL, @mention, hashtag, emoji, length)
    y: np.ndarray  # gold label index, (n,)
    ids: list[int | None]  # None: the example is no longer in the database
    datasets: list[str | None]
    sources: list[str]  # "crowd" (as imported) or "corrected" (a person changed its label here)
    on: str  # what it is, for messages: "the validation split of v3"


def review_set(engine: Engine, folder: Path, name: str, labels: Sequence[str]) -> ReviewSet:
    """Version `name`'s validation split (VALIDATION_FILE in its folder), with each example's raw
    text, dataset and label source from the database; NotReady for a version saved without it."""
    path = folder / VALIDATION_FILE
    if not path.is_file():
        raise NotReady(f"Version {name} was saved without its validation split, so it cannot be reviewed.")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(f) if r["label"] in labels]
    with Session(engine) as s:
        found = examples.review_rows(s, [t for t, _ in rows])
    missing = (None, None, None, False)
    info = [found.get(t, missing) for t, _ in rows]
    return ReviewSet(
        texts=[t for t, _ in rows], raw_texts=[raw or t for (t, _), (_i, raw, _d, _c) in zip(rows, info)],
        y=np.array([list(labels).index(lab) for _, lab in rows], dtype=np.int64),
        ids=[i for i, _raw, _d, _c in info], datasets=[d for _i, _raw, d, _c in info],
        sources=["corrected" if c else "crowd" for _i, _raw, _d, c in info], on=f"the validation split of {name}")


@dataclass(frozen=True)
class Comparison:
    """Candidate B against baseline A on one ReviewSet, and whether B may serve by itself."""
    baseline: str
    candidate: str
    on: str
    review: Review
    flips: Flips
    behaviour: list[TestResult]  # the candidate's behaviour suite results
    gate: GateResult

    def report(self) -> str:
        """A plain-text report (the CLI prints it; the run's log keeps it)."""
        lines = [f"{self.candidate} (B) against {self.baseline} (A) on {self.on}:", ""]
        lines.append(f"{'slice':<34} {'n':>6}  {'A':>6}  {'B':>6}  {'B - A (95% CI)':<24} {'ECE A':>6} {'ECE B':>6}")
        for sl in self.review.slices:
            m = sl.macro_f1
            diff = m.diff.brief(signed=True)
            lines.append(f"{sl.name:<34} {m.n:>6,}  {m.a.value:6.3f}  {m.b.value:6.3f}  {diff:<24} "
                         f"{sl.ece_a:6.3f} {sl.ece_b:6.3f}")
        lines += ["", self.flips.summary() + ": " + ", ".join(f"{k} {v:,}" for k, v in self.flips.kinds.items()),
                  "transitions: " + (", ".join(f"{k} {v:,}" for k, v in self.flips.transitions.items()) or "none")]
        passed = sum(r.passed for r in self.behaviour)
        lines.append(f"behaviour tests: {passed} of {len(self.behaviour)} pass")
        lines += [f"  {r.sentence()}" for r in self.behaviour if not r.passed]
        lines += ["", self.gate.text()]
        return "\n".join(lines)


def compare(baseline: tuple[str, PredictProba], candidate: tuple[str, PredictProba], rs: ReviewSet,
            labels: Sequence[str], n_boot: int = 1000, int8_ok: bool | None = None,
            tests: Sequence[BehaviourTest] | None = None) -> Comparison:
    """Score `rs` with both versions ((name, predict_proba) each), review B against A, run the
    behaviour `tests` on B (None: the starter suite; the app passes behaviour.stored_suite) and
    apply the activation gate."""
    (a_name, a_proba), (b_name, b_proba) = baseline, candidate
    probs_a, probs_b = a_proba(rs.texts), b_proba(rs.texts)  # (n, k) each
    rv = review(rs.y, probs_a, probs_b, slice_masks(rs.raw_texts, rs.datasets, rs.sources), labels, n_boot=n_boot)
    results = run_suite(starter_suite() if tests is None else tests, b_proba, labels)
    verdict = gate(rv, must_pass_failures(results), int8_ok)
    comparison = Comparison(a_name, b_name, rs.on, rv, flips(rs.ids, rs.y, probs_a, probs_b, labels), results, verdict)
    log.info("%s", comparison.report())
    return comparison
