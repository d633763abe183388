"""The leave-one-topic-out protocol (training/topics.py, bench/ood.py): no topic leaks into its own
training set, the in-domain hold-out is never trained on, budgets keep each (topic, label) share,
and the balanced macro-F1 weighs every class the same."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.training.config import TrainConfig
from bertdemo.training.topics import macro_f1, recipe_line, topic_folds

TOPICS = ["airline"] * 600 + ["cars"] * 300 + ["apple"] * 200 + ["claritin"] * 100


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    return rng.choice(3, size=len(TOPICS), p=[0.6, 0.25, 0.15])


def test_every_topic_is_left_out_once_and_never_trained_on(labels):
    folds = topic_folds(TOPICS, labels)
    topics = np.array(TOPICS)
    assert [f.topic for f in folds] == ["airline", "cars", "apple", "claritin"]
    for f in folds:
        assert not (topics[f.train] == f.topic).any() and not (topics[f.val] == f.topic).any()
        assert set(f.test) == set(np.flatnonzero(topics == f.topic))  # the whole topic is scored
        assert not set(f.train) & set(f.val)
        # everything else is trained on, apart from the in-domain hold-out and the small validation slice
        others = set(np.flatnonzero(topics != f.topic)) - set(f.in_domain)
        assert set(f.train) | set(f.val) == others


def test_the_in_domain_hold_out_is_the_same_and_never_trained_on(labels):
    folds = topic_folds(TOPICS, labels, in_domain_fraction=0.1)
    held = folds[1].in_domain
    assert len(held) == 60 and set(np.array(TOPICS)[held]) == {"airline"}
    assert len(folds[0].in_domain) == 0  # the airline fold scores every airline row as its test
    for f in folds[1:]:
        assert np.array_equal(f.in_domain, held)
        assert not set(held) & (set(f.train) | set(f.val))


def test_a_budget_draws_the_same_rows_keeping_each_topic_and_label_share(labels):
    a = topic_folds(TOPICS, labels, budget=300, test_cap=50)
    b = topic_folds(TOPICS, labels, budget=300, test_cap=50)
    topics = np.array(TOPICS)
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.train, fb.train) and np.array_equal(fa.test, fb.test)  # paired across recipes
        assert abs(len(fa.train) - 300) <= 6 and len(fa.test) == 50
        assert not (topics[fa.train] == fa.topic).any()
        pool = topic_folds(TOPICS, labels)[[f.topic for f in a].index(fa.topic)].train
        for t in set(topics[pool]):  # each topic's share of the budget is its share of the pool, within a row or two
            assert (topics[fa.train] == t).mean() == pytest.approx((topics[pool] == t).mean(), abs=0.01)


def test_balanced_macro_f1_weighs_every_class_the_same():
    y = np.array([0] * 90 + [1] * 10)
    always_0 = np.zeros(100, dtype=int)
    assert macro_f1(y, always_0, 3) == pytest.approx((2 * 90 / 190) / 2)  # F1 0.947 and 0 over the two present
    # balanced: class 0 and class 1 weigh 50 each: precision of 0 = 0.5, recall 1 -> F1 2/3; class 1 F1 0
    assert macro_f1(y, always_0, 3, balanced=True) == pytest.approx((2 / 3) / 2)
    assert macro_f1(y, y, 3, balanced=True) == 1.0


def test_the_default_recipe_reports_its_measured_out_of_domain_figures_and_others_say_not_measured():
    line = recipe_line(TrainConfig())
    assert line.startswith("out of domain (this recipe, bench/ood.py: leave one of 5 topics out")
    # how a run goes, not what it learns
    assert recipe_line(TrainConfig(seed=7, evals_per_epoch=1, max_steps=10)) == line
    for other in (TrainConfig(learning_rate=1e-4), TrainConfig(init_from="active"), TrainConfig(label_smoothing=0.3)):
        assert recipe_line(other).startswith("out of domain: this recipe was not measured")
