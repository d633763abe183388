"""The stopping signals (actions/stopping.py): Cohen's kappa of consecutive versions on the stopping
pool, and the stabilizing-predictions rule, on cases with known answers; the report from the database,
with stored scores standing in for a version saved before the pool existed."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.actions import stopping
from bertdemo.config import Settings
from bertdemo.db import signals, versions
from bertdemo.db.examples import NewExample, import_examples
from tests.support import LABELS


def test_kappa_of_identical_predictions_is_one_even_with_one_class():
    assert stopping.kappa(["a", "b", "c", "a"], ["a", "b", "c", "a"]) == 1.0
    assert stopping.kappa(["neutral"] * 50, ["neutral"] * 50) == 1.0  # scikit-learn alone: NaN


def test_kappa_against_a_hand_computed_value():
    # observed agreement 3/4; chance: 1/2 * 1/4 + 1/2 * 3/4 = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert stopping.kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]) == pytest.approx(0.5)
    assert stopping.kappa(["x", "y"] * 10, ["y", "x"] * 10) == pytest.approx(-1.0)


def test_the_rule_on_a_made_up_kappa_series():
    kappas = [0.5, 0.9, 0.995, 0.99, 0.999, 0.995]
    means = stopping.window_means(kappas, 3)
    assert means[:2] == [None, None]
    assert means[2:] == pytest.approx([0.798333, 0.961667, 0.994667, 0.994667], abs=1e-6)
    assert stopping.stable_from(kappas, 0.99, 3) == 4  # held at the 5th step and every one after it
    assert stopping.stable_from(kappas + [0.9], 0.99, 3) is None  # a drop at the end: still changing
    # held, then dropped, then held again: stable since it held again, not since it first held
    assert stopping.stable_from([1, 1, 1, 0.9, 1, 1, 1], 0.99, 3) == 6
    assert stopping.stable_from([0.99, 0.99], 0.99, 3) is None  # the window never filled
    assert stopping.stable_from([0.995, 0.98], 0.99, 1) is None and stopping.stable_from([0.98, 0.995], 0.99, 1) == 1


def series_of(flips: list[int], pool: int = 200) -> list[tuple[str, dict[int, str]]]:
    """Versions v1, v2, ...: v1 predicts a fixed pattern; each next one changes `flips[k]` more predictions."""
    rng = np.random.default_rng(0)
    preds = {i: LABELS[i % 3] for i in range(pool)}
    out = [("v1", dict(preds))]
    for k, n in enumerate(flips):
        for i in rng.choice(pool, n, replace=False):
            preds[int(i)] = LABELS[(LABELS.index(preds[int(i)]) + 1) % 3]
        out.append((f"v{k + 2}", dict(preds)))
    return out


def test_the_report_says_stable_since_still_changing_or_too_few():
    stable = stopping.report_of(series_of([60, 30, 1, 0, 1, 0]), 0.99, 3, 200)
    assert [s.version for s in stable.steps] == ["v2", "v3", "v4", "v5", "v6", "v7"]
    assert [s.previous for s in stable.steps] == ["v1", "v2", "v3", "v4", "v5", "v6"]
    assert stable.steps[3].kappa == 1.0 and all(s.n == 200 for s in stable.steps)
    assert stable.stable_since == "v6" and stable.message.startswith("Stable since v6: ")
    assert stable.mean_kappa == pytest.approx(np.mean([s.kappa for s in stable.steps[-3:]]), abs=1e-6)
    changing = stopping.report_of(series_of([60, 30, 1, 0, 1, 20]), 0.99, 3, 200)
    assert changing.stable_since is None and changing.message.startswith("Still changing: ")
    few = stopping.report_of(series_of([5]), 0.99, 3, 200)
    assert few.stable_since is None and few.mean_kappa is None and len(few.steps) == 1
    assert few.message.startswith("Too few versions: ")
    assert "needs 4 versions with pool predictions, has 2" in few.message
    empty = stopping.report_of([], 0.99, 3, 0)
    assert empty.steps == () and "has 0" in empty.message


def test_a_pair_is_compared_on_the_examples_both_predicted():
    steps = stopping.kappa_steps([("v1", {1: "a", 2: "b", 3: "a"}), ("v2", {2: "b", 3: "a", 4: "b"}),
                                  ("v3", {9: "a"})])
    assert steps == (stopping.KappaStep("v2", "v1", 1.0, 2),)  # v3 shares nothing with v2: no step


def test_the_api_form_is_json_and_the_rows_are_flat():
    r = stopping.report_of(series_of([40, 2, 0, 0]), 0.99, 3, 200, without_pool=("v0",))
    api = json.loads(json.dumps(r.as_api()))
    assert api["stable_since"] == r.stable_since and api["without_pool"] == ["v0"] and len(api["steps"]) == 4
    assert "v0" in r.message
    rows = r.rows()
    assert [row["version"] for row in rows] == ["v2", "v3", "v4", "v5"]
    assert [row["rule_holds"] for row in rows] == [False, False, False, True]
    assert rows[0]["window_mean_kappa"] is None and rows[3]["window_mean_kappa"] == pytest.approx(r.mean_kappa)


def test_the_report_reads_the_pool_and_stored_scores_stand_in_for_an_older_version(engine):
    rows = [NewExample(f"tweet {i}", f"tweet {i}") for i in range(6)]
    with Session(engine) as s, s.begin():
        import_examples(s, rows, "import", "test", LABELS)
        ids = sorted(signals.pool_candidates(s)[0].tolist())
        vid = {name: versions.add_version(s, name=name, path=f"models/{name}", base_model="m").id
               for name in ("v1", "v2", "v3", "v4")}
        # v1: saved before the pool, activated and re-scored (every example); v2: neither (left out)
        probs = np.eye(3)[[0, 1, 2, 0, 1, 2]]
        versions.save_scores(s, vid["v1"], ids, probs, LABELS)
        signals.add_pool(s, ids[:4])
        signals.save_pool_predictions(s, vid["v3"], ids[:4], ["negative", "neutral", "positive", "positive"])
        signals.save_pool_predictions(s, vid["v4"], ids[:4], ["negative", "neutral", "positive", "positive"])
    services = SimpleNamespace(engine=engine, settings=Settings(stop_window=2))
    r = stopping.StoppingSignals(services).report()
    assert r.pool_size == 4 and r.without_pool == ("v2",) and r.window == 2 and r.threshold == 0.99
    assert [(s.version, s.previous, s.n) for s in r.steps] == [("v3", "v1", 4), ("v4", "v3", 4)]
    # v1 on the pool: negative, neutral, positive, negative; v3 changed the last one
    assert r.steps[0].kappa == pytest.approx(stopping.kappa(["n", "u", "p", "n"], ["n", "u", "p", "p"]))
    assert r.steps[1].kappa == 1.0 and r.stable_since is None  # mean (0.64 + 1) / 2 < 0.99
