"""The learning curve (issue 25): what more labels are forecast to bring. Each version's validation
macro-F1 (pooled, and per dataset) against the number of labels it trained on, from its stored figures;
the inverse power law f(n) = a - b * n**(-c) fitted to the fine-tuned versions (learning-curve
extrapolation, e.g. Figueroa et al. 2012), and its forecast at +100 and +500 labels with an 80%
prediction interval. Quick versions (a frozen encoder with a fitted head) and quick retrains (a subset
of the labels) are another model family: shown, not fitted. No Gradio here."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.db import signals
from bertdemo.services import Services
from bertdemo.training.registry import QUICK_KIND

ALL = "all"  # the pooled curve: the version's own macro_f1 over its whole validation split
EXTRA = (100, 500)  # labels beyond the largest fitted version's, forecast
LEVEL = 0.80  # the forecast interval's coverage
MIN_FITTED = 4  # three parameters: fewer points leave no residual to judge the fit by
MIN_DISTINCT = 3  # label counts: a curve through fewer is not determined
FINE_TUNE, QUICK, QUICK_RETRAIN = "fine-tune", "quick", "quick retrain"
# bounds of (a, b, c): a plateau within macro-F1's range, a non-negative gap, a decay from flat to steep
BOUNDS = ((0.0, 0.0, 1e-3), (1.0, 1e4, 3.0))
INTERVAL = ("80% prediction interval: the fit's covariance (delta method) plus the points' scatter about "
            "the curve, with Student's t at (fitted versions - 3) degrees of freedom")


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """f(n) = a - b * n**(-c): a the plateau, b the gap at n = 1, c how fast it closes."""
    return a - b * np.power(np.asarray(n, dtype=float), -c)


@dataclass(frozen=True)
class CurvePoint:
    """One version on one curve."""
    version: str
    dataset: str
    labels: int  # the labels it trained on (its stored train_size)
    macro_f1: float
    kind: str  # fine-tune | quick | quick retrain
    fitted: bool  # used for the fit (fine-tuned versions only)


@dataclass(frozen=True)
class Forecast:
    """The fitted curve at `labels` = the largest fitted version's labels + `extra`, with its 80% interval."""
    extra: int
    labels: int
    macro_f1: float
    low: float
    high: float


@dataclass(frozen=True)
class Curve:
    """One dataset's (or "all"'s) points, the fitted (a, b, c) or None, the forecasts, and the verdict."""
    dataset: str
    points: tuple[CurvePoint, ...]
    params: tuple[float, float, float] | None
    forecasts: tuple[Forecast, ...]
    message: str

    def predict(self, n: np.ndarray) -> np.ndarray:
        """The fitted curve at label counts `n` (NaN when nothing was fitted)."""
        if self.params is None:
            return np.full(np.shape(n), np.nan)
        return power_law(n, *self.params)

    def as_api(self) -> dict:
        params = None if self.params is None else dict(zip("abc", self.params))
        return {"dataset": self.dataset, "points": [asdict(p) for p in self.points], "params": params,
                "forecasts": [asdict(f) for f in self.forecasts], "message": self.message}

    def rows(self) -> list[dict]:
        """A row per point and per forecast (`row` says which), each with the curve's a, b, c."""
        abc = dict(zip("abc", self.params or (None, None, None)))
        blank = {"version": None, "kind": None, "fitted": None, "extra": None, "low": None, "high": None}
        return ([{"dataset": self.dataset, "row": "point"} | blank | asdict(p) | abc for p in self.points]
                + [{"dataset": self.dataset, "row": "forecast"} | blank | asdict(f) | abc for f in self.forecasts])


@dataclass(frozen=True)
class LearningCurveReport:
    curves: tuple[Curve, ...]  # "all" first, then one per dataset

    def as_api(self) -> dict:
        return {"curves": [c.as_api() for c in self.curves], "interval": INTERVAL,
                "model": "f(n) = a - b * n**(-c)"}

    def rows(self) -> list[dict]:
        return [r for c in self.curves for r in c.rows()]


@dataclass(frozen=True)
class Fit:
    """A fitted curve: its parameters and forecasts."""
    params: tuple[float, float, float]
    forecasts: tuple[Forecast, ...]


def kind_of(train_config: dict) -> str:
    """A version's kind, as its recipe records it."""
    if train_config.get("kind") == QUICK_KIND:
        return QUICK
    return QUICK_RETRAIN if train_config.get("train_on") == "changed" else FINE_TUNE


