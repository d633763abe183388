import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo import store
from bertdemo.store import ConflictError, NewExample, StoreError

LABELS = ("negative", "neutral", "positive")


@pytest.fixture
def engine(tmp_path):
    e = store.make_engine(f"sqlite:///{tmp_path / 'db' / 't.sqlite3'}")
    store.init_db(e)
    return e


def add(engine, *rows, source="import"):
    with Session(engine) as s, s.begin():
        return store.import_examples(s, rows, source, "alice", LABELS)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine):
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_import_is_idempotent_and_skips_duplicates_by_cleaned_text(engine):
    r1 = add(engine, NewExample("Hello there", "@x Hello there", "positive"), NewExample("hello THERE", "dup"),
             NewExample("other", "other"))
    assert (r1.added, r1.duplicates) == (2, 1)
    r2 = add(engine, NewExample("other", "other"))
    assert (r2.added, r2.duplicates) == (0, 1)
    with Session(engine) as s:
        assert store.count_examples(s) == 2
        assert store.label_counts(s) == {"positive": 1, None: 1}
        ev = s.scalars(select(store.LabelEvent)).one()
        assert (ev.label, ev.user, ev.source, ev.previous_label) == ("positive", "alice", "import", None)


def test_unknown_label_on_import_is_refused_and_nothing_is_written(engine):
    with pytest.raises(StoreError, match="unknown label 'great'"):
        add(engine, NewExample("a", "a", "positive"), NewExample("b", "b", "great"))
    with Session(engine) as s:
        assert store.count_examples(s) == 0  # the transaction rolled back as a whole


def test_every_change_is_a_new_history_row(engine):
    add(engine, NewExample("t", "t", "neutral"))
    with Session(engine) as s, s.begin():
        ex_id = s.scalars(select(store.Example.id)).one()
        store.set_label(s, ex_id, "negative", "bob", "annotator", LABELS, expected_version=1)
    with Session(engine) as s, s.begin():
        store.set_label(s, ex_id, "neutral", "carol", "undo", LABELS)
    with Session(engine) as s:
        h = store.history(s, ex_id)
        assert [(e.previous_label, e.label, e.user, e.source, e.version) for e in h] == [
            (None, "neutral", "alice", "import", 1), ("neutral", "negative", "bob", "annotator", 2),
            ("negative", "neutral", "carol", "undo", 3)]
        ex = s.get(store.Example, ex_id)
        assert (ex.label, ex.version, ex.updated_by) == ("neutral", 3, "carol")


def test_stale_version_is_refused_and_changes_nothing(engine):
    add(engine, NewExample("t", "t", "neutral"))
    with Session(engine) as s, s.begin():
        store.set_label(s, 1, "negative", "bob", "annotator", LABELS, expected_version=1)
    with pytest.raises(ConflictError, match="changed by bob"):
        with Session(engine) as s, s.begin():
            store.set_label(s, 1, "positive", "carol", "annotator", LABELS, expected_version=1)
    with Session(engine) as s:
        assert s.get(store.Example, 1).label == "negative" and len(store.history(s, 1)) == 2


def test_concurrent_saves_of_one_row_never_both_win(engine):
    add(engine, NewExample("t", "t", "neutral"))
    results, barrier = [], threading.Barrier(8)

    def save(i):
        barrier.wait()
        try:
            with Session(engine) as s, s.begin():
                store.set_label(s, 1, LABELS[i % 3], f"user{i}", "annotator", LABELS, expected_version=1)
            results.append("ok")
        except ConflictError:
            results.append("conflict")
        except Exception as exc:  # noqa: BLE001 - e.g. "database is locked" would be a bug here
            results.append(repr(exc))

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    with Session(engine) as s:
        assert len(store.history(s, 1)) == 2 and s.get(store.Example, 1).version == 2


def test_bad_label_and_missing_row(engine):
    add(engine, NewExample("t", "t"))
    with Session(engine) as s:
        with pytest.raises(StoreError, match="unknown label 'meh'"):
            store.set_label(s, 1, "meh", "bob", "annotator", LABELS)
        with pytest.raises(StoreError, match="no example with id 99"):
            store.set_label(s, 99, "neutral", "bob", "annotator", LABELS)


def test_versions_activate_exactly_one(engine):
    with Session(engine) as s, s.begin():
        a = store.add_version(s, name=store.next_version_name(s), path="/a", base_model="m")
        b = store.add_version(s, name=store.next_version_name(s), path="/b", base_model="m")
        assert (a.name, b.name) == ("v1", "v2")
        store.activate_version(s, a.id)
        store.activate_version(s, b.id)
    with Session(engine) as s:
        assert store.active_version(s).name == "v2"
        assert [v.is_active for v in store.list_versions(s)] == [True, False]


def test_interrupted_runs_are_marked_failed(engine):
    with Session(engine) as s, s.begin():
        store.create_run(s, "alice", {})
    with Session(engine) as s, s.begin():
        assert store.fail_stale_runs(s) == 1
    with Session(engine) as s:
        run = store.latest_run(s)
        assert run.status == "failed" and "stopped" in run.message and run.finished_at is not None
