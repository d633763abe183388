"""The stopping pool (training/stopping.py): drawn once, seeded, from unlabelled and "general" examples
first; each saved version's predicted classes on it, stored by the runner (a failure only logs)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.db import keysets, signals, versions
from bertdemo.db.examples import NewExample, import_examples
from bertdemo.training import stopping
from tests.support import LABELS


def corpus(engine) -> dict[str, list[int]]:
    """10 unlabelled imported tweets, 5 labelled "general" ones and 15 labelled airline ones; ids by group."""
    rows = ([NewExample(f"open {i}", f"open {i}") for i in range(10)]
            + [NewExample(f"general {i}", f"general {i}", LABELS[i % 3], dataset="general") for i in range(5)]
            + [NewExample(f"airline {i}", f"airline {i}", LABELS[i % 3], dataset="airline") for i in range(15)])
    with Session(engine) as s, s.begin():
        import_examples(s, rows, "import", "test", LABELS)
    with Session(engine) as s:
        pref, rest = signals.pool_candidates(s)
        names = keysets.texts_by_id(s, [int(i) for i in (*pref, *rest)])
    return {"preferred": pref.tolist(), "rest": rest.tolist(), "names": names}


def add_version(engine, name: str) -> int:
    with Session(engine) as s, s.begin():
        return versions.add_version(s, name=name, path=f"models/{name}", base_model="m").id


class FakeModel:
    """predict_proba by the text: "... <k>" predicts class k % 3 (+ `shift`); records its batch sizes."""

    def __init__(self, shift: int = 0) -> None:
        self.shift, self.batches = shift, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(len(texts))
        out = np.zeros((len(texts), 3))
        for row, t in enumerate(texts):
            out[row, (int(t.rsplit(" ", 1)[1]) + self.shift) % 3] = 1.0
        return out


def test_the_draw_is_seeded_prefers_the_preferred_and_tops_up_from_the_rest():
    pref, rest = np.arange(1, 101), np.arange(101, 201)
    got = stopping.draw(pref, rest, 30)
    assert len(got) == 30 == len(set(got)) and set(got) <= set(pref) and got == sorted(got)
    assert stopping.draw(pref, rest, 30) == got and stopping.draw(pref, rest, 30, seed=1) != got
    topped = stopping.draw(pref, rest, 130)
    assert set(pref) <= set(topped) and len(set(topped) & set(rest)) == 30
    assert stopping.draw(pref[:3], rest[:4], 1000) == [1, 2, 3, 101, 102, 103, 104]  # all when fewer


def test_the_pool_is_drawn_once_and_each_version_stores_its_predictions(engine):
    ids = corpus(engine)
    settings = Settings(stop_pool_size=12)
    v1, v2 = add_version(engine, "v1"), add_version(engine, "v2")
    first = FakeModel()
    assert stopping.record_pool(engine, settings, v1, first) == 12
    with Session(engine) as s:
        pool = signals.pool_ids(s)
    assert len(pool) == 12 and set(pool) <= set(ids["preferred"])  # 15 unlabelled or general: enough
    assert stopping.record_pool(engine, settings.with_(stop_pool_size=50), v2, FakeModel(shift=1)) == 12
    with Session(engine) as s:
        assert signals.pool_ids(s) == pool and signals.pool_size(s) == 12  # drawn once: a new size changes nothing
        stored = signals.pool_predictions(s)
    expect = {i: LABELS[int(ids["names"][i].rsplit(" ", 1)[1]) % 3] for i in pool}
    assert stored[v1] == expect
    assert stored[v2] == {i: LABELS[(LABELS.index(p) + 1) % 3] for i, p in expect.items()}
    stopping.record_pool(engine, settings, v1, FakeModel(shift=2))  # saved again: replaced, not added to
    with Session(engine) as s:
        assert signals.pool_predictions(s)[v1] == {i: LABELS[(LABELS.index(p) + 2) % 3] for i, p in expect.items()}


def test_a_pool_larger_than_the_preferred_examples_takes_labelled_ones_and_predicts_in_batches(engine):
    ids = corpus(engine)
    v1 = add_version(engine, "v1")
    model = FakeModel()
    got = stopping.record_pool(engine, Settings(stop_pool_size=20), v1, model)
    with Session(engine) as s:
        pool = signals.pool_ids(s)
    assert got == 20 and set(ids["preferred"]) <= set(pool) and len(set(pool) & set(ids["rest"])) == 5
    assert model.batches == [20]
    assert stopping.predicted_classes(model, ["a 1"] * 7, LABELS, batch=3) == ["neutral"] * 7
    assert model.batches[1:] == [3, 3, 1]


def test_an_empty_corpus_has_no_pool(engine):
    v1 = add_version(engine, "v1")
    assert stopping.record_pool(engine, Settings(), v1, FakeModel()) == 0
    with Session(engine) as s:
        assert signals.pool_ids(s) == [] and signals.pool_predictions(s) == {}


def test_a_failure_is_logged_and_returns_zero(engine, caplog):
    corpus(engine)
    v1 = add_version(engine, "v1")

    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("out of memory")

    with caplog.at_level(logging.ERROR, logger="bertdemo.training.stopping"):
        assert stopping.record_pool_quietly(engine, Settings(stop_pool_size=12), v1, broken) == 0
    assert "could not store the stopping pool's predictions" in caplog.text and "out of memory" in caplog.text
    with Session(engine) as s:
        assert signals.pool_predictions(s) == {} and signals.pool_size(s) == 12  # the pool stays drawn
    with pytest.raises(RuntimeError, match="out of memory"):  # the plain call raises: its callers choose
        stopping.record_pool(engine, Settings(), v1, broken)


def test_the_runner_stores_the_pool_predictions_of_the_version_it_saves(trained_services):
    """Through the real runner (the session's tiny fine-tune): v1's predicted class on every one of
    the tiny sample's tweets (all labelled airline ones: fewer than the pool's 1,000), as it predicts them."""
    services = trained_services
    with Session(services.engine) as s:
        v1 = versions.get_version(s, services.registry.active_version().id)
        stored = signals.pool_predictions(s).get(v1.id, {})
        pool = signals.pool_ids(s)
        texts = keysets.texts_by_id(s, pool)
        everything = keysets.example_ids(s).tolist()
    assert pool == everything and len(pool) > 200 and sorted(stored) == pool and set(stored.values()) <= set(LABELS)
    again = stopping.predicted_classes(services.registry.active().predict_proba, [texts[i] for i in pool], LABELS)
    assert [stored[i] for i in pool] == again
