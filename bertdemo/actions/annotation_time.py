"""Annotation time (issue 25): seconds per label per person from the lease's hand-out to the save,
labels per hour, the team's pace over the last hour and day, and the hours left for the Unlabeled
queue at annotations per item k. No Gradio here.

A label's time is `label_events.created_at - handed_out_at` of a person's own decision (sources
annotator and suggestion) that was handed out (next_item). A time beyond the lease (the person was
away: the lease ran out before the save) is dropped, not capped: capping would pile those labels up
at the lease's length and drag the p90 there, while dropping keeps the figures about deciding."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.actions.distribution import WorkDistribution
from bertdemo.db import audit
from bertdemo.db.audit import LabelRow
from bertdemo.db.models import now
from bertdemo.services import Services

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True)
class PersonPace:
    """One person's pace: their timed labels' median and 90th percentile, labels per hour at the
    median, and their labels (timed or not) over the last hour and day."""

    user: str
    labels: int  # timed labels (handed out, saved within the lease)
    median_s: float | None
    p90_s: float | None
    per_hour: float | None  # 3600 / median: the pace while labelling, breaks not counted
    last_hour: int
    last_day: int


@dataclass(frozen=True)
class TimeReport:
    """The annotation-time figures as one person may see them (annotators: their own row)."""

    people: tuple[PersonPace, ...]
    team_median_s: float | None
    team_last_hour: int
    team_last_day: int
    items_left: int  # items of the Unlabeled queue still handed out
    annotations_per_item: int
    annotations_left: int  # the labels those items still need
    hours_left: float | None  # person-hours: annotations left x the team's median seconds
    message: str
    # wall-clock hours at the team's pace over the last day (labels per day); None without labels that day
    hours_left_at_pace: float | None = None

    def as_api(self) -> dict:
        return asdict(self) | {"people": [asdict(p) for p in self.people]}

    def rows(self) -> list[dict]:
        """One row per person shown, then the team's."""
        team = {"user": "(team)", "median_s": self.team_median_s, "last_hour": self.team_last_hour,
                "last_day": self.team_last_day, "items_left": self.items_left,
                "annotations_per_item": self.annotations_per_item, "annotations_left": self.annotations_left,
                "hours_left": self.hours_left, "hours_left_at_pace": self.hours_left_at_pace}
        return [asdict(p) for p in self.people] + [team]


def seconds(row: LabelRow, lease: timedelta) -> float | None:
    """The seconds from hand-out to save, or None: no hand-out, or saved after the lease ran out."""
    if row.handed_out_at is None:
        return None
    took = row.created_at - row.handed_out_at
    return None if took > lease else max(took.total_seconds(), 0.0)


def _quantile(xs: list[float], q: float) -> float | None:
    return float(np.quantile(xs, q)) if xs else None


def pace(user: str, rows: list[LabelRow], lease: timedelta, at: datetime) -> PersonPace:
    """`user`'s PersonPace from their labels `rows`, as of `at`."""
    took = [x for x in (seconds(r, lease) for r in rows) if x is not None]
    median = _quantile(took, 0.5)
    return PersonPace(user, len(took), median, _quantile(took, 0.9),
                      3600.0 / median if median else None,
                      sum(r.created_at >= at - HOUR for r in rows), sum(r.created_at >= at - DAY for r in rows))


class AnnotationTime:
    """The annotation-time report; `work` knows annotations per item."""

    def __init__(self, services: Services, work: WorkDistribution) -> None:
        self.engine = services.engine
        self.lease = timedelta(minutes=services.settings.lease_minutes)
        self._work = work

    def report(self, viewer: str, admin: bool) -> TimeReport:
        """Everyone's rows for an admin, the viewer's own for an annotator; the team's totals for both."""
        k = self._work.overlap()
        at = now()
        with Session(self.engine) as s:
            rows = audit.person_labels(s)
            left = audit.queue_left(s, k)
        by_user: dict[str, list[LabelRow]] = {}
        for r in rows:
            by_user.setdefault(r.user, []).append(r)
        people = tuple(pace(u, rs, self.lease, at) for u, rs in sorted(by_user.items()) if admin or u == viewer)
        team = pace("(team)", rows, self.lease, at)
        hours = left.annotations * team.median_s / 3600.0 if team.median_s is not None else None
        at_pace = left.annotations / (team.last_day / 24.0) if team.last_day else None
        return TimeReport(people, team.median_s, team.last_hour, team.last_day, left.items, k, left.annotations,
                          hours, _message(team, left, k, hours, at_pace), at_pace)


def _message(team: PersonPace, left: audit.QueueLeft, k: int, hours: float | None, at_pace: float | None) -> str:
    """The verdict in one or two plain sentences."""
    queue = (f"{left.items:,} items left in the Unlabeled queue need {left.annotations:,} labels "
             f"({k} per item)")
    if hours is None:
        return f"{queue}; no timed labels yet (times come from items handed out by a queue), so no estimate."
    text = (f"{queue}: about {_hours(hours)} person-hours at the team's median of {team.median_s:.1f} s per label "
            f"({team.labels:,} timed labels).")
    if at_pace is not None:
        # the clock at the last 24 hours' rate: a team that labelled for one hour of them is slow by this measure
        text += (f" At the pace of the last 24 hours ({team.last_day:,} labels in them, working or not) that is "
                 f"{_hours(at_pace)} hours of the clock ({at_pace / 24:,.1f} days).")
    return text


def _hours(h: float) -> str:
    """Hours for a sentence: two decimals while small (0.02, not 0.0), whole ones when large."""
    return f"{h:,.2f}" if h < 10 else f"{h:,.0f}"
