"""db/behaviour_tests.py on every backend of the `engine` fixtures: the behaviour tests' rows (a
unique name, the cases as JSON, must pass, who changed them), seeding only an empty table, and
each test's results per version and serving path, replaced by a new run; revision 0007 creates
and drops both tables."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from bertdemo.db import behaviour_tests as bt
from bertdemo.db import migrate, versions
from bertdemo.errors import BadInput, Conflict, NotFound


def fields(name: str, must_pass: bool = False) -> dict:
    return {"name": name, "kind": "INV", "description": f"about {name}", "expected": None,
            "cases": [{"text": "the flight was ok", "perturbed": ["@bob the flight was ok"]}], "must_pass": must_pass,
            "tolerance": 0.0}


def result(name: str, n_failed: int) -> dict:
    return {"test_name": name, "kind": "INV", "must_pass": False, "n": 4, "n_failed": n_failed,
            "failures": [{"text": "x", "original": "y", "expected": "same", "got": "negative", "probs": [0.9, 0.05, 0.05]}]
            * n_failed}


def test_0007_creates_and_drops_the_behaviour_tables(bare_engine):
    migrate.upgrade(bare_engine, "0006")
    assert "behaviour_tests" not in inspect(bare_engine).get_table_names()
    migrate.upgrade(bare_engine)
    assert {"behaviour_tests", "behaviour_results"} <= set(inspect(bare_engine).get_table_names())
    migrate.downgrade(bare_engine, "0006")
    assert not {"behaviour_tests", "behaviour_results"} & set(inspect(bare_engine).get_table_names())


def test_tests_are_added_under_unique_names_with_their_cases(engine):
    with Session(engine) as s, s.begin():
        row = bt.add(s, fields("inv one"), "example", "boss")
        assert row.id and (row.created_by, row.updated_by, row.source) == ("boss", "boss", "example")
    with Session(engine) as s, s.begin():
        with pytest.raises(Conflict, match="'inv one' exists already"):
            bt.add(s, fields("inv one"), "flip", "boss")
        with pytest.raises(BadInput, match="source must be one of starter, example, flip"):
            bt.add(s, fields("inv two"), "somewhere", "boss")
        got = bt.get(s, "inv one")
        assert got.cases == fields("inv one")["cases"] and got.kind == "INV" and got.must_pass is False
        assert bt.exists(s, "inv one") and not bt.exists(s, "inv two") and bt.count(s) == 1
        with pytest.raises(NotFound, match="No behaviour test named 'nope'"):
            bt.get(s, "nope")


def test_seed_writes_only_into_an_empty_table_and_only_once(engine):
    with Session(engine) as s, s.begin():
        assert bt.seed(s, [fields("a"), fields("b")]) == 2
        assert bt.seed(s, [fields("c")]) == 0
        assert [r.name for r in bt.all_tests(s)] == ["a", "b"] and {r.source for r in bt.all_tests(s)} == {"starter"}
        bt.delete_test(s, "a")
        bt.delete_test(s, "b")
        assert bt.seed(s, [fields("c")]) == 0 and bt.count(s) == 0  # seeded once: an emptied table stays empty


def test_must_pass_and_delete_record_who_and_drop_the_results(engine):
    with Session(engine) as s, s.begin():
        vid = versions.add_version(s, name="v1", path="models/v1", base_model="m").id
        bt.add(s, fields("t"), "example", "boss")
        bt.save_results(s, vid, "pytorch", [result("t", 1)])
    with Session(engine) as s, s.begin():
        row = bt.set_must_pass(s, "t", True, "carol")
        assert row.must_pass and row.updated_by == "carol" and row.created_by == "boss"
    with Session(engine) as s, s.begin():
        bt.delete_test(s, "t")
    with Session(engine) as s:
        assert bt.count(s) == 0 and bt.results_of(s, vid) == []


def test_results_per_version_and_path_are_replaced_by_a_new_run(engine):
    with Session(engine) as s, s.begin():
        v1 = versions.add_version(s, name="v1", path="models/v1", base_model="m").id
        v2 = versions.add_version(s, name="v2", path="models/v2", base_model="m").id
        bt.save_results(s, v1, "pytorch", [result("a", 1), result("b", 0)])
        bt.save_results(s, v1, "int8", [result("a", 2)])
        bt.save_results(s, v1, "pytorch", [result("a", 3)])  # a re-run replaces the path's rows
    with Session(engine) as s:
        got = [(r.test_name, r.path, r.n_failed) for r in bt.results_of(s, v1)]
        assert got == [("a", "int8", 2), ("a", "pytorch", 3)]
        assert [r.path for r in bt.results_of(s, v1, "int8")] == ["int8"] and bt.results_of(s, v2) == []
        assert bt.results_of(s, v1, "int8")[0].failures[0]["probs"] == [0.9, 0.05, 0.05]
    with Session(engine) as s, s.begin():
        bt.save_results(s, v2, "pytorch", [result("a", 0)])  # the newest run of test "a"
    with Session(engine) as s:
        newest = bt.latest_results(s)
        assert (newest["a"].version_id, newest["a"].n_failed) == (v2, 0)
