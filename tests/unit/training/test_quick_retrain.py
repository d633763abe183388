"""The quick retrain (training/quick_retrain.py, training/inputs.py's quick_inputs): it trains on the
labels changed since the active version plus a stratified, seeded replay sample, and its report and
Versions row say exactly that; it validates on the active version's validation split and starts from
the active version's weights; it is refused, with the reason, when nothing changed, when nothing is
active, and when the active version comes from another base encoder."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.train import STARTS, TrainingActions, version_row
from bertdemo.db import examples
from bertdemo.errors import BadInput
from bertdemo.services import Services
from bertdemo.training import runner as runner_module
from bertdemo.training.config import TrainConfig, TrainingError
from bertdemo.training.inputs import read_inputs
from bertdemo.training.quick_retrain import (
    REPEAT_CHANGED,
    QuickSelection,
    changed_ids,
    read_validation_texts,
    replay_sample,
    select,
)
from tests.support import LABELS, TINY_TRAIN

QUICK_RETRAIN = TrainConfig(**(TINY_TRAIN.to_dict() | {"init_from": "active", "train_on": "changed", "max_steps": 1}))
REPLAY = 40


# ------------------------------------------------------------------ the selection, plain
def test_changed_ids_are_new_or_relabelled_examples():
    assert changed_ids({1: "a", 2: "b", 3: "c", 4: "a"}, {1: "a", 2: "a", 3: "c", 5: "b"}) == [2, 4]


def test_the_replay_sample_is_stratified_and_seeded():
    ids = list(range(1000))
    strata = {i: ("airline|negative" if i < 600 else "general|neutral" if i < 900 else "general|positive") for i in ids}
    a = replay_sample(ids, strata, 100, seed=1)
    assert len(a) == len(set(a)) == 100
    assert Counter(strata[i] for i in a) == {"airline|negative": 60, "general|neutral": 30, "general|positive": 10}
    assert replay_sample(ids, strata, 100, seed=1) == a  # seeded
    assert replay_sample(ids, strata, 100, seed=2) != a
    assert replay_sample(ids[:50], strata, 100, seed=1) == ids[:50]  # fewer than asked: all of them


def test_the_selection_keeps_the_validation_split_out_of_training_and_refuses_when_nothing_changed():
    trained = {i: "neg" for i in range(100)}
    current = dict(trained) | {3: "pos", 4: "pos", 50: "pos", 200: "neu"}  # 50 is validated on; 200 is new
    strata = {i: lab for i, lab in current.items()}
    pick = select("v2", current, trained, validation=range(40, 60), strata=strata, replay=10, seed=0)
    assert pick.changed == (3, 4, 200) and pick.changed_in_validation == 1
    assert pick.validation == tuple(range(40, 60)) and not set(pick.replay) & (set(pick.validation) | {3, 4, 200})
    assert len(pick.replay) == 10
    assert pick.training_ids() == [3] * REPEAT_CHANGED + [4] * REPEAT_CHANGED + [200] * REPEAT_CHANGED + list(pick.replay)
    assert pick.line() == ("quick retrain from v2: 3 changed labels + 10 replay rows (1 more changed labels are in the "
                           "validation split: validated on, not trained on)")
    with pytest.raises(TrainingError, match="No label changed since v2 was trained"):
        select("v2", trained, trained, range(40, 60), strata, 10, 0)
    with pytest.raises(TrainingError, match="all in its validation split"):
        select("v2", trained | {50: "pos"}, trained, range(40, 60), strata, 10, 0)


def test_a_quick_retrain_needs_the_active_version_as_its_start():
    with pytest.raises(BadInput, match="starts from the active version"):
        TrainConfig(train_on="changed")
    c = TrainingActions.config_from_form(1, 1e-4, 16, 32, 3, start_from=STARTS[2])
    assert (c.init_from, c.train_on) == ("active", "changed")
    assert TrainingActions.config_from_form(1, 1e-4, 16, 32, 3, start_from=STARTS[1]).train_on == "all"


# ------------------------------------------------------------------ through the runner
@pytest.fixture
def trained_copy(tmp_path, trained_services) -> Services:
    """A copy of the tiny trained data directory (v1 active), with a small replay sample."""
    data = tmp_path / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    services = Services.create(trained_services.settings.with_(data_dir=data, quick_retrain_replay=REPLAY))
    yield services
    services.engine.dispose()


def _relabel(services: Services, n: int) -> dict[int, str]:
    """Give `n` labelled examples of v1's training split another label, as a person would; {id: new label}."""
    v1 = services.registry.active_version()
    folder = services.registry.folder(v1)
    with Session(services.engine) as s, s.begin():
        val = {found[0] for found in examples.review_rows(s, read_validation_texts(folder, v1.name)).values()}
        rows = [r for r in examples.labeled_examples(s) if r[0] not in val][:n]
        new = {i: LABELS[(LABELS.index(lab) + 1) % len(LABELS)] for i, _t, lab in rows}
        for i, label in new.items():
            examples.set_label(s, i, label, "ann", "annotator", LABELS)
    return new


