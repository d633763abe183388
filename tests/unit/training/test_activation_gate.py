"""The activation gate on the runner's automatic activation (serve when trained, retrain every
N): a second version serves by itself only when the comparison with the serving one passes; a
worse one, or one failing a must-pass behaviour test, is registered, not served, and the run's
message names the failing check. The first version (nothing serving yet) is served as before."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.db import behaviour_tests
from bertdemo.training import behaviour_runs, comparison, runner
from bertdemo.training.behaviour import MFT, BehaviourTest, Case, as_fields, stored_suite
from bertdemo.training.config import TrainConfig
from tests.support import TINY_TRAIN

QUICK = TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 2, "init_from": "active"}))


@pytest.fixture
def served(services):
    services.ensure_dataset()
    st = services.jobs.run_sync(TINY_TRAIN, user="test")  # v1: nothing served before it, so no gate
    assert st.state == "succeeded" and "v1 saved" in st.message and "now serving" in st.message
    return services


def _always_wrong(compare_fn):  # noqa: ANN001, ANN202
    """`compare` with the candidate's predictions replaced by a wrong label for every example."""
    def wrapped(baseline, candidate, rs, labels, **kw):  # noqa: ANN001, ANN003, ANN202
        wrong = {t: (int(y) + 1) % len(labels) for t, y in zip(rs.texts, rs.y)}

        def proba(texts):  # noqa: ANN001, ANN202
            out = np.full((len(texts), len(labels)), 0.05)
            out[np.arange(len(texts)), [wrong.get(t, 0) for t in texts]] = 0.9
            return out
        return compare_fn(baseline, (candidate[0], proba), rs, labels, **kw)
    return wrapped


def test_a_comparable_version_passes_the_gate_and_serves(served):
    st = served.jobs.run_sync(QUICK, user="test")
    assert st.state == "succeeded" and "v2 saved" in st.message and "now serving" in st.message, st.message
    assert served.registry.active_version().name == "v2"
    assert "v2 (B) against v1 (A) on the validation split of v2" in st.report and "gate passed" in st.report


def test_a_worse_version_is_registered_not_served_and_the_failing_check_is_named(served, monkeypatch):
    before = served.registry.active()
    monkeypatch.setattr(runner, "compare", _always_wrong(comparison.compare))
    st = served.jobs.run_sync(QUICK, user="test")
    assert st.state == "succeeded"
    assert "Version v2 saved" in st.message and "now serving" not in st.message
    assert "Not served: the activation gate failed against v1: airline macro-F1 0.000 vs" in st.message
    assert "An admin may still activate it in Versions." in st.message
    assert sorted(v.name for v in served.registry.versions()) == ["v1", "v2"]  # registered all the same
    assert served.registry.active_version().name == "v1" and served.registry.active() is before
    # an admin may still serve it by hand
    served.jobs.activate(next(v.id for v in served.registry.versions() if v.name == "v2"), user="alice",
                         reason="reviewed by hand")
    assert served.registry.active_version().name == "v2"


def test_a_failing_must_pass_behaviour_test_blocks_automatic_activation(served):
    # one text expected to be each label at once: whatever the model says, two cases fail
    text = "the flight was fine i guess"
    impossible = BehaviourTest("three answers at once", MFT, "a must-pass test no model can pass",
                               tuple(Case(text, expected=lab) for lab in served.settings.labels), must_pass=True)
    stored_suite(served.engine, served.settings.labels)  # the starter suite, seeded on first use
    with Session(served.engine) as s, s.begin():  # stored, as a person saving it in the Train tab would
        behaviour_tests.add(s, as_fields(impossible), "example", "alice")
    st = served.jobs.run_sync(QUICK, user="test")
    assert "now serving" not in st.message and served.registry.active_version().name == "v1"
    assert ("Not served: the activation gate failed against v1: behaviour test 'three answers at once' (MFT) "
            "failed 2 of 3 cases (66.7%).") in st.message
    # the gate's results on the candidate are kept, so the Train tab shows why without running again
    (kept,) = behaviour_runs.stored(served.engine, next(v.id for v in served.registry.versions() if v.name == "v2"))
    failed = {r.name: r.n_failed for r in kept.results}
    assert kept.path == "pytorch" and failed["three answers at once"] == 2


def test_no_activation_asked_means_no_review(served, monkeypatch):
    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("reviewed a run that was not to serve")
    monkeypatch.setattr(runner, "compare", boom)
    st = served.jobs.run_sync(QUICK, user="test", activate=False)
    assert st.state == "succeeded" and served.registry.active_version().name == "v1"
