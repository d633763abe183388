"""Team labelling through the Annotate adapters (Labelling, WorkDistribution, TeamProgress): people working one queue at once are handed different
items, an item goes to `annotations per item` different people, skips and expiry give items back,
bad settings are refused."""

from __future__ import annotations

import pytest

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.auth import add_user
from bertdemo.config import Settings
from bertdemo.errors import BadInput, Forbidden
from bertdemo.services import Services
from tests.unit.actions.test_annotate import seed

TEAM = ("ann", "bob", "cid")


@pytest.fixture
def team(tmp_path) -> AnnotateAdapters:
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False, lease_minutes=5))
    add_user(services.engine, "boss", "password-boss", "admin")
    for name in TEAM:
        add_user(services.engine, name, f"password-{name}", "annotator")
    seed(services, [(f"tweet {i}", None) for i in range(6)])
    return AnnotateAdapters.create(services)


def test_people_on_one_queue_are_handed_different_items(team):
    items = {name: team.labelling.next_item("unlabeled", "", [], name) for name in TEAM}
    assert len({i.id for i in items.values()}) == 3
    assert items["ann"].remaining == 6 and items["ann"].team_remaining == 6
    again = team.labelling.next_item("unlabeled", "", [], "ann")  # a reload hands her the same item
    assert again.id == items["ann"].id
    for name, item in items.items():
        team.labelling.save_label(item.id, "neutral", item.version, name)
    labelled = {i.id for i in items.values()}
    nxt = team.labelling.next_item("unlabeled", "", [], "ann")
    assert nxt.id not in labelled and nxt.team_remaining == 3


def test_with_overlap_two_every_item_is_labelled_by_exactly_two_people(team):
    assert team.work.set_overlap("2", "boss") == 2
    assert team.progress.agreement("boss").items_left == 6
    by_item: dict[int, set[str]] = {}
    for _ in range(6):  # each person works until nothing is left for them
        for name in TEAM:
            item = team.labelling.next_item("unlabeled", "", [], name)
            if item is not None:
                team.labelling.save_label(item.id, "positive", item.version, name)
                by_item.setdefault(item.id, set()).add(name)
    assert len(by_item) == 6 and all(len(people) == 2 for people in by_item.values())
    progress = team.progress.agreement("boss")
    assert progress.items_left == 0 and progress.shared_items == 6
    assert dict(zip(progress.counts["annotator"], progress.counts["items"])) == {"ann": 4, "bob": 4, "cid": 4}
    assert all(team.labelling.next_item("unlabeled", "", [], name) is None for name in TEAM)
    review = team.labelling.next_item("search", "tweet", [], "ann")  # a review queue still shows labelled items
    assert review is not None and review.label == "positive"


def test_a_skipped_item_goes_to_the_next_person_at_once(team):
    first = team.labelling.next_item("unlabeled", "", [], "ann")
    assert team.labelling.next_item("unlabeled", "", [], "bob").id != first.id
    assert team.labelling.skip(first.id, "ann") is True
    assert team.labelling.next_item("unlabeled", "", [], "cid").id == first.id
    assert team.labelling.skip(first.id, "ann") is False  # she no longer holds it


def test_bad_settings_and_skips_are_refused_and_change_nothing(team):
    for bad in (0, 1e9, -1, 2.5, "two", None, True):
        with pytest.raises(BadInput, match="Annotations per item must be a whole number from 1 to 20"):
            team.work.set_overlap(bad, "boss")
    with pytest.raises(Forbidden, match="Only admins"):
        team.work.set_overlap(2, "ann")
    assert team.work.overlap() == 1
    with pytest.raises(BadInput, match="The example id must be a whole number"):
        team.labelling.skip("x", "ann")
    assert team.labelling.skip(10**6, "ann") is False  # an id nobody holds: nothing to give back


def test_with_overlap_two_both_annotations_are_kept_without_a_conflict(team):
    """Two people handed the same item at once each give their own annotation: the second save is
    no conflict (with overlap 1, or without a lease, the version check stays)."""
    team.work.set_overlap(2, "boss")
    a = team.labelling.next_item("unlabeled", "", [], "ann")
    b = team.labelling.next_item("unlabeled", "", [], "bob")
    assert a.id == b.id and a.version == b.version
    team.labelling.save_label(a.id, "negative", a.version, "ann")
    saved = team.labelling.save_label(b.id, "positive", b.version, "bob")  # b.version is stale: still accepted
    assert (saved.user, saved.label) == ("bob", "positive")
    agreement = team.progress.agreement("boss")
    assert agreement.shared_items == 1
    from bertdemo.errors import Conflict

    with pytest.raises(Conflict):  # cid holds no slot of it: her stale version is refused as before
        team.labelling.save_label(a.id, "neutral", a.version, "cid")


def test_someone_elses_undo_puts_the_item_back_for_the_team(team):
    """ann labels an item, an admin undoes her change: the item is unlabelled and not done by
    anyone, so the Unlabeled queue hands it out again (it was stuck 'finished' before). (An
    annotator may not undo ann's change: tests/unit/actions/test_ownership.py.)"""
    item = team.labelling.next_item("unlabeled", "", [], "ann")
    team.labelling.save_label(item.id, "negative", item.version, "ann")
    team.labelling.undo(item.id, "boss")
    assert item.id in team.labelling.queue_ids("unlabeled")
    assert team.labelling.next_item("unlabeled", "", [], "cid").id == item.id


def test_a_person_holds_one_item_at_a_time(team):
    """Asking again with the shown item excluded (an API client, or another queue) frees the item
    held before: one person cannot lock the queue."""
    first = team.labelling.next_item("unlabeled", "", [], "ann")
    second = team.labelling.next_item("unlabeled", "", [first.id], "ann")
    assert second.id != first.id
    assert team.labelling.next_item("unlabeled", "", [], "bob").id == first.id  # free again
