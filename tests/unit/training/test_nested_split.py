"""The nested validation split of a run that starts from a version (training/splits.py, training/inputs.py):
it never validates on an example that version trained on, keeps that version's validation examples that
are still labelled, splits only the examples it never saw (stratified, at val_fraction), and the version's
report says which validation it used; a run from the base encoder splits as before."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.datasets import stratified_split
from bertdemo.db import examples
from bertdemo.services import Services
from bertdemo.training.config import TrainConfig, TrainingError
from bertdemo.training.inputs import read_inputs
from bertdemo.training.quick_retrain import SNAPSHOT_FILE, read_validation_texts
from bertdemo.training.splits import StartVersion, nested_split, read_start, split_new
from tests.support import LABELS, TINY_TRAIN

FROM_ACTIVE = TrainConfig(**(TINY_TRAIN.to_dict() | {"init_from": "active", "max_steps": 1}))


# ------------------------------------------------------------------ the split, plain
def test_the_nested_split_keeps_the_start_validation_and_splits_only_the_new_examples():
    ids = list(range(100))  # 0-69 trained on by v3, 70-79 its validation, 80-99 new; 75 no longer labelled
    ids.remove(75)
    y = np.array([i % 2 for i in ids])
    groups = ["airline"] * len(ids)
    start = StartVersion("v3", frozenset(range(80)), ())
    split = nested_split(ids, y, groups, start, [*range(70, 80), 500], val_fraction=0.25, seed=0)
    val_ids, train_ids = {ids[k] for k in split.val}, {ids[k] for k in split.train}
    assert not val_ids & set(range(70))  # never an example v3 trained on
    assert set(range(70, 80)) - {75} <= val_ids and split.kept == 9  # its validation, still labelled
    new_val = val_ids - set(range(70, 80))
    assert new_val <= set(range(80, 100)) and split.new_val == len(new_val) == 5  # 20 new x 0.25
    assert split.new_train == 15 and train_ids == set(ids) - val_ids and len(split.train) + len(split.val) == 99
    assert sorted(np.bincount([i % 2 for i in new_val]).tolist()) == [2, 3]  # stratified: 10 of each class, 5 drawn
    assert split.line() == "every label, from v3; validation: 9 of v3's validation examples + 5 new"
    again = nested_split(ids, y, groups, start, range(70, 80), 0.25, 0)
    assert again.val.tolist() == split.val.tolist()  # seeded


def test_new_examples_too_few_to_stratify_are_drawn_plainly():
    tr, va = split_new(np.array([0, 1, 2, 0, 1]), [None] * 5, 0.4, seed=1)  # a class with one example
    assert len(va) == 2 and sorted(tr.tolist() + va.tolist()) == [0, 1, 2, 3, 4]
    tr, va = split_new(np.array([0, 1]), [None] * 2, 0.1, seed=1)
    assert va.tolist() == [] and tr.tolist() == [0, 1]
    tr, va = split_new(np.array([], dtype=int), [], 0.1, seed=1)
    assert tr.tolist() == va.tolist() == []


def test_read_start_reads_what_the_version_saw(tmp_path):
    assert read_start(tmp_path, "v1") is None  # saved without its labels snapshot
    (tmp_path / SNAPSHOT_FILE).write_text("example_id,label\n3,negative\n5,positive\n")
    assert read_start(tmp_path, "v1") == StartVersion("v1", frozenset({3, 5}), ())
    (tmp_path / "validation.csv").write_text("text,label\nhello,negative\n")
    assert read_start(tmp_path, "v1").validation_texts == ("hello",)


# ------------------------------------------------------------------ through read_inputs and the runner
@pytest.fixture
def trained_copy(tmp_path, trained_services) -> Services:
    """A copy of the tiny trained data directory (v1 active)."""
    data = tmp_path / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    services = Services.create(trained_services.settings.with_(data_dir=data))
    yield services
    services.engine.dispose()


def _as_if_new(services: Services, per_class: int) -> tuple[set[int], set[int], set[int]]:
    """Drop `per_class` trained examples of each class from v1's labels snapshot, as if labelled after
    v1, and unlabel 2 of v1's validation examples; (v1's trained ids, its validation ids, the new ids)."""
    v1 = services.registry.active_version()
    folder = services.registry.folder(v1)
    with Session(services.engine) as s, s.begin():
        val = {found[0] for found in examples.review_rows(s, read_validation_texts(folder, v1.name)).values()}
        labelled = examples.labeled_examples(s)
        for i in sorted(val)[:2]:
            examples.set_label(s, i, None, "ann", "annotator", LABELS)
    new = {i for lab in LABELS for i in [r[0] for r in labelled if r[2] == lab and r[0] not in val][:per_class]}
    with open(folder / SNAPSHOT_FILE, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["example_id"]) not in new]
    with open(folder / SNAPSHOT_FILE, "w", encoding="utf-8", newline="") as f:
        f.write("example_id,label\n")
        f.writelines(f"{r['example_id']},{r['label']}\n" for r in rows)
    trained = {int(r["example_id"]) for r in rows} - val
    return trained, val, new


def test_a_run_from_the_active_version_never_validates_on_what_it_trained_on(trained_copy):
    services = trained_copy
    trained, v1_val, new = _as_if_new(services, per_class=20)
    inputs = read_inputs(services.settings, services.engine, services.registry, FROM_ACTIVE)
    by_text = {t: i for i, t, _l in inputs.snapshot}
    val_ids, train_ids = {by_text[t] for t in inputs.data.val_texts}, {by_text[t] for t in inputs.data.texts}
    assert not val_ids & trained and trained <= train_ids
    assert val_ids & v1_val == set(sorted(v1_val)[2:])  # every validation example of v1 still labelled
    assert len(val_ids - v1_val) == round(len(new) * FROM_ACTIVE.val_fraction) == 6 and val_ids - v1_val <= new
    assert train_ids | val_ids == set(by_text.values()) and not train_ids & val_ids
    kept = len(v1_val) - 2
    assert inputs.trained_on == f"every label, from v1; validation: {kept} of v1's validation examples + 6 new"
    assert inputs.val_datasets == tuple("airline" for _ in inputs.data.val_texts)

    services.jobs.run_sync(FROM_ACTIVE, user="t", activate=False)
    v2 = services.registry.versions()[0]
    assert v2.name == "v2" and f"Trained on: {inputs.trained_on}." in v2.report
    assert v2.metrics["val_size"] == kept + 6
    saved = set(read_validation_texts(services.registry.folder(v2), "v2"))
    assert saved == set(inputs.data.val_texts)  # the next run from v2 keeps these: the set is nested


def test_a_run_from_the_base_encoder_splits_as_before(trained_copy):
    services = trained_copy
    _as_if_new(services, per_class=20)
    inputs = read_inputs(services.settings, services.engine, services.registry, TINY_TRAIN)
    y = np.array([LABELS.index(lab) for _i, _t, lab in inputs.snapshot])
    _tr, va = stratified_split(y, TINY_TRAIN.val_fraction, TINY_TRAIN.seed, ["airline"] * len(y))
    assert list(inputs.data.val_texts) == [inputs.snapshot[k][1] for k in va] and inputs.trained_on == ""


def test_a_start_version_without_its_snapshot_gets_a_fresh_split_that_says_so(trained_copy):
    services = trained_copy
    (services.registry.folder(services.registry.active_version()) / SNAPSHOT_FILE).unlink()
    inputs = read_inputs(services.settings, services.engine, services.registry, FROM_ACTIVE)
    assert "validation: a fresh split (v1 was saved without its labels snapshot" in inputs.trained_on


def test_a_nested_split_with_no_validation_left_is_refused(trained_copy):
    services = trained_copy
    v1 = services.registry.active_version()
    (services.registry.folder(v1) / "validation.csv").write_text("text,label\n")  # every example was trained on
    with pytest.raises(TrainingError, match="leaves no validation example it never trained on"):
        read_inputs(services.settings, services.engine, services.registry, FROM_ACTIVE)
