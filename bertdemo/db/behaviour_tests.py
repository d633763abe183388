"""The behaviour tests' rows (behaviour_tests) and their last results per version and serving path
(behaviour_results): list, add, seed an empty table, mark must pass, delete; store and read
results. Plain values in (the fields of a test, its cases as JSON); training/behaviour.py turns
rows into BehaviourTest and back."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bertdemo.db import leases
from bertdemo.db.models import BEHAVIOUR_SOURCES, BehaviourResult, BehaviourTestRecord, now
from bertdemo.errors import BadInput, Conflict, NotFound

SEEDED = "behaviour_tests_seeded"  # the app setting that records the starter suite was written once
FIELDS = ("name", "kind", "description", "expected", "cases", "must_pass", "tolerance")  # of a test


def count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(BehaviourTestRecord)) or 0


def all_tests(s: Session) -> list[BehaviourTestRecord]:
    """Every test, oldest first (the starter suite, then the ones people added)."""
    return list(s.scalars(select(BehaviourTestRecord).order_by(BehaviourTestRecord.id)))


def get(s: Session, name: str) -> BehaviourTestRecord:
    row = s.scalar(select(BehaviourTestRecord).where(BehaviourTestRecord.name == name))
    if row is None:
        raise NotFound(f"No behaviour test named {name!r}.")
    return row


def exists(s: Session, name: str) -> bool:
    return s.scalar(select(BehaviourTestRecord.id).where(BehaviourTestRecord.name == name)) is not None


def add(s: Session, fields: dict, source: str, user: str) -> BehaviourTestRecord:
    """A new test (`fields`: FIELDS); Conflict when its name is taken (also by a racing insert)."""
    if source not in BEHAVIOUR_SOURCES:
        raise BadInput(f"source must be one of {', '.join(BEHAVIOUR_SOURCES)}; got {source!r}")
    if exists(s, fields["name"]):
        raise Conflict(f"A behaviour test named {fields['name']!r} exists already; choose another name.")
    at = now()
    row = BehaviourTestRecord(**{k: fields[k] for k in FIELDS}, source=source, created_by=user, created_at=at,
                              updated_by=user, updated_at=at)
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
    except IntegrityError:  # another request saved that name between our check and our insert
        raise Conflict(f"A behaviour test named {fields['name']!r} exists already; choose another name.") from None
    return row


def seed(s: Session, tests: Sequence[dict], user: str = "system") -> int:
    """Write `tests` (FIELDS each, source "starter") into the table the first time it is empty; how
    many were written (0 when it is not empty, was seeded before, so that deleting every test does
    not bring the starter suite back, or when another process seeded it at the same moment)."""
    if count(s) or leases.get_setting(s, SEEDED):
        return 0
    at = now()
    try:
        with s.begin_nested():
            s.add_all([BehaviourTestRecord(**{k: t[k] for k in FIELDS}, source="starter", created_by=user,
                                           created_at=at, updated_by=user, updated_at=at) for t in tests])
            leases.set_setting(s, SEEDED, True, user)
            s.flush()
    except IntegrityError:  # a second process seeded first: its rows are the same suite
        return 0
    return len(tests)


def set_must_pass(s: Session, name: str, must_pass: bool, user: str) -> BehaviourTestRecord:
    row = get(s, name)
    row.must_pass, row.updated_by, row.updated_at = must_pass, user, now()
    return row


def delete_test(s: Session, name: str) -> None:
    """Remove the test and its stored results."""
    s.delete(get(s, name))
    s.execute(delete(BehaviourResult).where(BehaviourResult.test_name == name))


def save_results(s: Session, version_id: int, path: str, results: Sequence[dict]) -> None:
    """Replace version `version_id`'s results on serving path `path` (pytorch, int8) with `results`
    (test_name, kind, must_pass, n, n_failed, failures each)."""
    s.execute(delete(BehaviourResult).where(BehaviourResult.version_id == version_id, BehaviourResult.path == path))
    at = now()
    s.add_all([BehaviourResult(version_id=version_id, path=path, created_at=at, **r) for r in results])
    s.flush()


def results_of(s: Session, version_id: int, path: str | None = None) -> list[BehaviourResult]:
    """Version `version_id`'s stored results (on `path`, or every path), by test name."""
    q = select(BehaviourResult).where(BehaviourResult.version_id == version_id)
    if path is not None:
        q = q.where(BehaviourResult.path == path)
    return list(s.scalars(q.order_by(BehaviourResult.test_name, BehaviourResult.path)))


def latest_results(s: Session) -> dict[str, BehaviourResult]:
    """Each test's newest stored result (any version, any path), by test name."""
    out: dict[str, BehaviourResult] = {}
    for r in s.scalars(select(BehaviourResult).order_by(BehaviourResult.created_at, BehaviourResult.version_id)):
        out[r.test_name] = r
    return out
