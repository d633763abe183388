"""The queries behind the annotation-time and suggestion-bias figures (actions/annotation_time.py,
actions/suggestion_audit.py): the labels people gave with the condition they gave them under, the
later history of those items, what is left in the Unlabeled queue; and the one write that records
a label's condition (the model's suggestion, whether it was on screen, when the item was handed out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo.db.engine import chunks
from bertdemo.db.models import Example, LabelEvent, Lease

PERSON_SOURCES = ("annotator", "suggestion")  # a person's own decision on one item (not bulk, undo, import...)


@dataclass(frozen=True)
class LabelRow:
    """One label a person gave on one item, with the condition it was given under."""

    id: int
    example_id: int
    user: str
    label: str | None
    source: str
    created_at: datetime
    handed_out_at: datetime | None  # None: no hand-out (a save from the table or the API alone)
    suggested: str | None  # the model's suggestion at the save (None: no model had one)
    suggestion_shown: bool | None  # False: hidden by the audit's draw; None: no hand-out or before 0011


@dataclass(frozen=True)
class EventRow:
    """One change in an item's history, as the audit reads it afterwards."""

    id: int
    example_id: int
    user: str
    label: str | None
    source: str


@dataclass(frozen=True)
class QueueLeft:
    """What the Unlabeled queue still needs at annotations per item k."""

    items: int  # items still handed out: unlabelled and not done by k people, or labelled by fewer than k
    annotations: int  # the labels those items still need, k minus those given per item


def record_condition(s: Session, event: LabelEvent, suggested: str | None, shown: bool | None,
                     handed_out_at: datetime | None) -> None:
    """Store the condition of a label just saved (set_label's new row, in the caller's transaction)."""
    event.suggested, event.suggestion_shown, event.handed_out_at = suggested, shown, handed_out_at
    s.flush()


def person_labels(s: Session) -> list[LabelRow]:
    """Every label people gave one item at a time (sources annotator and suggestion), oldest first."""
    q = (select(LabelEvent.id, LabelEvent.example_id, LabelEvent.user, LabelEvent.label, LabelEvent.source,
                LabelEvent.created_at, LabelEvent.handed_out_at, LabelEvent.suggested, LabelEvent.suggestion_shown)
         .where(LabelEvent.source.in_(PERSON_SOURCES)).order_by(LabelEvent.created_at, LabelEvent.id))
    return [LabelRow(*r) for r in s.execute(q)]


def events_on(s: Session, example_ids: Sequence[int]) -> list[EventRow]:
    """Every change of the given items, in order (later labels: adjudications, overturns)."""
    out: list[EventRow] = []
    for chunk in chunks(sorted(set(example_ids))):
        q = (select(LabelEvent.id, LabelEvent.example_id, LabelEvent.user, LabelEvent.label, LabelEvent.source)
             .where(LabelEvent.example_id.in_(chunk)))
        out += [EventRow(*r) for r in s.execute(q)]
    return sorted(out, key=lambda e: e.id)


def queue_left(s: Session, overlap: int) -> QueueLeft:
    """The Unlabeled queue's remaining items and annotations at `overlap` annotations per item: an
    unlabelled item needs `overlap` labels minus those given (done slots); a labelled one with some
    but fewer than `overlap` done slots is still handed out (to finish it)."""
    unlabelled = s.scalar(select(func.count()).select_from(Example).where(Example.label.is_(None))) or 0
    q = (select(Lease.example_id, Example.label.is_(None), func.count())
         .join(Example, Example.id == Lease.example_id).where(Lease.done.is_(True))
         .group_by(Lease.example_id, Example.label.is_(None)))
    items, annotations = unlabelled, unlabelled * overlap
    for _id, is_unlabelled, done in s.execute(q):
        given = min(int(done), overlap)
        if is_unlabelled:
            items -= given == overlap
            annotations -= given
        elif given < overlap:
            items += 1
            annotations += overlap - given
    return QueueLeft(int(items), int(annotations))
