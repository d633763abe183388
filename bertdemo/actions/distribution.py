"""Work distribution for a team labelling at one link: each person is handed examples nobody else
is working on (a lease in the database, db/leases.py, so it holds across app processes), an
example goes to `annotations per item` different people and then leaves the queue, and the
counts of what is left for the person and for the team; the suggestion-bias audit's draw per
hand-out (a share of items is handed out with the model's suggestion hidden). No Gradio here."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.db import leases
from bertdemo.db.models import now
from bertdemo.services import Services
from bertdemo.validate import number

OVERLAP_KEY = "annotations_per_item"
MAX_OVERLAP = 20  # more people per item than this is no longer a labelling team's agreement study
CLAIM_TRIES = 50  # candidates tried before giving up when others take them first
# queues for looking at labelled items again: an item someone labelled may be handed out again
# (never to two people at once); in the others it leaves once enough people labelled it
REVIEW_QUEUES = ("recent", "search")
AUDIT_KEY = "audit_share"  # app setting: the share of hand-outs whose suggestion is hidden (0 = audit off)
# a tenth: enough hidden labels for a comparison within a few hundred labels, while nine in ten
# items keep the suggestion's speed-up (docs/annotate.md); tests/conftest.py turns it off by default
AUDIT_DEFAULT = 0.10
MAX_AUDIT_SHARE = 0.5  # more would take the suggestion from most items: then it is no longer an audit


@dataclass(frozen=True)
class Handout:
    """What next_item hands a person: an example id (None when nothing is left for them)."""

    example_id: int | None
    left_for_you: int  # items of the queue this person may still be handed, this one included
    left_for_team: int  # items of the queue with a free or held slot (not done by enough people)
    overlap: int = 1  # annotations per item when it was handed out: 2 or more may make the item blind
    hide_suggestion: bool = False  # the audit's draw for this hand-out: show no suggestion


@dataclass(frozen=True)
class Condition:
    """How a person was handed the item they label: when, and whether the audit hid the suggestion."""

    handed_out_at: datetime
    hidden: bool


class WorkDistribution:
    """`draw`: a source of uniform numbers in [0, 1) for the audit's draw (a seeded
    random.Random(seed).random in tests and simulations; a fresh random.Random by default)."""

    def __init__(self, services: Services, draw: Callable[[], float] | None = None) -> None:
        self.engine = services.engine
        self.lease = timedelta(minutes=services.settings.lease_minutes)
        self._draw = draw or random.Random().random

    def overlap(self) -> int:
        """Annotations per item (admin setting; 1 = each item to one person)."""
        with Session(self.engine) as s:
            return int(leases.get_setting(s, OVERLAP_KEY, 1))  # type: ignore[arg-type]

    def set_overlap(self, value: object, username: str | None) -> int:
        """Set how many different people label each item before it leaves the queues (admins only): a
        whole number from 1 to MAX_OVERLAP (BadInput otherwise)."""
        user = auth.require_role(self.engine, username, "admin")
        k = int(number(value, "Annotations per item", 1, MAX_OVERLAP, whole=True))
        with Session(self.engine) as s, s.begin():
            leases.set_setting(s, OVERLAP_KEY, k, user)
        return k

    def audit_share(self) -> float:
        """The share of hand-outs whose suggestion is hidden (admin setting, SuggestionAudit.set_share)."""
        with Session(self.engine) as s:
            return stored_share(s)

    def unfinished(self) -> list[int]:
        """Items labelled by some but fewer than annotations-per-item people: the Unlabeled queue
        hands them out too (first, to finish them), since they have a label already."""
        overlap = self.overlap()
        if overlap == 1:
            return []
        with Session(self.engine) as s:
            return leases.in_progress(s, overlap)

    def left_for_team(self, ids: Collection[int]) -> int:
        """How many of `ids` are not yet labelled by annotations-per-item people."""
        overlap = self.overlap()
        with Session(self.engine) as s:
            finished = leases.finished(s, overlap)
        # a set (a cached queue: actions/ranked.IdSet) is asked about the finished ones, never walked
        return len(ids) - sum(1 for i in finished if i in ids) if isinstance(ids, AbstractSet) else \
            sum(1 for i in ids if i not in finished)

    def hand_out(self, user: str, ids: Sequence[int], review: bool = False, exclude: Collection[int] = (),
                 members: AbstractSet[int] | None = None) -> Handout:
        """Claim the first example of `ids` (a queue, best first) not in `exclude` (what this session
        showed already) that `user` may work on: nobody else holds its last free slot and they have
        not done it. `members`: `ids` as a set, when the caller keeps one (a cached queue), so the
        counts cost the size of the leases, not of the queue. One short transaction whose first
        statement writes: on SQLite it holds the write lock from there, so the leases it reads are
        the ones its claim meets and the first candidate is taken at the first try (other backends
        may still lose a race on the slot's key: then the next candidate). `review`: see
        REVIEW_QUEUES."""
        overlap = self.overlap()
        at = now()
        members = frozenset(ids) if members is None else members
        exclude = {i for i in exclude if i in members}
        with Session(self.engine) as s, s.begin():
            leases.drop_expired(s, at)  # the first statement writes: it waits for the lock
            share = stored_share(s)
            blocked = leases.unavailable(s, user, overlap, at, count_done=not review)
            mine = leases.held_by_user(s, user, at)
            team = len(members) - len(exclude | (leases.finished(s, overlap) & members))
            passed = exclude | ((blocked - mine) & members)  # not candidates
            for tried, example_id in enumerate(int(i) for i in ids if i not in passed):
                if tried >= CLAIM_TRIES:
                    break
                # the audit's draw, per new hand-out (a lease the person holds already keeps its own)
                hide = share > 0 and self._draw() < share
                if leases.claim(s, example_id, user, overlap, at + self.lease, at, count_done=not review, hide=hide):
                    leases.release_others(s, user, keep=example_id)  # one item at a time per person
                    held = leases.handout_of(s, example_id, user)
                    return Handout(example_id, len(members) - len(passed) - tried, team, overlap,
                                   bool(held and held.hide_suggestion))
        return Handout(None, 0, team, overlap)

    def independent(self, s: Session, example_id: int, user: str) -> bool:
        """True when `user` holds one of the item's slots and it has 2 or more: their label is an
        annotation of its own, not a correction of the others' (in the caller's transaction)."""
        mine = leases.held_by(s, example_id, user, now())
        return mine is not None and not mine.done and int(leases.get_setting(s, OVERLAP_KEY, 1)) > 1

    def condition(self, s: Session, example_id: int, user: str) -> Condition | None:
        """How `user` was handed the example they are labelling (in the caller's transaction, before
        `done`): None when they hold no hand-out of it (a save from the table or the API alone)."""
        held = leases.handout_of(s, example_id, user)
        return None if held is None else Condition(held.claimed_at, bool(held.hide_suggestion))

    def is_independent(self, example_id: int, user: str) -> bool:
        """`independent`, in a session of its own: may the item be shown blind to `user`?"""
        with Session(self.engine) as s:
            return self.independent(s, example_id, user)

    def done(self, s: Session, example_id: int, user: str) -> None:
        """`user` saved a label on the example (in the caller's transaction)."""
        leases.finish(s, example_id, user, now())

    def undone(self, s: Session, example_id: int, author: str, user: str) -> None:
        """`user` undid `author`'s label (in the caller's transaction): it counts no more among the
        people who labelled the item; when it was their own, the item is theirs to decide again."""
        if author == user:
            leases.reopen(s, example_id, user, now() + self.lease)
        else:
            leases.forget(s, example_id, author)

    def skip(self, example_id: int, user: str) -> bool:
        """Give the example back: someone else may be handed it at once."""
        with Session(self.engine) as s, s.begin():
            return leases.release(s, example_id, user)


def stored_share(s: Session) -> float:
    """The audit's share, as stored (the default until an admin sets it)."""
    return float(leases.get_setting(s, AUDIT_KEY, AUDIT_DEFAULT))  # type: ignore[arg-type]
