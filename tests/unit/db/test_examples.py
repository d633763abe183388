"""Examples, label history, scores and queues (bertdemo.db.examples) against every backend: the
`engine` fixture (tests/conftest.py) is a migrated SQLite file, and a PostgreSQL schema when
BERTDEMO_DB_URL points at a PostgreSQL database. Versions and runs alone (bertdemo.db.versions) are
in test_versions.py, the engine itself (bertdemo.db.engine) in test_engine.py."""

import threading
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo.db import examples, runs, versions
from bertdemo.db.examples import NewExample
from bertdemo.db.models import Example, LabelEvent, now
from bertdemo.errors import BadInput, Conflict, NotFound

LABELS = ("negative", "neutral", "positive")


def add(engine, *rows, source="import"):
    with Session(engine) as s, s.begin():
        return examples.import_examples(s, rows, source, "alice", LABELS)


def test_import_is_idempotent_and_skips_duplicates_by_cleaned_text(engine):
    r1 = add(engine, NewExample("Hello there", "@x Hello there", "positive"), NewExample("hello THERE", "dup"),
             NewExample("other", "other"))
    assert (r1.added, r1.duplicates) == (2, 1)
    r2 = add(engine, NewExample("other", "other"))
    assert (r2.added, r2.duplicates) == (0, 1)
    with Session(engine) as s:
        assert examples.count_examples(s) == 2
        assert examples.label_counts(s) == {"positive": 1, None: 1}
        ev = s.scalars(select(LabelEvent)).one()
        assert (ev.label, ev.user, ev.source, ev.previous_label) == ("positive", "alice", "import", None)


def test_unknown_label_on_import_is_refused_and_nothing_is_written(engine):
    with pytest.raises(BadInput, match="unknown label 'great'"):
        add(engine, NewExample("a", "a", "positive"), NewExample("b", "b", "great"))
    with Session(engine) as s:
        assert examples.count_examples(s) == 0  # the transaction rolled back as a whole


def test_every_change_is_a_new_history_row(engine):
    add(engine, NewExample("t", "t", "neutral"))
    with Session(engine) as s, s.begin():
        ex_id = s.scalars(select(Example.id)).one()
        examples.set_label(s, ex_id, "negative", "bob", "annotator", LABELS, expected_version=1)
    with Session(engine) as s, s.begin():
        examples.set_label(s, ex_id, "neutral", "carol", "undo", LABELS)
    with Session(engine) as s:
        h = examples.history(s, ex_id)
        assert [(e.previous_label, e.label, e.user, e.source, e.version) for e in h] == [
            (None, "neutral", "alice", "import", 1), ("neutral", "negative", "bob", "annotator", 2),
            ("negative", "neutral", "carol", "undo", 3)]
        ex = s.get(Example, ex_id)
        assert (ex.label, ex.version, ex.updated_by) == ("neutral", 3, "carol")


def test_stale_version_is_refused_and_changes_nothing(engine):
    add(engine, NewExample("t", "t", "neutral"))
    with Session(engine) as s, s.begin():
        examples.set_label(s, 1, "negative", "bob", "annotator", LABELS, expected_version=1)
    with pytest.raises(Conflict, match="changed by bob"):
        with Session(engine) as s, s.begin():
            examples.set_label(s, 1, "positive", "carol", "annotator", LABELS, expected_version=1)
    with Session(engine) as s:
        assert s.get(Example, 1).label == "negative" and len(examples.history(s, 1)) == 2


def test_concurrent_saves_of_one_row_never_both_win(engine):
    add(engine, NewExample("t", "t", "neutral"))
    results, barrier = [], threading.Barrier(8)

    def save(i):
        barrier.wait()
        try:
            with Session(engine) as s, s.begin():
                examples.set_label(s, 1, LABELS[i % 3], f"user{i}", "annotator", LABELS, expected_version=1)
            results.append("ok")
        except Conflict:
            results.append("conflict")
        except Exception as exc:  # noqa: BLE001 - e.g. "database is locked" would be a bug here
            results.append(repr(exc))

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    with Session(engine) as s:
        assert len(examples.history(s, 1)) == 2 and s.get(Example, 1).version == 2


def test_bad_label_and_missing_row(engine):
    add(engine, NewExample("t", "t"))
    with Session(engine) as s:
        with pytest.raises(BadInput, match="Unknown label 'meh'"):
            examples.set_label(s, 1, "meh", "bob", "annotator", LABELS)
        with pytest.raises(NotFound, match="No example with id 99"):
            examples.set_label(s, 99, "neutral", "bob", "annotator", LABELS)


def test_datetimes_are_naive_utc_and_json_round_trips(engine):
    meta = {"tweet_id": "5703061", "tags": ["a", "ü"], "nested": {"n": 1.5, "none": None}}
    add(engine, NewExample("t", "t", "neutral", external_id="x1", meta=meta))
    with Session(engine) as s, s.begin():
        ex = s.get(Example, 1)
        run = runs.create_run(s, "alice", {"epochs": 1.0, "lr": 2e-5})
        run.history = [{"step": 1, "train_loss": 0.5}]
    with Session(engine) as s:
        ex = s.get(Example, 1)
        assert ex.meta == meta and runs.latest_run(s).history == [{"step": 1, "train_loss": 0.5}]
        assert ex.created_at.tzinfo is None and ex.created_at == ex.updated_at  # one stamp, naive, exact
        assert abs((now() - ex.created_at).total_seconds()) < 60  # UTC, whatever the server's zone
        assert isinstance(examples.history(s, 1)[0].created_at, datetime)


