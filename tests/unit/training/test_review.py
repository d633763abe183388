"""The version review: paired bootstrap intervals, slices, flips and the activation gate."""

from __future__ import annotations


import numpy as np
import pytest
from sklearn.metrics import f1_score

from bertdemo.errors import BadInput
from bertdemo.training.behaviour import TestResult
from bertdemo.training.evaluation import evaluate
from bertdemo.training.review import (ALL, accuracy, flips, gate, macro_f1, paired_bootstrap, review,
                                      slice_masks)

LABELS = ("negative", "neutral", "positive")


def onehot(pred, p: float = 0.8) -> np.ndarray:
    """Probabilities (n, 3) whose top class is `pred`, with `p` on it."""
    pred = np.asarray(pred)
    out = np.full((len(pred), 3), (1 - p) / 2)
    out[np.arange(len(pred)), pred] = p
    return out


def worse(y: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """`y` with `share` of the predictions replaced by a wrong label."""
    rng = np.random.default_rng(seed)
    pred = y.copy()
    hit = rng.choice(len(y), int(share * len(y)), replace=False)
    pred[hit] = (y[hit] + rng.integers(1, 3, len(hit))) % 3
    return pred


@pytest.fixture(scope="module")
def data():
    """600 examples, two datasets, a baseline right 85% of the time."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    return y, worse(y, 0.15, seed=2), np.array(["airline", "general"] * 300)


# ---- the bootstrap -------------------------------------------------------------------------------

def test_the_point_values_are_sklearn_macro_f1():
    rng = np.random.default_rng(0)
    y, a, b = rng.integers(0, 3, 300), rng.integers(0, 3, 300), rng.integers(0, 2, 300)  # B never says 2
    boot = paired_bootstrap(y, a, b, n_boot=10, n_classes=3)
    for pred, got in ((a, boot.a.value), (b, boot.b.value)):
        assert got == pytest.approx(f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0), abs=1e-6)
    conf = np.array([[[3, 1, 0], [0, 2, 0], [0, 0, 0]]])  # class 2 never seen: counts as 0
    assert macro_f1(conf)[0] == pytest.approx((2 * 3 / 7 + 2 * 2 / 5 + 0) / 3)
    assert accuracy(conf)[0] == pytest.approx(5 / 6)


def test_all_correct_gives_the_interval_one_to_one_and_identical_versions_a_zero_difference(data):
    y, base, _ = data
    right = paired_bootstrap(y, y, y)
    assert (right.a.value, right.a.low, right.a.high) == (1.0, 1.0, 1.0)
    same = paired_bootstrap(y, base, base)
    assert same.a == same.b and same.a.low < same.a.value < same.a.high
    assert (same.diff.value, same.diff.low, same.diff.high) == (0.0, 0.0, 0.0)
    assert not same.worse() and same.n == 600 and same.samples.shape == (1000,)


def test_all_right_against_all_wrong_is_a_difference_of_exactly_minus_one():
    y = np.array([0, 1, 2] * 50)
    boot = paired_bootstrap(y, y, (y + 1) % 3, metric=accuracy)
    assert (boot.diff.value, boot.diff.low, boot.diff.high) == (-1.0, -1.0, -1.0)
    assert boot.worse()


def test_pairing_makes_the_difference_interval_narrow(data):
    y, base, _ = data
    b = base.copy()
    b[np.flatnonzero(base != y)[0]] = y[np.flatnonzero(base != y)[0]]  # B fixes one example
    boot = paired_bootstrap(y, base, b)
    assert boot.a.high - boot.a.low > 0.05  # each version alone: a wide interval
    assert 0 < boot.diff.high - boot.diff.low < 0.01 and boot.diff.low >= 0  # B is never worse
    assert boot.diff.value == pytest.approx(boot.b.value - boot.a.value, abs=1e-6)


def test_groups_stratify_each_round(data):
    y = np.array([0, 1, 2] * 100)
    a = np.where(np.arange(300) < 150, y, (y + 1) % 3)  # right on group "x", wrong on group "z"
    groups = ["x"] * 150 + ["z"] * 150
    fixed = paired_bootstrap(y, a, a, metric=accuracy, groups=groups)
    assert (fixed.a.low, fixed.a.value, fixed.a.high) == (0.5, 0.5, 0.5)  # 150 right in every round
    free = paired_bootstrap(y, a, a, metric=accuracy)
    assert free.a.low < 0.46 and free.a.high > 0.54


def test_the_bootstrap_is_seeded_and_checks_its_input(data):
    y, base, _ = data
    b = worse(y, 0.2, seed=5)
    assert paired_bootstrap(y, base, b, seed=3) == paired_bootstrap(y, base, b, seed=3)
    assert paired_bootstrap(y, base, b, seed=3).diff != paired_bootstrap(y, base, b, seed=4).diff
    with pytest.raises(BadInput, match="equally long"):
        paired_bootstrap(y, base[:-1], b)


# ---- slices and the review -----------------------------------------------------------------------

def test_slice_masks_on_handcrafted_texts():
    texts = ["@united great flight", "see http://t.co/x ok", "#travel today", "love it \u2708\ufe0f",
             "one two three four five six seven eight nine", "&#39;quoted&#39; #1 a@b.com", " ".join(["w"] * 21)]
    masks = slice_masks(texts, ["airline"] * 6 + [None], ["crowd"] * 5 + ["corrected", "crowd"])
    got = {name: np.flatnonzero(m).tolist() for name, m in masks.items()}
    assert got == {ALL: [0, 1, 2, 3, 4, 5, 6],
                   "airline": [0, 1, 2, 3, 4, 5],
                   "airline / length <=8 words": [0, 1, 2, 3, 5],
                   "airline / length 9-20 words": [4],
                   "airline / has URL": [1], "airline / has @mention": [0], "airline / has #hashtag": [2],
                   "airline / has emoji": [3], "airline / crowd label": [0, 1, 2, 3, 4],
                   "airline / corrected label": [5],
                   "other": [6], "other / length >20 words": [6], "other / crowd label": [6]}


def test_identical_versions_have_no_worse_slice_and_the_gate_passes(data):
    y, base, datasets = data
    masks = slice_masks(["a tweet"] * 600, datasets, ["crowd"] * 600)
    r = review(y, onehot(base), onehot(base), masks, LABELS)
    assert [s.name for s in r.slices] == [ALL, "airline", "airline / length <=8 words", "airline / crowd label",
                                          "general", "general / length <=8 words", "general / crowd label"]
    assert r.worse_slices() == [] and all(s.macro_f1.diff.value == 0 for s in r.slices)
    assert r.slice("airline").ece_a == r.slice("airline").ece_b == evaluate(
        onehot(base)[datasets == "airline"], y[datasets == "airline"], [None] * 300, LABELS).ece
    g = gate(r, [], int8_ok=True)
    assert g.passed and g.failed == () and g.checked == ("datasets", "behaviour tests", "int8")
    assert g.text() == "gate passed: datasets, behaviour tests, int8"


def test_a_deliberately_worse_version_is_flagged_and_refused_by_the_gate(data):
    y, base, datasets = data
    b = base.copy()
    air = datasets == "airline"
    b[air] = worse(y[air], 0.4, seed=7)  # 40% wrong on the airline tweets, general unchanged
    masks = slice_masks(["a tweet"] * 600, datasets, ["crowd"] * 600)
    r = review(y, onehot(base), onehot(b), masks, LABELS)
    assert {s.name for s in r.worse_slices()} == {ALL, "airline", "airline / length <=8 words",
                                                  "airline / crowd label"}
    air_slice = r.slice("airline")
    assert air_slice.macro_f1.diff.high < 0 and air_slice.ece_b > air_slice.ece_a
    g = gate(r, [], int8_ok=True)
    assert not g.passed and g.failed == (air_slice.sentence(),)  # dataset slices only, not ALL
    m = air_slice.macro_f1
    assert g.failed[0] == (f"airline macro-F1 {m.b.value:.3f} vs {m.a.value:.3f} (difference {m.diff.value:.3f}, "
                           f"95% CI {m.diff.low:.3f} to {m.diff.high:.3f})")
    assert g.failed[0].startswith("airline macro-F1 0.") and g.text().startswith("gate failed: airline macro-F1")
    assert r.rows()[1]["slice"] == "airline" and r.rows()[1]["n"] == 300


def test_review_checks_the_shape_of_the_probabilities(data):
    y, base, datasets = data
    with pytest.raises(BadInput, match=r"shape \(600, 3\)"):
        review(y, onehot(base)[:, :2], onehot(base), {ALL: np.ones(600, bool)}, LABELS)


# ---- flips ---------------------------------------------------------------------------------------

def test_flip_counts_are_totals_while_the_rows_are_capped():
    n = 1000
    y = np.zeros(n, dtype=int)
    a = np.zeros(n, dtype=int)
    b = a.copy()
    b[:300] = 1  # 300 broken: negative -> neutral
    a[300:350] = 2  # 50 fixed: positive -> negative
    b[350:370], a[350:370] = 2, 1  # 20 changed, wrong both times: neutral -> positive
    f = flips(list(range(n)), y, onehot(a), onehot(b), LABELS, limit=25)
    assert (f.n, f.total, len(f.rows)) == (1000, 370, 25)
    assert f.transitions == {"negative -> neutral": 300, "neutral -> positive": 20, "positive -> negative": 50}
    assert f.kinds == {"fixed": 50, "broken": 300, "changed": 20}
    assert f.summary() == "370 of 1,000 examples changed prediction (showing 25)"
    broken = flips(list(range(n)), y, onehot(a), onehot(b), LABELS, kind="broken", limit=10)
    assert broken.total == 370 and len(broken.rows) == 10 and {r.kind for r in broken.rows} == {"broken"}
    fixed = flips(list(range(n)), y, onehot(a), onehot(b), LABELS, kind="fixed", limit=500)
    assert len(fixed.rows) == 50 and {r.id for r in fixed.rows} == set(range(300, 350))
    assert fixed.of_kind("fixed") == list(fixed.rows) and fixed.of_kind("broken") == []
    assert flips(list(range(n)), y, onehot(a), onehot(b), LABELS, limit=1000).summary() == \
        "370 of 1,000 examples changed prediction"


def test_a_flip_row_holds_both_versions_and_its_kind():
    y = [0, 1, None, 2]
    pa = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    pb = np.array([[0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.0, 0.1, 0.9], [0.1, 0.1, 0.8]])
    f = flips(["e1", "e2", "e3", "e4"], y, pa, pb, LABELS)
    rows = {r.id: r for r in f.rows}
    assert set(rows) == {"e1", "e2", "e3"} and f.total == 3
    assert (rows["e1"].gold, rows["e1"].a_label, rows["e1"].b_label, rows["e1"].kind) == \
        ("negative", "negative", "neutral", "broken")
    assert rows["e1"].a_probs == (0.7, 0.2, 0.1) and rows["e1"].b_probs == (0.2, 0.7, 0.1)
    assert (rows["e2"].kind, rows["e3"].gold, rows["e3"].kind) == ("fixed", None, "changed")
    assert [r.id for r in f.rows] == ["e3", "e1", "e2"]  # the largest probability shift first: 1.4, 1.0, 0.4
    with pytest.raises(BadInput, match="kind must be one of"):
        flips(["e1"], [0], pa[:1], pb[:1], LABELS, kind="worse")


# ---- the gate ------------------------------------------------------------------------------------

def test_a_must_pass_failure_or_a_failed_int8_gate_makes_the_gate_fail():
    failing = TestResult("negation", "DIR", True, 20, 3, ())
    g = gate(None, [failing], int8_ok=None)
    assert not g.passed and g.checked == ("behaviour tests",)
    assert g.failed == ("behaviour test 'negation' (DIR) failed 3 of 20 cases (15.0%)",)
    g = gate(None, [], int8_ok=False)
    assert not g.passed and g.failed[0].startswith("the int8 gate failed")
    first = gate(None, [], int8_ok=None)  # nothing active yet: served as today
    assert first.passed and first.checked == ("behaviour tests",)


def test_an_interval_as_a_table_cell():
    from bertdemo.training.review import Interval

    assert Interval(0.8123, 0.79, 0.83).brief() == "0.812 (0.790 to 0.830)"
    assert Interval(0.012, -0.004, 0.027).brief(signed=True) == "+0.012 (-0.004 to +0.027)"
