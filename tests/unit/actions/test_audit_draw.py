"""The suggestion-bias audit's draw through the labelling flow (WorkDistribution, Labelling, the
Label view's handlers): the hidden share over many hand-outs is close to the setting, a hidden item
carries no suggestion for the person who holds it, accepting there is refused, every save records
its condition, and only admins set the share (0 to 0.5). The draw is seeded (an injected source)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo.actions.distribution import WorkDistribution
from bertdemo.actions.label_item import HIDDEN_BY
from bertdemo.actions.labelling import Labelling
from bertdemo.actions.notes import Notes
from bertdemo.actions.suggestion_audit import SuggestionAudit
from bertdemo.db import leases
from bertdemo.db.models import LabelEvent, Lease
from bertdemo.errors import BadInput, Forbidden
from bertdemo.services import Services
from bertdemo.ui.annotate_label import HIDDEN_NOTE, LabelHandlers, Screen, describe
from tests.unit.actions.test_annotate import seed

POSITIVE = [0.1, 0.2, 0.7]  # every item's stored score: the model suggests "positive"


@pytest.fixture
def services(team_services) -> Services:  # an admin boss, annotators ann and bob (tests/conftest.py)
    return team_services


def labelling(services: Services, draws) -> Labelling:  # noqa: ANN001 - a () -> float
    """The labelling adapter with the audit's draw taken from `draws`."""
    return Labelling(services, WorkDistribution(services, draw=draws), Notes(services), lambda _who: [], lambda: None)


def scripted(*values: float):
    """A draw that returns `values` in turn."""
    it = iter(values)
    return lambda: next(it)


def test_the_hidden_share_over_2000_hand_outs_is_close_to_the_setting(services):
    ids = seed(services, [(f"tweet {i}", None) for i in range(2000)])
    SuggestionAudit(services).set_share(0.1, "boss")
    work = WorkDistribution(services, draw=random.Random(7).random)
    seen: set[int] = set()
    hidden = 0
    for n in range(2000):
        h = work.hand_out("ann", ids, exclude=seen)
        if n % 50 == 0:  # the draw is stored with the lease it was made for
            with Session(services.engine) as s:
                assert leases.handout_of(s, h.example_id, "ann").hide_suggestion is h.hide_suggestion
        seen.add(h.example_id)
        hidden += h.hide_suggestion
    assert len(seen) == 2000
    assert 0.08 <= hidden / 2000 <= 0.12, hidden


def test_share_zero_draws_nothing_and_a_reload_keeps_the_draw(services):
    seed(services, [(f"tweet {i}", None) for i in range(3)], [POSITIVE] * 3)
    audit = SuggestionAudit(services)
    audit.set_share(0, "boss")

    def never() -> float:
        raise AssertionError("the audit is off: nothing is drawn")

    assert labelling(services, never).next_item("unlabeled", username="ann").suggestion_hidden is False
    audit.set_share(0.5, "boss")
    acts = labelling(services, scripted(0.3, 0.9, 0.9))  # bob's hand-out draws 0.3 < 0.5: hidden
    first = acts.next_item("unlabeled", username="bob")
    again = acts.next_item("unlabeled", username="bob")  # a reload extends his lease: its draw holds
    assert first.id == again.id and first.suggestion_hidden and again.suggestion_hidden


