"""The Embeddings tab's actions (bertdemo.actions.embeddings) on the packaged MiniLM BERT: corpus
neighbours, cached and capped. The embeddings themselves are tested in
tests/unit/model/test_embeddings.py."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.orm import Session

from bertdemo.actions import embeddings as embedding_actions
from bertdemo.actions.presets import PRESETS
from bertdemo.db import examples
from bertdemo.errors import BadInput

LABELS = ("negative", "neutral", "positive")
SEED = "I encountered a bat when I went to buy a cricket bat."


def test_corpus_neighbours_cached_and_capped(services):
    services.ensure_dataset()
    actions = embedding_actions.EmbeddingActions(services, embedding_actions.CorpusIndex(max_examples=40))
    with Session(services.engine) as s:
        rows, total = examples.containing_word(s, "flight", limit=1000)
    assert total > 40  # the 240-tweet sample mentions flights often
    # a stored tweet among the 40 that are searched, used as the query sentence
    stored = next(text for _, text, _ in rows[:40] if " flight " in f" {text.lower()} ")
    r = actions.compare(f"{stored}\nMy flight was delayed again.", "flight", 4, embedding_actions.BASE_MODEL)
    n = actions.neighbours(r, "S1.1", k=5, choice=embedding_actions.BASE_MODEL)
    assert n.corpus.capped and n.corpus.searched == 40 and n.corpus.matching == total
    sims = [x.similarity for x in n.items]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True)
    assert all("flight" in x.text.lower() for x in n.items)
    assert {x.label for x in n.items} <= set(LABELS)
    assert n.items[0].text == stored and n.items[0].similarity > 0.999  # its own tweet comes first
    actions.neighbours(r, "S2.1", k=3, choice=embedding_actions.BASE_MODEL)
    assert actions.index.computed == 1  # the second query reused the cached vectors
    with pytest.raises(BadInput, match="Choose an occurrence"):
        actions.neighbours(r, "S9.9", choice=embedding_actions.BASE_MODEL)
    with pytest.raises(BadInput, match="The model must be one of"):
        actions.compare(SEED, "bat", 2, "gpt")


def test_a_word_under_way_is_computed_once_with_its_progress_shown(services):
    services.ensure_dataset()
    actions = embedding_actions.EmbeddingActions(services, embedding_actions.CorpusIndex(max_examples=40))
    r = actions.compare("My flight was delayed again.\nAnother flight.", "flight", 4, embedding_actions.BASE_MODEL)
    reports: list[tuple[int, int, str]] = []
    found: list = []

    def ask() -> None:
        found.append(actions.neighbours(r, "S1.1", 3, embedding_actions.BASE_MODEL,
                                        progress=lambda done, total, what: reports.append((done, total, what))))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(found) == 3 and actions.index.computed == 1  # the others waited for the one computation
    assert [x.example_id for x in found[0].items] == [x.example_id for x in found[2].items]
    assert (40, 40, "'flight' in the stored tweets: 40 of 40 read") in reports


def test_the_presets_words_are_warmed_for_the_serving_version(services, monkeypatch):
    services.ensure_dataset()
    actions = embedding_actions.EmbeddingActions(services, embedding_actions.CorpusIndex(max_examples=40))
    base = services.registry.base()
    monkeypatch.setattr(actions, "model", lambda choice=embedding_actions.ACTIVE_MODEL: ("version:v7", base))
    actions.warm_presets(wait=True)  # what VersionWatch calls when a version serves
    assert actions.index.computed == len(PRESETS)
    assert all(actions.index.cached("version:v7", p.word) is not None for p in PRESETS.values())
    assert actions.index.cached("version:v8", "bat") is None  # another version's are its own
    r = actions.compare(PRESETS["bat"].text, "bat", 2, embedding_actions.ACTIVE_MODEL)
    actions.neighbours(r, r.labels[0], 3)
    assert actions.index.computed == len(PRESETS)  # answered from the warm cache