def test_text_search_is_case_insensitive_and_literal(engine):
    add(engine, NewExample("50%_off today", "50%_off today"), NewExample("500 off", "500 off"),
        NewExample("FLIGHT delayed", "@x FLIGHT delayed"), NewExample("back\\slash", "back\\slash"))
    with Session(engine) as s:
        assert examples.queue_ids(s, "search", None, "50%_") == [1]  # % and _ are literal, not wildcards
        assert examples.queue_ids(s, "search", None, "flight") == [3]
        assert examples.queue_ids(s, "search", None, "@X") == [3]  # raw text is searched too
        assert examples.queue_ids(s, "search", None, "k\\s") == [4]
        assert examples.queue_ids(s, "search", None, "  ") == []


def test_scores_and_queues(engine):
    add(engine, *(NewExample(f"t{i}", f"t{i}", LABELS[i % 3] if i < 4 else None) for i in range(6)))
    probs = [[0.9, 0.05, 0.05], [0.2, 0.5, 0.3], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1],
             [0.1, 0.8, 0.1]]
    with Session(engine) as s, s.begin():
        vid = versions.add_version(s, name="v1", path="/v1", base_model="m").id
        versions.save_scores(s, vid, range(1, 7), probs, LABELS)
        versions.save_scores(s, vid, [1], [[0.1, 0.1, 0.8]], LABELS)  # replaced, not duplicated
        examples.set_label(s, 2, "positive", "bob", "annotator", LABELS)
    with Session(engine) as s:
        assert examples.queue_ids(s, "unlabeled", vid) == [5, 6]
        # labels: 1 negative (pred positive .8), 2 positive (pred neutral), 3 positive (pred negative .34),
        # 4 negative (pred positive .8)
        assert examples.queue_ids(s, "disagree", vid) == [1, 4, 2, 3]
        assert examples.queue_ids(s, "uncertain", vid)[0] == 3
        assert examples.queue_ids(s, "recent", vid) == [2, 4, 3, 1]  # newest human change first
        assert examples.score_of(s, 1, vid).predicted == "positive"
        assert [row[3] for row in examples.scored_examples(s, vid)][0] == [0.1, 0.1, 0.8]
        assert examples.change_counts(s) == {1: 1, 2: 2, 3: 1, 4: 1}


def test_long_id_lists_are_bounded(engine):
    """PostgreSQL caps bound parameters at 65535 per statement (SQLite builds at 32766 by default)."""
    add(engine, NewExample("t", "t", "neutral"))
    ids = list(range(1, 70_001))
    with Session(engine) as s:
        assert examples.change_counts(s, ids) == {1: 1}


def test_batches_comments_and_decisions_on_every_backend(engine):
    from bertdemo.db import comments
    from bertdemo.db.decisions import awaiting_adjudication

    with Session(engine) as s, s.begin():
        examples.import_examples(s, [NewExample(f"text {i}", f"text {i}") for i in range(3)], "import", "x", LABELS)
    with Session(engine) as s, s.begin():
        for i in (1, 2):
            examples.set_label(s, i, "positive", "boss", "bulk", LABELS, batch="b1")
        examples.set_label(s, 3, "negative", "ann", "annotator", LABELS)
        examples.set_label(s, 3, "positive", "bob", "annotator", LABELS)
        comments.add(s, 3, "ann", "sarcasm? 🙃")
    with Session(engine) as s:
        assert [e.example_id for e in examples.batch_events(s, "b1")] == [1, 2]
        newest = examples.latest_event_ids(s, [1, 2, 3])
        assert newest[3] > newest[2] > newest[1]
        assert examples.states(s, [1, 3, 99]) == {1: (1, "positive"), 3: (2, "positive")}
        assert awaiting_adjudication(s) == [3]  # ann and bob disagree; a bulk label is nobody's decision
        assert comments.by_example(s) == {3: [("ann", "sarcasm? 🙃")]}
        assert examples.examples_changed_since(s, 0) == 3  # 4 changes, of 3 examples
    with Session(engine) as s, s.begin():
        examples.set_label(s, 3, "neutral", "boss", "adjudication", LABELS)
    with Session(engine) as s:
        assert awaiting_adjudication(s) == []
    with Session(engine) as s, s.begin():  # many at once: one UPDATE and one INSERT for all rows
        examples.lock(s, [1, 2])
        state = examples.states(s, [1, 2])
        n = examples.set_labels(s, [(i, lab, v, "negative") for i, (v, lab) in state.items()], "boss", "bulk",
                                LABELS, "b2")
    with Session(engine) as s:
        assert n == 2 and examples.states(s, [1, 2]) == {1: (2, "negative"), 2: (2, "negative")}
        rows = [(e.example_id, e.previous_label, e.label, e.version) for e in examples.batch_events(s, "b2")]
        assert rows == [(1, "positive", "negative", 2), (2, "positive", "negative", 2)]
    with pytest.raises(BadInput), Session(engine) as s, s.begin():
        examples.set_labels(s, [(1, "negative", 2, "great")], "boss", "bulk", LABELS, "b3")
