"""Registry: what a version holds on disk and in the database, activation as an atomic swap,
rollback, and the errors for unknown or missing versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_TRAIN
from sqlalchemy.orm import Session

from bertdemo import store
from bertdemo.registry import NoModelError
from bertdemo.train import TrainConfig

QUICK = TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 2}))


def test_no_version_yet(services):
    assert services.registry.active_version() is None and services.registry.versions() == []
    with pytest.raises(NoModelError, match="No model version is active"):
        services.registry.active()
    with pytest.raises(store.StoreError, match="no model version with id 42"):
        services.registry.get(42)


def test_a_saved_version_holds_weights_metrics_settings_and_label_snapshot(services):
    services.ensure_dataset()
    services.jobs.run_sync(QUICK, user="alice", activate=False)
    [v] = services.registry.versions()
    assert (v.name, v.created_by, v.is_active) == ("v1", "alice", False)
    path = Path(v.path)
    assert path.parent == services.settings.models_dir and not list(path.parent.glob(".*partial"))
    for f in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "history.json",
              "train_config.json", "classification_report.txt", "labels_snapshot.csv"):
        assert (path / f).is_file(), f
    assert json.loads((path / "train_config.json").read_text()) == QUICK.to_dict() == v.train_config
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["macro_f1"] == pytest.approx(v.macro_f1) and len(metrics["confusion"]) == 3
    snapshot = (path / "labels_snapshot.csv").read_text().splitlines()
    with Session(services.engine) as s:
        expected = [f"{i},{lab}" for i, _t, lab in store.labeled_examples(s)]
    assert snapshot[0] == "example_id,label" and snapshot[1:] == expected and len(expected) > 200
    assert services.registry.active_version() is None  # registered, not serving


def test_activation_swaps_atomically_and_rolls_back(services):
    services.ensure_dataset()
    services.jobs.run_sync(QUICK, user="t")
    services.jobs.run_sync(TrainConfig(**(QUICK.to_dict() | {"seed": 7})), user="t")
    reg = services.registry
    v1, v2 = sorted(reg.versions(), key=lambda v: v.id)
    assert reg.active_version().id == v2.id and reg.active().name == "v2"
    held = reg.active()  # a request in flight keeps the model it started with
    info = reg.activate(v1.id)
    assert info.is_active and info.name == "v1"
    assert reg.active() is not held and reg.active().name == "v1" and reg.active_id() == v1.id
    assert held.predict(["still works"])[0].label in held.labels
    assert [v.name for v in reg.versions() if v.is_active] == ["v1"]  # exactly one active row
    with pytest.raises(store.StoreError):
        reg.activate(999)
    assert reg.active().name == "v1"  # a failed activation changes nothing
