"""Registry: what a version holds on disk and in the database, activation as an atomic swap,
rollback, the errors for unknown or missing versions, and crash safety of saving (a failed save
registers nothing and leaves no folder; a start removes what a killed save left)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from bertdemo.db import examples, versions
from bertdemo.errors import NotFound
from bertdemo.model.classifier import Classifier
from bertdemo.services import Services
from bertdemo.training.config import FitResult, TrainConfig
from bertdemo.training.registry import BrokenVersion, NoModelError
from tests.support import TINY_TRAIN

QUICK = TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 2}))


def test_no_version_yet(services):
    assert services.registry.active_version() is None and services.registry.versions() == []
    with pytest.raises(NoModelError, match="No model version is active"):
        services.registry.active()
    with pytest.raises(NotFound, match="No model version with id 42"):
        services.registry.get(42)


def test_a_saved_version_holds_weights_metrics_settings_and_label_snapshot(services):
    services.ensure_dataset()
    services.jobs.run_sync(QUICK, user="alice", activate=False)
    [v] = services.registry.versions()
    assert (v.name, v.created_by, v.is_active) == ("v1", "alice", False)
    assert v.path == "models/v1"  # relative to the data directory: a moved data directory still serves
    path = services.registry.folder(v)
    assert path.parent == services.settings.models_dir and not list(path.parent.glob(".*partial"))
    for f in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "history.json",
              "train_config.json", "classification_report.txt", "labels_snapshot.csv"):
        assert (path / f).is_file(), f
    assert json.loads((path / "train_config.json").read_text()) == QUICK.to_dict() == v.train_config
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["macro_f1"] == pytest.approx(v.macro_f1) and len(metrics["confusion"]) == 3
    snapshot = (path / "labels_snapshot.csv").read_text().splitlines()
    with Session(services.engine) as s:
        expected = [f"{i},{lab}" for i, _t, lab in examples.labeled_examples(s)]
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
    with pytest.raises(NotFound):
        reg.activate(999)
    assert reg.active().name == "v1"  # a failed activation changes nothing


def _result() -> FitResult:
    return FitResult(labels=("negative", "neutral", "positive"), best_step=1, best_val_loss=1.0, macro_f1=0.5,
                     accuracy=0.5, report="r", report_dict={}, confusion=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_a_save_that_fails_midway_registers_nothing_and_leaves_no_folder(services, base_clf, monkeypatch):
    reg = services.registry
    real_save = Classifier.save

    def dies_after_the_weights(self, path):
        real_save(self, path)  # the weights are written, then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "save", dies_after_the_weights)
    with pytest.raises(KeyboardInterrupt):
        reg.save(base_clf, _result(), QUICK, None, "t", [])
    assert reg.versions() == [] and list(services.settings.models_dir.iterdir()) == []
    monkeypatch.setattr(Classifier, "save", real_save)
    info = reg.save(base_clf, _result(), QUICK, None, "t", [])  # the next save takes the same name
    assert info.name == "v1" and sorted(p.name for p in services.settings.models_dir.iterdir()) == ["v1"]
    assert Classifier.load(reg.folder(info), base_clf.labels).predict(["ok"])[0].label in base_clf.labels


def test_start_removes_what_a_killed_save_or_run_left_and_keeps_registered_versions(settings):
    services = Services.create(settings.with_(bootstrap=False))
    root = services.settings.models_dir
    with Session(services.engine) as s, s.begin():  # two registered versions (files faked)
        for name in ("v1", "v2"):
            versions.add_version(s, name=name, path=str(root / name), base_model="b", created_by="t")
    # a SIGKILL runs no cleanup: mid-write (.v3.partial), after the rename but before the row was
    # committed (v3), a ZeroGPU scratch folder (.run-4); plus things that are not the app's
    for leftover in (".v3.partial", "v3", ".run-4", "v1", "v2", "notes", "v4.bak"):
        (root / leftover).mkdir(parents=True)
        (root / leftover / "model.safetensors").write_bytes(b"x")
    (root / "README.txt").write_text("mine")
    Services.create(services.settings).start()  # the next app start
    assert sorted(p.name for p in root.iterdir()) == ["README.txt", "notes", "v1", "v2", "v4.bak"]
    assert [v.name for v in services.registry.versions()] == ["v2", "v1"]
    assert services.registry.cleanup_leftovers() == []  # nothing left to do


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_corrupted_active_version_falls_back_to_the_newest_that_loads(two_versions, tmp_path, trained_services):
    from bertdemo.db import versions as db_versions
    from bertdemo.ui.demo import status_line

    data = _copy(two_versions, tmp_path / "runtime")
    (data / "models" / "v2" / "model.safetensors").write_bytes(b"\0" * 100)  # a disk that lost the file's content
    services = Services.create(trained_services.settings.with_(data_dir=data))
    services.start()
    assert services.registry.active_version().name == "v1"
    assert services.registry.active().name == "v1"  # what every tab serves
    problem = services.registry.problem
    assert problem.startswith("Model version v2 cannot be loaded from") and "Serving v1 instead" in problem
    assert "Serving model **v1**" in status_line(services) and "Warning:" in status_line(services)
    with Session(services.engine) as s:
        last = db_versions.activations(s, 1)[0]
        assert (last.user, last.reason.startswith("at start: Model version v2 cannot be loaded")) == ("system", True)
    services.engine.dispose()


def test_no_loadable_version_says_so_instead_of_an_internal_error(two_versions, tmp_path, trained_services):
    import shutil

    from bertdemo.actions.predict import PredictActions

    data = _copy(two_versions, tmp_path / "runtime")
    shutil.rmtree(data / "models" / "v1")
    (data / "models" / "v2" / "config.json").unlink()
    services = Services.create(trained_services.settings.with_(data_dir=data))
    services.start()  # versions exist: no automatic retraining
    assert services.registry.nothing_servable and not services.jobs.status().running
    assert services.registry.active_version().name == "v2"  # kept: fixing a setting and restarting serves it
    msg = services.registry.problem
    assert msg.startswith("No model version can be served:") and "its folder" in msg and "has no config.json" in msg
    with pytest.raises(NoModelError, match="No model version can be served"):
        PredictActions(services).predict("hello")
    services.engine.dispose()


def test_a_folder_removed_while_serving_gives_a_message(two_versions, tmp_path, trained_services):
    import shutil

    data = _copy(two_versions, tmp_path / "runtime")
    services = Services.create(trained_services.settings.with_(data_dir=data))
    shutil.rmtree(data / "models" / "v1")
    with pytest.raises(BrokenVersion, match=r"Model version v1 cannot be loaded: its folder .*models/v1 does not exist"):
        services.registry.activate(services.registry.versions()[-1].id)
    services.engine.dispose()


def test_the_int8_gate_compares_on_the_validation_split_or_else_on_a_sample(trained_services, tmp_path):
    import shutil

    from bertdemo.training import files, serving

    data = tmp_path / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    services = Services.create(trained_services.settings.with_(data_dir=data))
    info = services.registry.active_version()
    texts, y, on, calibration = serving.gate_set(services.engine, services.registry.folder(info), info.name,
                                                 services.settings.labels)
    assert on == "the validation split of v1" and len(texts) == len(y) > 0
    assert calibration and not set(calibration) & set(texts)  # calibrated on other texts than it is gated on
    (services.registry.folder(info) / files.VALIDATION_FILE).unlink()  # a version saved without it
    texts, y, on, calibration = serving.gate_set(services.engine, services.registry.folder(info), info.name,
                                                 services.settings.labels)
    with Session(services.engine) as s:
        labelled = {t: lab for _i, t, lab in examples.labeled_examples(s)}
    assert on == "a sample of the labelled examples" and 0 < len(texts) <= serving.GATE_SAMPLE
    assert [services.settings.labels[i] for i in y] == [labelled[t] for t in texts]
    if set(labelled) - set(texts):
        assert calibration and not set(calibration) & set(texts)
    else:  # the tiny sample is all in the gate set: nothing else to calibrate on but its texts
        assert calibration == texts[:serving.CALIBRATION_SAMPLE]
