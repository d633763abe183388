"""Work distribution: leases on examples' annotation slots, and the admin settings table.

An example has `overlap` slots (annotations per item, an admin setting, default 1). A person who
is handed an example holds one slot until the lease expires or they save (the slot is then `done`
for good) or skip (the slot is freed). An example whose slots are all held or done is handed to
nobody else; a person is never handed an example they hold or have done. Claims are atomic on
every backend through the (example, slot) primary key: of two people racing for the last free
slot one gets it and the other's insert fails (IntegrityError), after which they try the next
example. Each new hand-out carries the suggestion-bias audit's draw (`hide_suggestion`); an extended
lease keeps the draw it was handed out with.
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


def _mine(example_id: int, user: str, at: datetime):  # noqa: ANN202 - a SQL condition
    """`user`'s live rows of the example: done, or held and not expired."""
    return (Lease.example_id == example_id) & (Lease.user == user) & or_(Lease.done.is_(True), Lease.expires_at > at)


def held_by(s: Session, example_id: int, user: str, at: datetime) -> Lease | None:
    """`user`'s live lease on the example: the one they hold right now if any, else the one done."""
    return s.scalar(select(Lease).where(_mine(example_id, user, at)).order_by(Lease.done).limit(1))


def held_by_user(s: Session, user: str, at: datetime) -> set[int]:
    """Examples `user` holds a live (not done) lease on: handed to them again, not to others."""
    return set(s.scalars(select(Lease.example_id).where(Lease.user == user, Lease.done.is_(False),
                                                         Lease.expires_at > at)))


def _extend(s: Session, example_id: int, user: str, until: datetime, at: datetime) -> bool:
    """Extend `user`'s held, unexpired lease (one statement: a row another transaction removed
    meanwhile is simply not there, instead of a stale ORM object)."""
    res = s.execute(update(Lease).where(Lease.example_id == example_id, Lease.user == user, Lease.done.is_(False),
                                        Lease.expires_at > at)
                    .values(expires_at=until).execution_options(synchronize_session=False))
    return bool(res.rowcount)


def _insert(s: Session, example_id: int, slot: int, user: str, until: datetime, at: datetime, done: bool,
            hide: bool = False) -> bool:
    """Take `slot` (reusing an expired row there), in a SAVEPOINT: False when someone holds it.
    `hide`: the audit's draw for this hand-out (the suggestion is not shown)."""
    try:
        with s.begin_nested():
            # only an expired row is removed: a live lease someone just took stays, and the insert fails
            s.execute(delete(Lease).where(Lease.example_id == example_id, Lease.slot == slot, Lease.done.is_(False),
                                          Lease.expires_at <= at).execution_options(synchronize_session=False))
            s.add(Lease(example_id=example_id, slot=slot, user=user, claimed_at=at, expires_at=until, done=done,
                        hide_suggestion=hide))
            s.flush()
    except IntegrityError:  # someone took that slot between our read and our insert
        return False
    return True


def claim(s: Session, example_id: int, user: str, overlap: int, until: datetime, at: datetime,
          count_done: bool = True, hide: bool = False) -> bool:
    """Take a free slot of the example for `user` until `until` (extend it when they hold one
    already: it keeps its draw). False when its live slots (held or done) number `overlap` already
    or they have done it; with `count_done` False (a review) only held slots count, and a new one
    goes after every other. Checked again here, inside the claim's transaction, not only by the
    caller's earlier read. `hide`: the audit's draw, stored with a new slot."""
    if _extend(s, example_id, user, until, at):
        return True
    rows = s.execute(select(Lease.slot, Lease.done, Lease.user).where(
        Lease.example_id == example_id, or_(Lease.done.is_(True), Lease.expires_at > at))).all()
    taken = {slot for slot, _done, _user in rows}
    if count_done:
        if len(rows) >= overlap or any(u == user for _slot, _done, u in rows):
            return False
        slot = min(x for x in range(overlap + len(taken)) if x not in taken)
    else:
        if sum(1 for _slot, done, _user in rows if not done) >= overlap:
            return False
        slot = max(taken, default=-1) + 1
    return _insert(s, example_id, slot, user, until, at, done=False, hide=hide)


def handout_of(s: Session, example_id: int, user: str) -> Lease | None:
    """`user`'s hand-out of the example they have not saved yet (a held slot; expired too, until it is
    dropped): when it was handed out and the audit's draw. None when they hold none (a save from the
    table, or from the API without next_item)."""
    return s.scalar(select(Lease).where(Lease.example_id == example_id, Lease.user == user, Lease.done.is_(False))
                    .order_by(Lease.claimed_at.desc()).limit(1))


def finish(s: Session, example_id: int, user: str, at: datetime) -> bool:
    """Mark `user`'s slot on the example done (they saved a label); a person keeps one done slot
    (a review of an item they had labelled adds none). When they held none (a save from the table
    or the API without next_item), a new done slot records them. True when they have one now."""
    has_done = s.scalar(select(Lease.slot).where(Lease.example_id == example_id, Lease.user == user,
                                                 Lease.done.is_(True)).limit(1)) is not None
    held = (Lease.example_id == example_id) & (Lease.user == user) & Lease.done.is_(False)
    if has_done:
        s.execute(delete(Lease).where(held).execution_options(synchronize_session=False))
        return True
    if s.execute(update(Lease).where(held, Lease.expires_at > at).values(done=True)
                 .execution_options(synchronize_session=False)).rowcount:
        return True
    taken = set(s.scalars(select(Lease.slot).where(Lease.example_id == example_id,
                                                   or_(Lease.done.is_(True), Lease.expires_at > at))))
    return _insert(s, example_id, max(taken, default=-1) + 1, user, at, at, done=True)


def reopen(s: Session, example_id: int, user: str, until: datetime) -> None:
    """`user` withdraws their own label (undo): their done slot is held by them again, until `until`."""
    s.execute(update(Lease).where(Lease.example_id == example_id, Lease.user == user, Lease.done.is_(True))
              .values(done=False, expires_at=until).execution_options(synchronize_session=False))


def forget(s: Session, example_id: int, user: str) -> None:
    """Someone else undid `user`'s label: their done slot is free again (the item is not done by
    them any more)."""
    s.execute(delete(Lease).where(Lease.example_id == example_id, Lease.user == user, Lease.done.is_(True))
              .execution_options(synchronize_session=False))


def release_others(s: Session, user: str, keep: int) -> None:
    """Free every item `user` holds but `keep`: a person works on one item at a time, so loading
    another queue, or an API client asking again and again, locks nothing more."""
    s.execute(delete(Lease).where(Lease.user == user, Lease.done.is_(False), Lease.example_id != keep)
              .execution_options(synchronize_session=False))


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
