"""The first start's quick version (training/quick_first.py): the stratified sample, the logistic
regression folded into the classifier's own head (same probabilities), and the first start that
registers and serves it, then lets the fine-tune replace it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.train import version_row
from bertdemo.config import packaged_model_path
from bertdemo.db import versions as db_versions
from bertdemo.model.classifier import Classifier
from bertdemo.services import Services
from bertdemo.training import quick_first
from bertdemo.ui.demo import status_line
from tests.support import LABELS


def test_the_sample_keeps_each_strata_share_and_every_stratum():
    keys = [("airline", 0)] * 600 + [("airline", 1)] * 300 + [("general", 2)] * 97 + [("general", 0)] * 3
    picked = quick_first.stratified_sample(keys, 100, seed=1)
    got = Counter(keys[i] for i in picked)
    assert got == {("airline", 0): 60, ("airline", 1): 30, ("general", 2): 10, ("general", 0): 1}
    assert len(set(picked.tolist())) == len(picked) and list(picked) == sorted(picked)
    assert (quick_first.stratified_sample(keys, 100, seed=1) == picked).all()  # the seed decides
    assert list(quick_first.stratified_sample(keys[:5], 100)) == [0, 1, 2, 3, 4]  # all when the size covers them


@pytest.mark.parametrize("labels", [LABELS, ("negative", "positive")])
def test_the_head_gives_the_regressions_probabilities(tiny_csv, labels):
    """Fitted on what the head sees, folded into the head: the classifier (fp32) answers exactly the
    logistic regression's probabilities, for two classes as for three."""
    df = pd.read_csv(tiny_csv, keep_default_na=False)
    df = df[df.label.isin(labels)]
    texts, y = df.text.tolist(), np.array([labels.index(lab) for lab in df.label])
    clf = Classifier.load(packaged_model_path(), labels, precision="fp32", pooling="mean")
    x = quick_first.head_inputs(clf, texts)
    assert x.shape == (len(texts), clf.model.config.hidden_size) and np.abs(x).max() < 1  # tanh(dense(mean))
    head = quick_first.fit_head(x[::2], y[::2], len(labels))  # every class (the file is sorted by label)
    quick_first.install_head(clf, head)
    served = clf.predict_proba(texts)
    np.testing.assert_allclose(served, head.model.predict_proba(x), atol=2e-5)
    np.testing.assert_allclose(head.proba(x), head.model.predict_proba(x), atol=1e-6)  # float32 weights
    assert (served.argmax(1) == y).mean() > 0.6  # it learnt something


def test_a_class_the_sample_lacks_gets_no_probability():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)), np.array([0, 2] * 20)
    head = quick_first.fit_head(x, y, 3)
    p = head.proba(x)
    assert p[:, 1].max() < 1e-9 and np.allclose(p[:, [0, 2]], head.model.predict_proba(x), atol=1e-9)


