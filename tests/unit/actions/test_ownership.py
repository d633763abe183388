"""Who may undo what (issue 27): an annotator only their own newest change of an item, never an
adjudication or one row of a bulk label; an admin any change; a bulk label as a batch, by the
person who made it or an admin; and an undo by someone else never leaves the author's label
counted as done."""

from __future__ import annotations

import re

import pytest

from bertdemo.errors import Conflict, Forbidden
from tests.unit.actions.test_distribution import team  # noqa: F401 - the fixture: boss (admin), ann, bob, cid


def _labelled_by(team, who: str, label: str = "negative"):  # noqa: ANN001, ANN202
    item = team.labelling.next_item("unlabeled", "", [], who)
    return team.labelling.save_label(item.id, label, item.version, who)


def test_an_annotator_may_not_undo_someone_elses_label(team):  # noqa: F811
    saved = _labelled_by(team, "ann")
    with pytest.raises(Forbidden, match=f"Example {saved.example_id} was last changed by ann; you may undo only "
                                        "your own changes"):
        team.labelling.undo(saved.example_id, "bob")
    assert team.labelling.item(saved.example_id).label == "negative"  # nothing changed
    assert team.labelling.undo(saved.example_id, "ann", saved.version).label is None  # her own: yes


def test_an_admin_may_undo_anyones_label(team):  # noqa: F811
    saved = _labelled_by(team, "ann")
    undone = team.labelling.undo(saved.example_id, "boss")
    assert (undone.label, undone.user, undone.source) == (None, "boss", "undo")
    assert saved.example_id in team.labelling.queue_ids("unlabeled")  # back to the team


def test_an_adjudication_is_undone_by_admins_only(team):  # noqa: F811
    team.work.set_overlap(2, "boss")
    first = _labelled_by(team, "ann", "negative")
    item = team.labelling.item(first.example_id)
    team.labelling.save_label(item.id, "positive", item.version, "bob")  # bob disagrees
    case = team.adjudication.next_case("boss")
    assert case.item.id == first.example_id
    decided = team.adjudication.decide(case.item.id, "neutral", case.item.version, "boss")
    for annotator in ("ann", "bob", "cid"):
        with pytest.raises(Forbidden, match="label is an adjudication; only admins may undo it"):
            team.labelling.undo(decided.example_id, annotator)
    assert team.labelling.item(decided.example_id).label == "neutral"
    assert team.labelling.undo(decided.example_id, "boss").label == "positive"


def test_a_bulk_label_is_undone_as_its_batch_only(team):  # noqa: F811
    ids = team.labelling.queue_ids("unlabeled")[:3]
    result = team.bulk.apply(team.bulk.preview(ids, "neutral"), "boss")
    for who in ("ann", "boss"):  # one row of a batch: nobody, not even an admin
        with pytest.raises(Forbidden, match="was last changed by a bulk label; undo the whole batch"):
            team.labelling.undo(ids[0], who)
    with pytest.raises(Forbidden, match="Only admins may do this"):
        team.bulk.undo(result.batch, "ann")  # the map's undo is an admin's
    with pytest.raises(Exception, match="Only the person who made a bulk label"):
        team.bulk.undo(result.batch, "ann", admin=False)  # the similar-examples undo: the author's
    assert team.bulk.undo(result.batch, "boss").changed == 3
    assert [team.labelling.item(i).label for i in ids] == [None, None, None]


def test_an_undo_after_someone_elses_change_is_a_conflict_not_a_loss(team):  # noqa: F811
    saved = _labelled_by(team, "ann")
    item = team.labelling.item(saved.example_id)
    team.labelling.save_label(item.id, "positive", item.version, "boss")  # an admin changes it after ann
    with pytest.raises(Conflict, match="was changed by boss"):
        team.labelling.undo(saved.example_id, "ann", saved.version)  # ann's undo of her change, now stale
    assert team.labelling.item(saved.example_id).label == "positive"


# ------------------------------------------------------------------------- blind labelling
def test_with_two_annotations_per_item_the_second_person_sees_no_one_elses_label(team):  # noqa: F811
    from bertdemo.ui.annotate_label import describe, screen

    team.work.set_overlap(2, "boss")
    first = _labelled_by(team, "ann", "positive")
    item = team.labelling.next_item("unlabeled", "", [], "bob")
    assert item.id == first.example_id and item.blind  # ann's item, handed to bob for his own label
    assert (item.label, item.updated_by, item.updated_at) == (None, None, None)
    api = item.as_api()
    assert api["label"] is None and api["updated_by"] is None and api["blind"] is True
    shown = screen(team.labelling, item, [], [])
    assert not re.search(r"\bann\b|positive", shown.info)  # not her name, not her label
    assert "independent annotation: other people's labels are hidden" in describe(item)
    assert shown.history.empty and list(shown.history.columns)  # headers, no rows
    assert shown.current["blind"] is True
    # his save is his own annotation; an admin (and the review queues) still see every label
    team.labelling.save_label(item.id, "negative", item.version, "bob")
    assert team.labelling.item(item.id).label == "negative"
    seen_by_admin = team.labelling.next_item("recent", "", [], "boss")
    assert seen_by_admin.blind is False and seen_by_admin.label is not None


def test_with_one_annotation_per_item_nothing_is_hidden(team):  # noqa: F811
    saved = _labelled_by(team, "ann", "positive")
    item = team.labelling.next_item("recent", "", [], "bob")
    assert item.id == saved.example_id and not item.blind and item.label == "positive" and item.updated_by == "ann"
