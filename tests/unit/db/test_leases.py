"""Leases on annotation slots (bertdemo.db.leases) against every backend of the `engine` fixture:
claims, overlap, expiry, done, skip, and the race for the last free slot."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo.db import examples, leases
from bertdemo.db.examples import NewExample
from bertdemo.db.models import Lease, now

LABELS = ("negative", "neutral", "positive")


def seed(engine, n=3) -> list[int]:
    with Session(engine) as s, s.begin():
        examples.import_examples(s, [NewExample(f"text {i}", f"text {i}") for i in range(n)], "import", "t", LABELS)
    with Session(engine) as s:
        return sorted(examples.queue_ids(s, "unlabeled", None))


def claim(engine, ex, user, overlap=1, minutes=5, at=None) -> bool:
    at = at or now()
    with Session(engine) as s, s.begin():
        leases.drop_expired(s, at)
        return leases.claim(s, ex, user, overlap, at + timedelta(minutes=minutes), at)


def test_one_slot_one_person_until_it_expires(engine):
    a, b, _c = seed(engine)
    assert claim(engine, a, "ann") and claim(engine, a, "ann")  # a second claim extends her own lease
    assert not claim(engine, a, "bob")
    with Session(engine) as s:
        assert leases.unavailable(s, "bob", 1, now()) == {a}
        assert leases.held_by_user(s, "ann", now()) == {a}
    later = now() + timedelta(minutes=6)  # ann closed the tab: her lease runs out
    assert claim(engine, a, "bob", at=later)
    with Session(engine) as s:
        assert leases.held_by_user(s, "ann", later) == set() and leases.held_by_user(s, "bob", later) == {a}
    assert claim(engine, b, "ann")


def test_overlap_k_hands_an_item_to_k_different_people_then_never_again(engine):
    [a] = seed(engine, 1)
    assert claim(engine, a, "ann", overlap=2) and claim(engine, a, "bob", overlap=2)
    assert not claim(engine, a, "cid", overlap=2)  # both slots held
    with Session(engine) as s, s.begin():
        assert leases.finish(s, a, "ann", now())
    assert not claim(engine, a, "ann", overlap=2)  # done by her: never handed to her again
    assert not claim(engine, a, "cid", overlap=2)
    with Session(engine) as s, s.begin():
        assert leases.release(s, a, "bob")  # bob skips it
    assert claim(engine, a, "cid", overlap=2)
    with Session(engine) as s, s.begin():
        leases.finish(s, a, "cid", now())
        assert leases.finished(s, 2) == {a} and leases.finished(s, 3) == set()
        assert leases.unavailable(s, "dan", 2, now()) == {a}
        assert leases.unavailable(s, "dan", 3, now()) == set()  # the admin raised the overlap: one more


def test_a_save_without_a_lease_still_counts_its_person(engine):
    [a] = seed(engine, 1)
    with Session(engine) as s, s.begin():
        assert leases.finish(s, a, "ann", now())
    assert not claim(engine, a, "bob")  # overlap 1: ann's label took the slot
    assert claim(engine, a, "bob", overlap=2)


def test_racing_for_the_last_slot_only_one_wins(engine):
    ids = seed(engine, 1)
    wins, barrier = [], threading.Barrier(8)

    def racer(name: str) -> None:
        barrier.wait()
        if claim(engine, ids[0], name):
            wins.append(name)

    threads = [threading.Thread(target=racer, args=(f"p{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(wins) == 1
    with Session(engine) as s:
        holders = s.execute(select(Lease.user).where(Lease.example_id == ids[0])).scalars().all()
        assert holders == wins


def test_admin_settings_round_trip(engine):
    with Session(engine) as s, s.begin():
        assert leases.get_setting(s, "annotations_per_item", 1) == 1
        leases.set_setting(s, "annotations_per_item", 3, "boss")
        leases.set_setting(s, "annotations_per_item", 2, "boss")
    with Session(engine) as s:
        assert leases.get_setting(s, "annotations_per_item", 1) == 2
