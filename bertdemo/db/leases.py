"""Work distribution: leases on examples' annotation slots, and the admin settings table.

An example has `overlap` slots (annotations per item, an admin setting, default 1). A person who
is handed an example holds one slot until the lease expires or they save (the slot is then `done`
for good) or skip (the slot is freed). An example whose slots are all held or done is handed to
nobody else; a person is never handed an example they hold or have done. Claims are atomic on
every backend through the (example, slot) primary key: of two people racing for the last free
slot one gets it and the other's insert fails (IntegrityError), after which they try the next
example.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bertdemo.db.models import AppSetting, Lease, now


def drop_expired(s: Session, at: datetime) -> int:
    """Free the slots whose lease ran out (not done): a closed tab keeps nothing past its lease."""
    res = s.execute(delete(Lease).where(Lease.done.is_(False), Lease.expires_at <= at)
                    .execution_options(synchronize_session=False))
    return res.rowcount or 0


def unavailable(s: Session, user: str, overlap: int, at: datetime, count_done: bool = True) -> set[int]:
    """Examples not to hand `user`: all of their `overlap` slots are held or done, or `user` holds
    or has done one. With `count_done` False (review queues: a labelled item may be looked at
    again) only slots held right now count."""
    live = or_(Lease.done.is_(True), Lease.expires_at > at) if count_done else (
        Lease.done.is_(False) & (Lease.expires_at > at))
    full = select(Lease.example_id).where(live).group_by(Lease.example_id).having(func.count() >= overlap)
    mine = select(Lease.example_id).where(Lease.user == user, live)
    return set(s.scalars(full)) | set(s.scalars(mine))


def held_by(s: Session, example_id: int, user: str, at: datetime) -> Lease | None:
    """`user`'s live lease on the example: the one they hold right now if any, else the one done."""
    return s.scalar(select(Lease).where(Lease.example_id == example_id, Lease.user == user,
                                        or_(Lease.done.is_(True), Lease.expires_at > at))
                    .order_by(Lease.done).limit(1))


def held_by_user(s: Session, user: str, at: datetime) -> set[int]:
    """Examples `user` holds a live (not done) lease on: handed to them again, not to others."""
    return set(s.scalars(select(Lease.example_id).where(Lease.user == user, Lease.done.is_(False),
                                                         Lease.expires_at > at)))


def claim(s: Session, example_id: int, user: str, overlap: int, until: datetime, at: datetime,
          count_done: bool = True) -> bool:
    """Take a free slot of the example for `user` until `until` (extend it when they hold one
    already). False when every slot is taken or they have done it (with `count_done` False, a
    review: done slots neither block nor are taken, a held slot above them is). Runs in a
    SAVEPOINT, so a lost race leaves the caller's transaction usable."""
    mine = held_by(s, example_id, user, at)
    if mine is not None and not mine.done:
        mine.expires_at = until
        s.flush()
        return True
    if mine is not None and count_done:
        return False
    rows = s.execute(select(Lease.slot, Lease.done).where(Lease.example_id == example_id,
                                                          or_(Lease.done.is_(True), Lease.expires_at > at))).all()
    taken = {slot for slot, _done in rows}
    if count_done:
        free = [slot for slot in range(overlap) if slot not in taken]
    elif sum(1 for _slot, done in rows if not done) < overlap:  # a review: up to `overlap` people at once
        free = [max(taken, default=-1) + 1]
    else:
        free = []
    if not free:
        return False
    try:
        with s.begin_nested():
            # an expired row in this slot is reused: delete it first (only if still expired: a
            # live lease someone just took stays, and the insert below then fails)
            s.execute(delete(Lease).where(Lease.example_id == example_id, Lease.slot == free[0],
                                          Lease.done.is_(False), Lease.expires_at <= at)
                      .execution_options(synchronize_session=False))
            s.add(Lease(example_id=example_id, slot=free[0], user=user, claimed_at=at, expires_at=until))
            s.flush()
    except IntegrityError:  # someone took that slot between our read and our insert
        return False
    return True


def finish(s: Session, example_id: int, user: str, at: datetime) -> bool:
    """Mark `user`'s slot on the example done (they saved a label). When they held none (a save from
    the table or the API without next_item), take a free slot as done if there is one. True when
    a slot is now done for them."""
    mine = held_by(s, example_id, user, at)
    if mine is not None:
        if mine.done:
            return True
        if s.scalar(select(Lease.slot).where(Lease.example_id == example_id, Lease.user == user,
                                             Lease.done.is_(True)).limit(1)) is not None:
            s.delete(mine)  # a review of an item they had labelled: one done slot per person
        else:
            mine.done = True
        s.flush()
        return True
    taken = set(s.scalars(select(Lease.slot).where(Lease.example_id == example_id,
                                                   or_(Lease.done.is_(True), Lease.expires_at > at))))
    slot = max(taken, default=-1) + 1  # past the overlap is fine: the slot records who labelled it
    try:
        with s.begin_nested():
            s.execute(delete(Lease).where(Lease.example_id == example_id, Lease.slot == slot,
                                          Lease.done.is_(False), Lease.expires_at <= at)
                      .execution_options(synchronize_session=False))
            s.add(Lease(example_id=example_id, slot=slot, user=user, claimed_at=at, expires_at=at, done=True))
            s.flush()
    except IntegrityError:
        return False
    return True


def reopen(s: Session, example_id: int, user: str, until: datetime) -> None:
    """`user` withdrew their label (undo): their done slot is held by them again, until `until`."""
    s.execute(update(Lease).where(Lease.example_id == example_id, Lease.user == user, Lease.done.is_(True))
              .values(done=False, expires_at=until).execution_options(synchronize_session=False))


def release(s: Session, example_id: int, user: str) -> bool:
    """Free `user`'s held (not done) slot on the example (they skipped it). True when one was held."""
    res = s.execute(delete(Lease).where(Lease.example_id == example_id, Lease.user == user,
                                        Lease.done.is_(False)).execution_options(synchronize_session=False))
    return bool(res.rowcount)


def in_progress(s: Session, overlap: int) -> list[int]:
    """Examples some but fewer than `overlap` people have labelled (by id): with overlap 2 or more,
    still to be handed out although they have a label now."""
    q = (select(Lease.example_id).where(Lease.done.is_(True)).group_by(Lease.example_id)
         .having(func.count() < overlap).order_by(Lease.example_id))
    return list(s.scalars(q))


def finished(s: Session, overlap: int) -> set[int]:
    """Examples labelled by at least `overlap` people (through leases): out of the labelling queues."""
    q = (select(Lease.example_id).where(Lease.done.is_(True)).group_by(Lease.example_id)
         .having(func.count() >= overlap))
    return set(s.scalars(q))


# --------------------------------------------------------------------------- admin settings
def get_setting(s: Session, key: str, default: object = None) -> object:
    row = s.get(AppSetting, key)
    return default if row is None else row.value.get("value", default)


def set_setting(s: Session, key: str, value: object, user: str) -> None:
    row = s.get(AppSetting, key)
    if row is None:
        s.add(AppSetting(key=key, value={"value": value}, updated_by=user, updated_at=now()))
    else:
        row.value, row.updated_by, row.updated_at = {"value": value}, user, now()
    s.flush()
