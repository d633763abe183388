"""The suspicious-labels ranking (training/label_issues.py): in a child process it gives what it
gives in the calling thread, reports the child's memory, passes the ranking's own refusal on, and
never runs a child for a database only this process can open."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.db import examples, versions
from bertdemo.db.engine import init_db, make_engine
from bertdemo.db.examples import NewExample
from bertdemo.errors import NotReady
from bertdemo.training import label_issues

LABELS = ("negative", "neutral", "positive")
WORDS = {"negative": "awful delayed rude lost", "neutral": "flight gate today schedule", "positive": "great thanks lovely crew"}


def corpus(engine, n_per_class: int = 30, flipped: int = 3) -> int:
    """n_per_class tweets per label with that label's words, the first `flipped` of the positive
    ones labelled negative, and a version whose stored scores say their true class; its id."""
    rows, truth = [], []
    for k, label in enumerate(LABELS):
        for i in range(n_per_class):
            given = "negative" if label == "positive" and i < flipped else label
            rows.append(NewExample(f"{WORDS[label]} number {i} {label[:3]}", f"t{k}-{i}", given))
            truth.append(k)
    with Session(engine) as s, s.begin():
        examples.import_examples(s, rows, "dataset", "dataset", LABELS)
        ids = sorted(examples.current_labels(s))
        probs = np.full((len(ids), 3), 0.05)
        probs[np.arange(len(ids)), truth] = 0.9
        v = versions.add_version(s, name="v1", path="v1", base_model="x", is_active=True)
        versions.save_scores(s, v.id, ids, probs, LABELS)
        return v.id


def test_a_child_process_ranks_as_the_calling_thread_does_and_says_its_memory(engine):
    vid = corpus(engine)
    here = label_issues.rank(engine, vid, LABELS, in_child=False)
    child = label_issues.rank(engine, vid, LABELS, in_child=True)
    assert child.ids == here.ids and child.newest == here.newest and child.rows == here.rows == 90
    with Session(engine) as s:
        flipped = {i for i, lab in examples.current_labels(s).items() if lab == "negative"}
    assert set(here.ids[:3]) <= flipped  # the flipped positives are found first
    assert here.child_peak_mb is None and 50 < child.child_peak_mb < 2000
    assert label_issues.rank(engine, vid, LABELS).child_peak_mb is None  # 90 rows: ranked in this process


def test_the_childs_refusal_reaches_the_caller_and_a_memory_database_stays_here(engine, monkeypatch):
    vid = corpus(engine, n_per_class=3, flipped=0)  # fewer than 5 labels a class
    with pytest.raises(NotReady, match="at least 5 labelled examples of every class"):
        label_issues.rank(engine, vid, LABELS, in_child=True)
    monkeypatch.setattr(label_issues, "IN_PROCESS_MAX", 0)  # every corpus is "large"
    memory = make_engine("sqlite://")
    init_db(memory)
    assert label_issues.rank(memory, corpus(memory), LABELS).child_peak_mb is None  # no other process sees it