def fit_power_law(n: Sequence[float], f1: Sequence[float], extra: Sequence[int] = EXTRA) -> Fit:
    """Fit f(n) = a - b * n**(-c) (scipy's bounded least squares) and forecast at max(n) + each of
    `extra`, with the INTERVAL. RuntimeError when the fit does not converge."""
    from scipy.optimize import OptimizeWarning, curve_fit
    from scipy.stats import t as student_t

    x, y = np.asarray(n, dtype=float), np.asarray(f1, dtype=float)
    a0 = min(1.0, float(y.max()) + 0.05)
    b0 = max(1e-3, (a0 - float(y.min())) * math.sqrt(float(x.min())))  # with c0 = 0.5: f(min n) = min f1
    with warnings.catch_warnings():  # a covariance it cannot estimate comes back as inf: the interval says so
        warnings.simplefilter("ignore", OptimizeWarning)
        params, cov = curve_fit(power_law, x, y, p0=(a0, min(b0, BOUNDS[1][1]), 0.5), bounds=BOUNDS, maxfev=20_000)
    a, b, c = (float(v) for v in params)
    dof = len(x) - 3
    scatter = float(np.sum((y - power_law(x, a, b, c)) ** 2)) / dof if dof > 0 else 0.0
    quantile = float(student_t.ppf(0.5 + LEVEL / 2, dof)) if dof > 0 else float("inf")
    forecasts = []
    for e in extra:
        at = float(x.max()) + e
        mean = float(power_law(at, a, b, c))
        grad = np.array([1.0, -at ** -c, b * at ** -c * math.log(at)])  # (3,) d f(at) / d (a, b, c)
        var = float(grad @ cov @ grad) + scatter
        half = quantile * math.sqrt(var) if math.isfinite(var) and var >= 0 else float("inf")
        low, high = (0.0, 1.0) if not math.isfinite(half) else (max(0.0, mean - half), min(1.0, mean + half))
        forecasts.append(Forecast(int(e), int(round(at)), round(mean, 6), round(low, 6), round(high, 6)))
    return Fit((a, b, c), tuple(forecasts))


def curve_of(dataset: str, points: Sequence[CurvePoint]) -> Curve:
    """The curve of `points`: fitted on the fine-tuned ones when there are enough, with its verdict."""
    fitted = [p for p in points if p.fitted]
    others = len(points) - len(fitted)
    aside = (f" {others} quick version{'s' if others != 1 else ''} (a frozen encoder, or a retrain on a subset "
             "of the labels) shown, not fitted: another model family." if others else "")
    if not points:
        return Curve(dataset, (), None, (), "No versions with validation figures yet.")
    if len(fitted) < MIN_FITTED or len({p.labels for p in fitted}) < MIN_DISTINCT:
        distinct = len({p.labels for p in fitted})
        msg = (f"Too few versions to fit a curve: it needs {MIN_FITTED} fine-tuned versions trained on at least "
               f"{MIN_DISTINCT} different numbers of labels; there are {len(fitted)} ({distinct} different).")
        return Curve(dataset, tuple(points), None, (), msg + aside)
    try:
        fit = fit_power_law([p.labels for p in fitted], [p.macro_f1 for p in fitted])
    except (RuntimeError, ValueError) as exc:
        return Curve(dataset, tuple(points), None, (), f"The curve could not be fitted to these {len(fitted)} "
                                                       f"versions ({exc}); more versions will help.{aside}")
    a = fit.params[0]
    ahead = ", ".join(f"+{f.extra} labels -> {f.macro_f1:.3f} (80% interval {f.low:.3f}-{f.high:.3f})"
                      for f in fit.forecasts)
    lo, hi = min(p.labels for p in fitted), max(p.labels for p in fitted)
    msg = (f"Fitted f(n) = a - b * n^-c to {len(fitted)} fine-tuned versions ({lo:,}-{hi:,} labels): plateau "
           f"a = {a:.3f}. Forecast: {ahead}.{aside}")
    return Curve(dataset, tuple(points), fit.params, fit.forecasts, msg)


def points_of(rows: Sequence[signals.VersionRow]) -> dict[str, list[CurvePoint]]:
    """{"all" or dataset: points} from the versions' stored figures; a version without a macro-F1 or a
    training-set size (an imported model) has no place on the curve."""
    out: dict[str, list[CurvePoint]] = {ALL: []}
    for r in rows:
        n, f1 = r.metrics.get("train_size"), r.metrics.get("macro_f1")
        if not n or f1 is None:
            continue
        kind = kind_of(r.train_config)
        out[ALL].append(CurvePoint(r.name, ALL, int(n), float(f1), kind, kind == FINE_TUNE))
        for d, m in sorted((r.metrics.get("per_dataset") or {}).items()):
            if isinstance(m, dict) and m.get("macro_f1") is not None:
                out.setdefault(d, []).append(CurvePoint(r.name, d, int(n), float(m["macro_f1"]), kind,
                                                        kind == FINE_TUNE))
    return out


class LearningCurves:
    """The learning curves of the versions in the database (any signed-in person may read them)."""

    def __init__(self, services: Services) -> None:
        self.engine = services.engine

    def report(self) -> LearningCurveReport:
        with Session(self.engine) as s:
            rows = signals.version_rows(s)
        points = points_of(rows)
        order = [ALL] + sorted(d for d in points if d != ALL)
        return LearningCurveReport(tuple(curve_of(d, points[d]) for d in order))