def test_a_first_start_serves_the_quick_version_until_the_fine_tune_replaces_it(settings, monkeypatch):
    services = Services.create(settings.with_(quick_first=True, quick_first_sample=90))
    seen: dict = {}
    real_train = services.jobs._train

    def spy(*args, **kwargs):  # the run's fine-tune starts: what serves now, and what the page says
        seen["serving"] = services.registry.active().name
        seen["status"] = status_line(services)
        seen["info"] = services.registry.active_version()
        return real_train(*args, **kwargs)

    monkeypatch.setattr(services.jobs, "_train", spy)
    services.start()
    assert services.jobs.wait(600).state == "succeeded"
    quick = seen["info"]
    assert seen["serving"] == quick.name == "v1" and quick.quick and quick.kind_text == "quick, frozen encoder"
    assert "Serving **v1** (quick, frozen encoder, validation macro-F1" in seen["status"]
    assert quick.train_config["kind"] == "quick" and quick.train_config["freeze_encoder"]
    assert quick.metrics["train_size"] in range(88, 93) and quick.metrics["val_size"] == 24
    assert 0 <= quick.macro_f1 <= 1 and set(quick.metrics["per_dataset"]) == {"airline"}
    assert quick.report.startswith("Quick version (quick, frozen encoder)") and "macro-F1 per dataset" in quick.report
    row = version_row(services.registry.get(quick.id))
    assert row[5] == f"{quick.metrics['train_size']} tweets, logistic regression" and row[6] == "quick, frozen encoder"
    # the fine-tune of the same run replaced it, with no gate against the quick version
    active = services.registry.active_version()
    assert active.name == "v2" and active.kind == "fine-tune" and services.registry.active().name == "v2"
    assert active.metrics["val_size"] == quick.metrics["val_size"]  # the same validation split
    with Session(services.engine) as s:
        acts = [(a.version_id, a.user) for a in reversed(db_versions.activations(s, 5))]
    assert acts == [(quick.id, "system"), (active.id, "system")]
    assert status_line(services).startswith("Serving model **v2**")
    # the quick version is an ordinary folder: it loads and serves as any version
    again = services.registry.load(quick)
    assert again.predict(["the crew was lovely"])[0].label in LABELS
    services.start()  # a fine-tuned version exists: a restart trains nothing
    assert services.jobs.status().run_id == 1 and not services.jobs.status().running
    services.engine.dispose()
    # with the int8 path on (BERTDEMO_SERVING=auto) a quick version serves on PyTorch: no graph built
    auto = Services.create(settings.with_(serving="auto", bootstrap=False))
    state = auto.registry.prepare_serving(quick, auto.registry.load(quick, int8_now=False))
    assert not state.pending and state.gate is None and "a quick first version" in state.note
    assert not (auto.registry.folder(quick) / "int8").exists()
    auto.engine.dispose()


def test_a_start_after_a_quick_version_alone_fine_tunes_without_another_quick_one(settings, monkeypatch):
    """Killed during the first fine-tune: the next start serves the quick version and fine-tunes again."""
    services = Services.create(settings.with_(quick_first=True, quick_first_sample=60))
    monkeypatch.setattr(services.jobs, "_train", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    services.start()
    assert services.jobs.wait(600).state == "failed"
    assert [v.kind for v in services.registry.versions()] == ["quick"]
    monkeypatch.undo()
    built = []
    monkeypatch.setattr(quick_first, "build", lambda *a, **k: built.append(1))
    restarted = Services.create(services.settings)
    restarted.start()
    assert restarted.registry.active().name == "v1"  # serves while it fine-tunes
    assert restarted.jobs.wait(600).state == "succeeded" and not built
    assert [v.kind for v in restarted.registry.versions()] == ["fine-tune", "quick"]
    restarted.engine.dispose()
    services.engine.dispose()


def test_quick_first_off_trains_version_1_as_before(settings, monkeypatch):
    built = []
    monkeypatch.setattr(quick_first, "build", lambda *a, **k: built.append(1))
    services = Services.create(settings.with_(quick_first=False))
    services.start()
    assert services.jobs.wait(600).state == "succeeded" and not built
    assert [(v.name, v.kind) for v in services.registry.versions()] == [("v1", "fine-tune")]
    services.engine.dispose()


def test_the_setting_turns_it_off_and_sizes_the_sample():
    from bertdemo.config import Settings

    assert Settings.from_env({}).quick_first is True and Settings().quick_first_sample == 3000
    assert Settings.from_env({"BERTDEMO_QUICK_FIRST": "0"}).quick_first is False
    assert Settings.from_env({"BERTDEMO_QUICK_FIRST": "off"}).quick_first is False
    assert Settings.from_env({"BERTDEMO_QUICK_FIRST": "1"}).quick_first is True
    assert Settings.from_env({"BERTDEMO_QUICK_FIRST_SAMPLE": "500"}).quick_first_sample == 500
    with pytest.raises(ValueError, match="quick_first_sample must be in"):
        Settings.from_env({"BERTDEMO_QUICK_FIRST_SAMPLE": "5"})
