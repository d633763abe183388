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
    assert phases[0][1] == "Reading the validation split of v2" and phases[-2][0] == 0.8
    assert phases[-1] == (0.9, "Flips over the whole corpus, from both versions' stored scores")
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


def test_whole_corpus_flips_equal_a_direct_count_from_stored_scores(reviewing):
    """The review counts the flips over every example both versions scored (not a capped list):
    per kind and transition, as a count straight from the stored probabilities gives them; the
    listed corpus rows leave out the validation flips listed first."""
    import numpy as np

    from bertdemo.db import versions
    from bertdemo.db.models import Example, Score

    services, actions = reviewing
    labels = list(services.settings.labels)
    by_name = {v.name: v for v in services.registry.versions()}
    with Session(services.engine) as s:
        a = dict(s.execute(select(Score.example_id, Score.probs).where(Score.version_id == by_name["v1"].id)).all())
        b = dict(s.execute(select(Score.example_id, Score.probs).where(Score.version_id == by_name["v2"].id)).all())
        gold = dict(s.execute(select(Example.id, Example.label)).all())
    both = sorted(set(a) & set(b))
    pa, pb = (np.asarray([p[i] for i in both]).argmax(1) for p in (a, b))
    changed = [(i, x, y) for i, x, y in zip(both, pa, pb) if x != y]
    kinds = {"fixed": 0, "broken": 0, "changed": 0}
    moves: dict[str, int] = {}
    for i, x, y in changed:
        g = labels.index(gold[i]) if gold[i] in labels else None
        kinds["fixed" if y == g else "broken" if x == g else "changed"] += 1
        moves[f"{labels[x]} -> {labels[y]}"] = moves.get(f"{labels[x]} -> {labels[y]}", 0) + 1
    r = actions.review("v1", "v2", limit=3)
    assert r.corpus is not None and len(both) == r.corpus.flips.n == len(gold) > r.flips.n  # every example
    assert (r.corpus.flips.total, r.corpus.flips.kinds, r.corpus.flips.transitions) == (len(changed), kinds, moves)
    assert len(changed) > 3 and len(r.corpus.rows) <= 3  # listed rows are capped; the totals are not
    assert {x.set for x in r.corpus.rows} == {"corpus"} and not {x.id for x in r.corpus.rows} & {x.id for x in r.rows}
    assert all(x.text and x.a_label != x.b_label for x in r.corpus.rows)
    api = r.as_api()
    assert api["corpus_flips"]["total"] == len(changed) and api["corpus_flips"]["n"] == len(both)
    assert [row["set"] for row in api["rows"]] == ["validation"] * len(r.rows) + ["corpus"] * len(r.corpus.rows)
    assert f"whole corpus (every example both versions have stored scores for): {len(changed):,} of {len(both):,}" \
        in r.counts().replace("**", "").replace("On the", "on the")
    with Session(services.engine) as s:  # one join: the same figures from the database function
        assert versions.stored_flips(s, by_name["v1"].id, by_name["v2"].id).n == len(both)
    # a version never activated has no stored scores: the corpus is not counted, and the panel says so
    from dataclasses import replace

    from bertdemo.actions import review as version_review

    never_scored = replace(by_name["v2"], id=10_000)
    assert version_review.corpus_flips(services.engine, (by_name["v1"], never_scored), labels) is None


def test_reject_records_who_when_why_and_is_for_admins_only(two_versions, tmp_path, tiny_csv):
    import shutil

    from bertdemo import auth
    from bertdemo.actions.train import VERSION_COLUMNS, version_row
    from bertdemo.config import Settings
    from bertdemo.db.models import Rejection
    from bertdemo.errors import Conflict, Forbidden
    from bertdemo.services import Services

    shutil.copytree(two_versions, tmp_path / "runtime")
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "runtime", dataset_path=tiny_csv,
                                        datasets=("airline",)))
    auth.add_user(services.engine, "ann", "password1", "annotator")
    auth.add_user(services.engine, "boss", "password2", "admin")
    actions = TrainingActions(services)
    with pytest.raises(Forbidden):
        actions.reject("v1", "ann", "worse on airline")
    with pytest.raises(BadInput, match="Say why v1 is rejected"):
        actions.reject("v1", "boss", "   ")
    with pytest.raises(Conflict, match="v2 is serving now"):  # v2 serves: roll back before rejecting it
        actions.reject("v2", "boss", "breaks negations")
    msg = actions.reject("v1", "boss", "worse on airline negatives")
    assert msg.startswith("Rejected **v1** (by boss ") and msg.endswith(": worse on airline negatives). It stays "
                                                                        "registered; it does not serve.")
    with Session(services.engine) as s:
        rows = list(s.scalars(select(Rejection)))
    assert [(r.user, r.reason) for r in rows] == [("boss", "worse on airline negatives")] and rows[0].created_at
    v1 = next(v for v in services.registry.versions() if v.name == "v1")
    row = dict(zip(VERSION_COLUMNS, version_row(v1)))
    assert row["rejected"].startswith("by boss 20") and row["rejected"].endswith(": worse on airline negatives")
    assert services.registry.active_version().name == "v2"  # a rejection changes what serves nothing
    services.engine.dispose()


def test_the_activation_message_names_the_int8_build_only_when_one_follows(two_versions, tmp_path, tiny_csv):
    import shutil

    from bertdemo.config import Settings
    from bertdemo.services import Services

    shutil.copytree(two_versions, tmp_path / "runtime")
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "runtime", dataset_path=tiny_csv,
                                        datasets=("airline",)))
    try:
        msg = TrainingActions(services).activate("v1", None, "")  # no accounts: a local admin
        assert msg.startswith("Now serving **v1** in every tab. The annotation queues are re-scored")
        assert "int8" not in msg  # BERTDEMO_SERVING=bf16 builds no int8 graph
        services.jobs.wait_rescore(60)
    finally:
        services.engine.dispose()


def test_the_versions_table_gives_a_max_steps_runs_real_length():
    from datetime import datetime

    from bertdemo.actions.train import VERSION_COLUMNS, trained_for, version_row
    from bertdemo.training.registry import VersionInfo

    def version(metrics, config):
        return VersionInfo(1, "v1", "v1", datetime(2026, 12, 4), "t", True, metrics, "", config)

    config = {"epochs": 1.0, "batch_size": 32, "max_steps": 30, "learning_rate": 8e-5, "max_length": 64}
    stored = version({"steps": 30, "epochs_trained": 0.0393, "ece": 0.0512, "macro_f1": 0.7}, config)
    row = dict(zip(VERSION_COLUMNS, version_row(stored)))
    assert row["trained for"] == "30 steps (0.04 epochs)" and row["calibration (ECE)"] == 0.0512
    assert "1.0 ep" in row["settings"] and "max 30 steps" in row["settings"]  # what was asked, beside what ran
    # a version saved before the length was stored: counted as the loop counts it
    older = version({"train_size": 24449}, config)
    assert trained_for(older) == "30 steps (0.04 epochs)"
    assert trained_for(version({"train_size": 24449}, config | {"max_steps": None})) == "765 steps (1.00 epochs)"
    assert trained_for(version({}, {})) == ""