def test_a_hidden_item_has_no_suggestion_for_its_holder_and_accepting_is_refused(services):
    ids = seed(services, [("lost my bag", None), ("nice crew", None)], [POSITIVE] * 2)
    SuggestionAudit(services).set_share(0.5, "boss")
    acts = labelling(services, scripted(0.2, 0.7))  # ann's hand-out hidden, bob's shown
    item = acts.next_item("unlabeled", username="ann")
    assert (item.predicted, item.confidence, item.probs, item.suggested_by) == (None, None, {}, HIDDEN_BY)
    assert item.as_api()["suggestion_hidden"] is True and item.as_api()["predicted"] is None
    assert acts.item(item.id, viewer="ann").suggestion_hidden  # by id, for her: still hidden
    assert acts.item(item.id).predicted == "positive"  # for no one in particular (e.g. the table)
    other = acts.next_item("unlabeled", username="bob")
    assert other.id != item.id and other.predicted == "positive" and not other.suggestion_hidden
    assert acts.item(item.id, viewer="bob").predicted == "positive"  # bob does not hold ann's item
    with pytest.raises(BadInput, match=r"suggestion is hidden for example \d+ \(an audit of suggestion bias\)"):
        acts.save_label(item.id, "positive", item.version, "ann", accepted_suggestion=True)
    assert {i.id for i in (item, other)} == set(ids)


def test_every_save_records_its_condition(services):
    ids = seed(services, [("a", None), ("b", None), ("c", None)], [POSITIVE] * 3)
    SuggestionAudit(services).set_share(0.5, "boss")
    acts = labelling(services, scripted(0.1, 0.9))
    hidden = acts.next_item("unlabeled", username="ann")
    with Session(services.engine) as s:
        claimed = leases.handout_of(s, hidden.id, "ann").claimed_at
    acts.save_label(hidden.id, "negative", hidden.version, "ann")
    shown = acts.next_item("unlabeled", username="ann")
    acts.save_label(shown.id, "positive", shown.version, "ann", accepted_suggestion=True)
    table = next(i for i in ids if i not in (hidden.id, shown.id))
    acts.save_label(table, "neutral", 0, "bob")  # from the table: no hand-out
    with Session(services.engine) as s:
        rows = {e.example_id: (e.source, e.suggested, e.suggestion_shown, e.handed_out_at)
                for e in s.scalars(select(LabelEvent))}
        assert all(lease.done for lease in s.scalars(select(Lease)))
    assert rows[hidden.id] == ("annotator", "positive", False, claimed)  # the model's view, not shown
    assert rows[shown.id][:3] == ("suggestion", "positive", True) and rows[shown.id][3] is not None
    assert rows[table] == ("annotator", "positive", None, None)


def test_only_admins_set_the_share_from_0_to_half(services):
    audit = SuggestionAudit(services)
    with pytest.raises(Forbidden, match="Only admins"):
        audit.set_share(0.2, "ann")
    for bad in (0.9, -0.1, "lots", None, True):
        with pytest.raises(BadInput, match="from 0 .* to 0.5"):
            audit.set_share(bad, "boss")
    assert audit.set_share("0.25", "boss") == 0.25 and audit.share() == 0.25
    assert WorkDistribution(services).audit_share() == 0.25
    assert audit.set_share(0, "boss") == 0.0 and audit.share() == 0.0


def test_the_label_view_says_the_suggestion_is_hidden_and_accept_only_warns(services, monkeypatch):
    seed(services, [("a", None)], [POSITIVE])
    SuggestionAudit(services).set_share(0.5, "boss")
    acts = labelling(services, scripted(0.0))
    handlers = LabelHandlers(acts, predict=None)  # type: ignore[arg-type]
    item = acts.next_item("unlabeled", username="ann")
    assert HIDDEN_NOTE in describe(item) and "model suggests" not in describe(item)
    warned: list[str] = []
    monkeypatch.setattr("bertdemo.ui.annotate_label.gr.Warning", lambda msg, *a, **k: warned.append(msg))
    current = {"id": item.id, "version": item.version, "predicted": None, "blind": False, "hidden": True}
    out = LabelHandlers.accept_suggestion.__wrapped__(handlers, current, "unlabeled", "", "", [], [], None)
    assert len(out) == len(Screen._fields) and warned and "hidden" in warned[0]
    assert LabelHandlers.attributions.__wrapped__(handlers, True, current)["value"] is None
    assert len(warned) == 2 and "attributions" in warned[1]
