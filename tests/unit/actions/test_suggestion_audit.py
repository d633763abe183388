"""The suggestion-bias audit (actions/suggestion_audit.py): a scripted annotator who accepts a wrong
suggestion on shown items gives a measured gap between shown and hidden; agreement with adjudicated
final labels, overturned accepts and runs of fast accepts from known histories; an annotator sees
their own row only."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.distribution import WorkDistribution
from bertdemo.actions.labelling import Labelling
from bertdemo.actions.notes import Notes
from bertdemo.actions.suggestion_audit import FAST_ACCEPT_S, FAST_RUN, SuggestionAudit
from bertdemo.services import Services
from tests.unit.actions.test_annotate import seed
from tests.unit.actions.test_annotation_time import label

POSITIVE = [0.1, 0.2, 0.7]  # the model suggests "positive" for every item; the truth is "negative"


@pytest.fixture
def services(team_services) -> Services:  # an admin boss, annotators ann and bob (tests/conftest.py)
    return team_services


def test_a_scripted_acceptance_bias_gives_a_measured_gap(services):
    seed(services, [(f"tweet {i}", None) for i in range(120)], [POSITIVE] * 120)
    audit = SuggestionAudit(services)
    audit.set_share(0.5, "boss")
    acts = Labelling(services, WorkDistribution(services, draw=random.Random(3).random), Notes(services),
                     lambda _who: [], lambda: None)
    rng = random.Random(4)
    shown = accepted = 0
    while (item := acts.next_item("unlabeled", username="ann")) is not None:
        accept = not item.suggestion_hidden and rng.random() < 0.7  # she takes a wrong suggestion 70% of the time
        shown += not item.suggestion_hidden
        accepted += accept
        acts.save_label(item.id, "positive" if accept else "negative", item.version, "ann", accepted_suggestion=accept)
    r = audit.report("boss", True)
    assert (r.shown.labels, r.hidden.labels) == (shown, 120 - shown) and 40 < shown < 80
    assert r.hidden.distribution == {"negative": 1.0, "neutral": 0.0, "positive": 0.0}
    assert r.shown.distribution["positive"] == pytest.approx(accepted / shown)
    assert r.distribution_gap == pytest.approx(accepted / shown)  # all of the shift is the accepted suggestions
    assert r.p_value < 1e-6
    assert (r.shown.agree_model, r.hidden.agree_model) == (pytest.approx(accepted / shown), 0.0)
    (ann,) = r.people
    assert (ann.shown, ann.hidden, ann.accepted) == (shown, 120 - shown, accepted)
    assert ann.acceptance_rate == pytest.approx(accepted / shown) and ann.overturned == 0
    assert "differ by" in r.message and "chi-square p" in r.message
    json.dumps(r.as_api())
    assert all(not isinstance(v, (dict, list, tuple)) for row in r.rows() for v in row.values())


@pytest.fixture
def histories(services) -> list[int]:
    """ann: two accepts (one overturned by bob, one confirmed by an adjudication) and a hidden label the
    adjudication overrules; cid: 6 fast accepts in a row; dan: 4 fast, a slow one, 4 fast."""
    ids = seed(services, [(f"tweet {i}", None) for i in range(20)])
    ago, fast, slow = timedelta(minutes=30), FAST_ACCEPT_S / 2, 3.0
    with Session(services.engine) as s, s.begin():
        label(s, ids[0], "ann", slow, ago, source="suggestion", lab="positive")
        label(s, ids[1], "ann", slow, ago, source="suggestion", lab="positive")
        label(s, ids[2], "ann", slow, ago, shown=False, lab="negative")
        label(s, ids[0], "bob", None, ago, lab="negative")  # from the table: overturns ann's accept
        label(s, ids[1], "boss", None, ago, source="adjudication", lab="positive")
        label(s, ids[2], "boss", None, ago, source="adjudication", lab="positive")
        for i in range(3, 9):
            label(s, ids[i], "cid", fast, ago, source="suggestion", lab="positive")
        for i, took in zip(range(9, 18), [fast] * 4 + [slow] + [fast] * 4):
            label(s, ids[i], "dan", took, ago, source="suggestion", lab="positive")
    return ids


def test_final_labels_overturns_and_fast_runs_from_known_histories(services, histories):
    r = SuggestionAudit(services).report("boss", True)
    people = {p.user: p for p in r.people}
    assert set(people) == {"ann", "cid", "dan"}  # bob's and boss's labels had no hand-out
    ann, cid, dan = people["ann"], people["cid"], people["dan"]
    assert (ann.shown, ann.hidden, ann.accepted, ann.overturned) == (2, 1, 2, 1)
    assert (ann.acceptance_rate, ann.overturn_rate) == (1.0, 0.5)
    assert (cid.fast_accepts, cid.longest_fast_run, cid.flagged) == (6, 6, True)
    assert (dan.fast_accepts, dan.longest_fast_run, dan.flagged) == (8, 4, False) and FAST_RUN == 5
    assert (r.shown.n_final, r.shown.agree_final) == (1, 1.0)  # ann's confirmed accept
    assert (r.hidden.n_final, r.hidden.agree_final) == (1, 0.0)  # her hidden label, overruled
    assert r.shown.median_s == pytest.approx(FAST_ACCEPT_S / 2)
    assert "in a row: cid." in r.message and "Only 1 hidden labels" in r.message


def test_an_annotator_sees_only_their_own_row(services, histories):
    r = SuggestionAudit(services).report("ann", False)
    assert [p.user for p in r.people] == ["ann"] and "cid" not in r.message
    assert r.shown.labels == 17 and r.hidden.labels == 1  # the team's comparison stays


def test_an_audit_that_is_off_says_so(services):
    audit = SuggestionAudit(services)
    audit.set_share(0, "boss")
    r = audit.report("boss", True)
    assert (r.share, r.distribution_gap, r.p_value, r.people) == (0.0, None, None, ())
    assert r.message.startswith("The audit is off")
