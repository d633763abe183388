"""Annotation time (actions/annotation_time.py) from known timestamps: seconds per label per person
(median, p90, per hour), a save after the lease ran out dropped, the last hour's and day's counts,
the Unlabeled queue's remaining annotations at k per item and the hours they take; an annotator
sees their own row, an admin everyone's; and through the labelling flow, a real hand-out is timed."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.annotation_time import AnnotationTime
from bertdemo.actions.distribution import WorkDistribution
from bertdemo.actions.labelling import Labelling
from bertdemo.actions.notes import Notes
from bertdemo.db.models import LabelEvent, Lease, now
from bertdemo.services import Services
from tests.unit.actions.test_annotate import seed


@pytest.fixture
def services(team_services) -> Services:  # an admin boss, annotators ann and bob (tests/conftest.py)
    return team_services


def label(s: Session, example_id: int, user: str, took: float | None, ago: timedelta, source: str = "annotator",
          suggested: str | None = "positive", shown: bool | None = True, lab: str = "neutral") -> None:
    """A label `user` saved `ago`, `took` seconds after the hand-out (None: no hand-out)."""
    at = now() - ago
    s.add(LabelEvent(example_id=example_id, label=lab, previous_label=None, user=user, source=source, created_at=at,
                     version=1, suggested=suggested, suggestion_shown=shown if took is not None else None,
                     handed_out_at=None if took is None else at - timedelta(seconds=took)))


@pytest.fixture
def timed(services) -> list[int]:
    """ann: 2, 4, 6, 8, 100 s, one after the lease (400 s) and one from the table; bob: 10, 20 s two days ago."""
    ids = seed(services, [(f"tweet {i}", None) for i in range(10)])
    minute, hours, days = timedelta(minutes=1), timedelta(hours=2), timedelta(days=2)
    with Session(services.engine) as s, s.begin():
        for i, (took, ago) in enumerate([(2, minute), (4, minute), (6, hours), (8, hours), (100, hours),
                                         (400, hours), (None, minute)]):
            label(s, ids[i], "ann", took, ago)
        label(s, ids[7], "bob", 10, days)
        label(s, ids[8], "bob", 20, days, source="suggestion")
    return ids


def test_seconds_per_label_from_known_timestamps(services, timed):
    r = AnnotationTime(services, WorkDistribution(services)).report("boss", True)
    ann, bob = r.people
    assert (ann.user, ann.labels, bob.user, bob.labels) == ("ann", 5, "bob", 2)  # 400 s > the 5-minute lease: dropped
    assert ann.median_s == pytest.approx(6.0) and ann.p90_s == pytest.approx(float(np.quantile([2, 4, 6, 8, 100], 0.9)))
    assert ann.per_hour == pytest.approx(600.0) and bob.median_s == pytest.approx(15.0)
    assert (ann.last_hour, ann.last_day, bob.last_hour, bob.last_day) == (3, 7, 0, 0)  # the table's label counts
    assert r.team_median_s == pytest.approx(8.0)  # of 2, 4, 6, 8, 100, 10, 20
    assert (r.team_last_hour, r.team_last_day) == (3, 7)
    # 10 examples, all unlabelled (events were written without changing the rows), k = 1
    assert (r.items_left, r.annotations_per_item, r.annotations_left) == (10, 1, 10)
    assert r.hours_left == pytest.approx(10 * 8.0 / 3600)
    assert r.hours_left_at_pace == pytest.approx(10 / (7 / 24))
    assert "about 0.02 person-hours at the team's median of 8.0 s per label" in r.message
    assert "34 hours of the clock" in r.message
    json.dumps(r.as_api())  # JSON-safe
    rows = r.rows()
    assert [x["user"] for x in rows] == ["ann", "bob", "(team)"] and rows[-1]["annotations_left"] == 10


def test_an_annotator_sees_their_own_row_and_the_team_totals(services, timed):
    mine = AnnotationTime(services, WorkDistribution(services)).report("bob", False)
    assert [p.user for p in mine.people] == ["bob"] and mine.team_median_s == pytest.approx(8.0)
    assert [p["user"] for p in mine.as_api()["people"]] == ["bob"]


def test_annotations_left_at_two_per_item(services):
    ids = seed(services, [("a", None), ("b", None), ("c", "neutral"), ("d", "neutral")])
    work = WorkDistribution(services)
    work.set_overlap(2, "boss")
    at = now()
    with Session(services.engine) as s, s.begin():  # a: one of two labels given; c: labelled by one of two
        s.add(Lease(example_id=ids[0], slot=0, user="ann", claimed_at=at, expires_at=at, done=True))
        s.add(Lease(example_id=ids[2], slot=0, user="ann", claimed_at=at, expires_at=at, done=True))
        s.add(Lease(example_id=ids[3], slot=0, user="ann", claimed_at=at, expires_at=at, done=True))
        s.add(Lease(example_id=ids[3], slot=1, user="bob", claimed_at=at, expires_at=at, done=True))
    r = AnnotationTime(services, work).report("boss", True)
    # a needs 1 more, b 2, c 1 (unfinished), d none: 3 items, 4 annotations; no timed label, no estimate
    assert (r.items_left, r.annotations_per_item, r.annotations_left, r.hours_left) == (3, 2, 4, None)
    assert "no timed labels yet" in r.message and r.people == ()


def test_a_label_handed_out_by_next_item_is_timed(services):
    seed(services, [("a", None), ("b", None)])
    work = WorkDistribution(services)
    acts = Labelling(services, work, Notes(services), lambda _who: [], lambda: None)
    item = acts.next_item("unlabeled", username="ann")
    acts.save_label(item.id, "neutral", item.version, "ann")
    (ann,) = AnnotationTime(services, work).report("ann", False).people
    assert ann.labels == 1 and 0 <= ann.median_s < 60 and ann.last_hour == 1
