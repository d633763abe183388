"""TrainingActions' form checks (the rest of the Train tab's actions is tested in
tests/browser/test_train.py): every value an API caller can send is refused with a message naming
the field and its range before anything runs or is written; and the version review, whose figures
from stored scores equal those from running both models."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo.actions.train import MODES, STARTS, TrainingActions
from bertdemo.db.models import TrainingRun
from bertdemo.errors import BadInput

GOOD = dict(epochs=1, learning_rate=1e-4, batch_size=16, max_length=32, seed=3, mode=MODES[0], start_from=STARTS[0],
            max_steps=2)


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 1e30, "Epochs (epochs) must be a number from 0.01 to 100, got 1e+30."),  # used to start a run
    ("epochs", float("inf"), "Epochs (epochs) must be a number from 0.01 to 100"),
    ("epochs", None, "got None"),
    ("epochs", "abc", "got 'abc'"),
    ("learning_rate", float("nan"), "Learning rate (learning_rate) must be a number above 0 and up to 0.5"),
    ("learning_rate", 0, "Learning rate (learning_rate) must be a number above 0 and up to 0.5"),
    ("batch_size", 16.5, "Batch size (batch_size) must be a whole number from 1 to 1024, got 16.5."),
    ("batch_size", 0, "Batch size (batch_size) must be a whole number from 1 to 1024"),
    ("max_length", 4096, "Max length (max_length) must be a whole number from 8 to 512"),
    ("seed", 1e30, "Seed (seed) must be a whole number from 0 to 4294967295"),  # used to start a run that failed
    ("seed", -1, "Seed (seed) must be a whole number from 0 to 4294967295"),
    ("max_steps", -3, "Max steps (0 = no limit) must be a whole number from 0 to 10000000"),
    ("max_steps", True, "Max steps (0 = no limit) must be"),
    ("mode", "lora", "What to train must be one of"),
    ("start_from", None, "Start from must be one of"),
])
def test_bad_form_values_are_refused_with_the_field_and_range(field, value, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        TrainingActions.config_from_form(**(GOOD | {field: value}))


def test_good_values_in_any_numeric_form():
    c = TrainingActions.config_from_form(**(GOOD | {"epochs": "2", "batch_size": 16.0, "seed": "7", "max_steps": None}))
    assert (c.epochs, c.batch_size, c.seed, c.max_steps) == (2.0, 16, 7, None)


def test_a_refused_start_writes_no_run(services):
    services.ensure_dataset()
    actions = TrainingActions(services)
    for bad in (GOOD | {"epochs": 1e30}, GOOD | {"seed": 2**40}):
        with pytest.raises(BadInput):
            actions.start(TrainingActions.config_from_form(**bad), None, serve=False)
    with pytest.raises(BadInput, match="serve when trained must be true or false, got 'false'"):
        actions.start(TrainingActions.config_from_form(**GOOD), None, serve="false")
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0
    assert not services.jobs.status().running


# ------------------------------------------------------------------ the version review
@pytest.fixture(scope="module")
def reviewing(two_versions, tiny_csv):
    """TrainingActions on the `two_versions` data dir (v1 and v2, both activated, so both scored)."""
    from bertdemo.config import Settings
    from bertdemo.services import Services

    services = Services.create(Settings(serving="bf16", data_dir=two_versions, dataset_path=tiny_csv,
                                        datasets=("airline",)))
    yield services, TrainingActions(services)
    services.engine.dispose()


def test_the_review_from_stored_scores_matches_the_review_from_the_models(reviewing):
    import numpy as np

    from bertdemo.actions import review as version_review
    from bertdemo.training.comparison import review_set

    services, actions = reviewing
    phases = []
    stored = actions.review("v1", "v2", progress=lambda f, m: phases.append((f, m)))
    n = stored.flips.n
    assert n > 0 and stored.stored == (n, n)  # both versions' scores were in the database: no model ran
    assert phases[0][1] == "Reading the validation split of v2" and phases[-1][0] == 0.8
    by_name = {v.name: v for v in services.registry.versions()}
    labels = services.settings.labels
    rs = review_set(services.engine, services.registry.folder(by_name["v2"]), "v2", labels)
    scored = version_review.score(services.engine, rs, (by_name["v1"], by_name["v2"]), services.registry.load,
                                  labels, use_stored=False)
    assert scored.stored == (0, 0)
    models = version_review.build(scored, ("v1", "v2"), labels, None)
    cached = actions._scored[1]
    assert np.abs(cached.probs_a - scored.probs_a).max() < 1e-3 and np.abs(cached.probs_b - scored.probs_b).max() < 1e-3
    assert models.flips.total == stored.flips.total and models.flips.kinds == stored.flips.kinds
    assert models.flips.transitions == stored.flips.transitions and len(models.rows) == len(stored.rows) > 0
    for got, want in zip(models.rows, stored.rows):  # the stored scores are rounded to 6 places
        assert (got.id, got.text, got.gold, got.a_label, got.b_label, got.kind) == \
            (want.id, want.text, want.gold, want.a_label, want.b_label, want.kind)
        assert got.a_prob == pytest.approx(want.a_prob, abs=1e-3) and got.b_prob == pytest.approx(want.b_prob, abs=1e-3)
    for got, want in zip(models.review.slices, stored.review.slices):
        assert got.name == want.name and got.macro_f1.a == want.macro_f1.a and got.macro_f1.b == want.macro_f1.b
        assert got.ece_a == pytest.approx(want.ece_a, abs=1e-3) and got.ece_b == pytest.approx(want.ece_b, abs=1e-3)
    assert stored.gate.passed == models.gate.passed and stored.as_api()["flips"]["total"] == stored.flips.total
    # the filter re-reads the kept pair: the totals stay, the rows are of one kind
    broken = actions.review("v1", "v2", "broken")
    assert broken.flips.kinds == stored.flips.kinds and {r.kind for r in broken.rows} <= {"broken"}
    assert len(broken.rows) == stored.flips.kinds["broken"]
    same = actions.review("v2", "v2")
    assert same.flips.total == 0 and same.gate.passed and "Both sides are the same version." in same.notes
    with pytest.raises(BadInput, match="The kind of flips must be one of"):
        actions.review("v1", "v2", "worse")
