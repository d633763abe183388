"""Each person's own label on an item, read from the label history, and the items whose annotators
disagree and that no admin has decided yet (awaiting adjudication).

A person's decision on an item is their newest `annotator` or `suggestion` row on it; an `undo`
withdraws the decision it undid (of whoever made it). An `adjudication` row is an admin's final
label: the item is settled until a person decides on it again and the decisions disagree anew.
Bulk labels, imports and the dataset's labels are nobody's decision on the item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from bertdemo.db.examples import human_events

DECIDE = ("annotator", "suggestion")


@dataclass
class Decisions:
    """What the history says about one item."""

    people: dict[str, tuple[str, datetime, str]] = field(default_factory=dict)  # user -> (label, when, source)
    last_decision: int = 0  # event id of the newest decision
    adjudicated: int = 0  # event id of the newest adjudication
    final: str | None = None  # the newest adjudication's label

    @property
    def disagree(self) -> bool:
        return len({lab for lab, _w, _s in self.people.values()}) >= 2

    @property
    def awaiting(self) -> bool:
        """Annotators disagree, and nobody adjudicated since the newest decision."""
        return self.disagree and self.last_decision > self.adjudicated


def decisions_of(events: Sequence[tuple[int, int, str, str | None, str, datetime]]) -> dict[int, Decisions]:
    """`events`: (event id, example id, user, label, source, when) of people's changes, oldest first."""
    out: dict[int, Decisions] = {}
    last_author: dict[int, str] = {}
    for eid, ex_id, who, lab, source, when in events:
        d = out.setdefault(ex_id, Decisions())
        if source in DECIDE and lab is not None:
            d.people[who] = (lab, when, source)
            d.last_decision = eid
        elif source == "undo" and ex_id in last_author:
            d.people.pop(last_author[ex_id], None)
        elif source == "adjudication":
            d.adjudicated, d.final = eid, lab
        last_author[ex_id] = who
    return out


def awaiting_adjudication(s: Session) -> list[int]:
    """Ids of the items awaiting adjudication, the longest waiting first."""
    found = [(d.last_decision, ex_id) for ex_id, d in decisions_of(human_events(s)).items() if d.awaiting]
    return [ex_id for _eid, ex_id in sorted(found)]
