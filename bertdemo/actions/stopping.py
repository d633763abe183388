"""The stopping signals (issue 25): does labelling more still move the model? Cohen's kappa of each
version's predictions on the stopping pool with the previous version's, and the stabilizing-predictions
rule (Bloodgood & Vijay-Shanker 2009; small-text's KappaAverage): stable once the mean kappa over the
last `window` pairs of versions reaches `threshold` (Settings.stop_window, Settings.stop_kappa).
The pool's predictions are stored when a version is saved (training/stopping.py); a version saved
before the pool existed is read from its stored scores where it has them. No Gradio here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.db import signals
from bertdemo.services import Services

CITATION = "Bloodgood & Vijay-Shanker 2009, stabilizing predictions"


@dataclass(frozen=True)
class KappaStep:
    """Cohen's kappa of `version`'s predicted classes with `previous`'s on the `n` pool examples both predicted."""
    version: str
    previous: str
    kappa: float
    n: int


@dataclass(frozen=True)
class StoppingReport:
    """The kappa series (oldest pair first) and the rule's verdict on it."""
    steps: tuple[KappaStep, ...]
    threshold: float
    window: int
    pool_size: int  # examples in the stopping pool (0: not drawn yet)
    stable_since: str | None  # the first version from which the rule has held at every version after it
    mean_kappa: float | None  # over the last `window` steps; None with fewer steps
    message: str
    without_pool: tuple[str, ...]  # versions with neither pool predictions nor stored scores on the pool

    def as_api(self) -> dict:
        return {"steps": [asdict(s) for s in self.steps], "threshold": self.threshold, "window": self.window,
                "pool_size": self.pool_size, "stable_since": self.stable_since, "mean_kappa": self.mean_kappa,
                "message": self.message, "without_pool": list(self.without_pool)}

    def rows(self) -> list[dict]:
        """One row per pair of versions, with the window's mean kappa there and whether the rule held."""
        means = window_means([s.kappa for s in self.steps], self.window)
        return [asdict(s) | {"window_mean_kappa": m, "rule_holds": m is not None and m >= self.threshold,
                             "threshold": self.threshold, "window": self.window}
                for s, m in zip(self.steps, means)]


def kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' classes on the same items. Identical predictions give 1.0 (scikit-learn
    gives NaN when both predict one class only: the chance agreement is then 1, and 0/0 is undefined)."""
    from sklearn.metrics import cohen_kappa_score

    if list(a) == list(b):
        return 1.0
    k = float(cohen_kappa_score(list(a), list(b)))
    return 0.0 if np.isnan(k) else k


def window_means(kappas: Sequence[float], window: int) -> list[float | None]:
    """The mean of the `window` kappas ending at each step; None before the window fills."""
    return [float(np.mean(kappas[i - window + 1:i + 1])) if i >= window - 1 else None for i in range(len(kappas))]


def stable_from(kappas: Sequence[float], threshold: float, window: int) -> int | None:
    """The index of the first step from which the rule (window mean >= threshold) holds at every step
    after it, or None when it does not hold at the last step."""
    since = None
    for i, m in reversed(list(enumerate(window_means(kappas, window)))):
        if m is None or m < threshold:
            break
        since = i
    return since


def kappa_steps(series: Sequence[tuple[str, Mapping[int, str]]]) -> tuple[KappaStep, ...]:
    """Kappa of each version with the one before it in `series` ((name, {example id: predicted class}),
    oldest first), on the examples both predicted; a pair with none in common is skipped."""
    steps = []
    for (prev, p), (name, q) in zip(series, series[1:]):
        shared = sorted(set(p) & set(q))
        if shared:
            steps.append(KappaStep(name, prev, round(kappa([p[i] for i in shared], [q[i] for i in shared]), 6),
                                   len(shared)))
    return tuple(steps)


def report_of(series: Sequence[tuple[str, Mapping[int, str]]], threshold: float, window: int, pool_size: int,
              without_pool: Sequence[str] = ()) -> StoppingReport:
    """The report on `series` (the versions with predictions on the pool, oldest first)."""
    steps = kappa_steps(series)
    kappas = [s.kappa for s in steps]
    means = window_means(kappas, window)
    mean = means[-1] if means else None
    since = stable_from(kappas, threshold, window)
    stable = steps[since].version if since is not None else None
    missing = (f" Left out, with no predictions on the pool: {', '.join(without_pool)}." if without_pool else "")
    if len(steps) < window:
        msg = (f"Too few versions: the rule compares each version with the one before it over the last {window} "
               f"pairs, so it needs {window + 1} versions with pool predictions, has {len(series)}.")
    elif stable is not None:
        msg = (f"Stable since {stable}: the mean kappa of the last {window} versions with the one before each is "
               f"{mean:.4f} (threshold {threshold:g}) on the {pool_size:,}-example stopping pool, so more labels "
               f"of the same kind are unlikely to change the model's predictions much ({CITATION}).")
    else:
        msg = (f"Still changing: the mean kappa of the last {window} versions with the one before each is "
               f"{mean:.4f}, below the threshold {threshold:g}: the model's predictions on the stopping pool "
               "still move as labels are added.")
    return StoppingReport(steps, threshold, window, pool_size, stable, None if mean is None else round(mean, 6),
                          msg + missing, tuple(without_pool))


class StoppingSignals:
    """The stopping signals of the versions in the database (any signed-in person may read them)."""

    def __init__(self, services: Services) -> None:
        self.engine = services.engine
        self.settings = services.settings

    def report(self) -> StoppingReport:
        with Session(self.engine) as s:
            rows = signals.version_rows(s)
            pool = signals.pool_ids(s)
            stored = signals.pool_predictions(s)
            absent = [r.id for r in rows if r.id not in stored]
            stand_in = signals.stand_in_predictions(s, absent, pool) if pool else {}
        series, without = [], []
        for r in rows:
            preds = stored.get(r.id) or stand_in.get(r.id)
            if preds:
                series.append((r.name, preds))
            else:
                without.append(r.name)
        return report_of(series, self.settings.stop_kappa, self.settings.stop_window, len(pool), without)
