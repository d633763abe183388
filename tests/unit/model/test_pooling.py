"""Mean pooling for the classifier's head: padding never changes a text's prediction, the choice is
saved with the version and loads with it, and the first-start recipe can use it."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.config import packaged_model_path
from bertdemo.model.classifier import Classifier
from bertdemo.model.pooling import MeanPooler, pooling_of, use_pooling
from tests.support import LABELS


@pytest.fixture(scope="module")
def mean_clf() -> Classifier:
    return Classifier.load(packaged_model_path(), LABELS, pooling="mean", precision="fp32")


def test_mean_pooling_ignores_padding_and_differs_from_cls(mean_clf, base_clf):
    alone = mean_clf.predict_proba(["thanks for the upgrade"])[0]
    padded = mean_clf.predict_proba(["thanks for the upgrade", "a much longer text " * 10])[0]
    assert np.allclose(alone, padded, atol=1e-5)
    assert isinstance(mean_clf.model.base_model.pooler, MeanPooler) and pooling_of(mean_clf.model) == "mean"
    assert pooling_of(base_clf.model) == "cls"


def test_the_pooling_is_saved_with_the_version(mean_clf, tmp_path):
    mean_clf.save(tmp_path / "v")
    again = Classifier.load(tmp_path / "v", LABELS, precision="fp32")  # no pooling asked: as saved
    assert pooling_of(again.model) == "mean"
    text = ["the flight was delayed"]
    assert np.allclose(again.predict_proba(text), mean_clf.predict_proba(text), atol=1e-5)
    with pytest.raises(ValueError, match="cannot be switched back"):
        use_pooling(again.model, "cls")
    with pytest.raises(ValueError, match="pooling must be one of"):
        use_pooling(again.model, "max")


def test_a_run_starting_from_a_version_keeps_its_pooling():
    from bertdemo.training.config import TrainConfig

    assert TrainConfig(pooling="mean").new_head_pooling == "mean"
    assert TrainConfig(pooling="mean", init_from="active").new_head_pooling is None
    with pytest.raises(Exception, match="pooling"):
        TrainConfig(pooling="max")