def test_a_quick_retrain_trains_on_the_changed_labels_and_the_replay_and_says_so(trained_copy, monkeypatch):
    services = trained_copy
    v1 = services.registry.active_version()
    new = _relabel(services, 12)
    seen = {}
    real_start, real_fit = runner_module.start_model, runner_module.fit

    def start_model(source, *args, **kwargs):
        seen["source"] = source
        return real_start(source, *args, **kwargs)

    def fit(clf, data, config, **kwargs):
        seen["data"] = data
        return real_fit(clf, data, config, **kwargs)

    monkeypatch.setattr(runner_module, "start_model", start_model)
    monkeypatch.setattr(runner_module, "fit", fit)
    inputs = read_inputs(services.settings, services.engine, services.registry, QUICK_RETRAIN)
    services.jobs.run_sync(QUICK_RETRAIN, user="t", activate=False)

    assert seen["source"] == str(services.registry.folder(v1))  # the active version's weights, not the base encoder
    data = seen["data"]
    with Session(services.engine) as s:
        current = {i: lab for i, _t, lab in examples.labeled_examples(s)}
        text_of = {i: t for i, t, _l in examples.labeled_examples(s)}
    by_text = {t: i for i, t in text_of.items()}
    trained = Counter(by_text[t] for t in data.texts)
    assert all(trained[i] == REPEAT_CHANGED for i in new)  # each correction (REPEAT_CHANGED times)
    replay = set(trained) - set(new)
    assert len(replay) == REPLAY and all(trained[i] == 1 for i in replay)
    assert len(data.texts) == REPEAT_CHANGED * 12 + REPLAY
    assert [LABELS[y] for y in data.labels] == [current[by_text[t]] for t in data.texts]  # today's labels
    # validated on v1's own validation split (today's labels), which neither version trains on
    v1_val = read_validation_texts(services.registry.folder(v1), v1.name)
    assert list(data.val_texts) == sorted(v1_val, key=lambda t: by_text[t]) and not set(v1_val) & set(data.texts)

    v2 = services.registry.versions()[0]
    line = "quick retrain from v1: 12 changed labels + 40 replay rows"
    assert inputs.trained_on == line
    assert v2.name == "v2" and v2.metrics["trained_on"] == line and v2.metrics["train_size"] == REPEAT_CHANGED * 12 + REPLAY
    assert f"Trained on: {line}." in v2.report
    row = version_row(v2)
    assert row[5].endswith(f" · {line}") and "changed labels + replay" in row[6]
    assert services.registry.active_version().name == "v1"  # registered only (activate=False)


FORM = TrainingActions.config_from_form(1, 1e-4, 16, 32, 3, start_from=STARTS[2], max_steps=1)


def test_a_quick_retrain_is_refused_with_the_reason(trained_copy):
    actions, form = TrainingActions(trained_copy), FORM
    with pytest.raises(TrainingError, match="No label changed since v1 was trained"):
        actions.start(form, None)  # refused at once, not as a failed run
    assert not trained_copy.jobs.status().running and len(trained_copy.registry.versions()) == 1
    other = trained_copy.settings.with_(model="some-org/another-encoder")
    with pytest.raises(TrainingError, match="fine-tuned from another base encoder"):
        read_inputs(other, trained_copy.engine, trained_copy.registry, QUICK_RETRAIN)


def test_a_quick_retrain_needs_an_active_version(services):
    services.ensure_dataset()  # labelled, never trained: nothing is active
    with pytest.raises(TrainingError, match="starts from the active version; there is none yet"):
        TrainingActions(services).start(FORM, None)


def test_the_line_counts_what_the_selection_holds():
    pick = QuickSelection("v7", (1, 2), (5, 6, 7), (9,))
    assert pick.line() == "quick retrain from v7: 2 changed labels + 3 replay rows"
