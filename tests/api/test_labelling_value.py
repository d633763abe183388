"""Is more labelling worth it (issue 25), over HTTP with accounts: the admin turns the
suggestion-bias audit up (annotators may not); two annotators label items handed out by the queue,
some with the suggestion hidden; each annotator sees their own annotation-time and audit rows, the
admin everyone's; the figures export as CSV and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from gradio_client import Client

from tests.support import seed_data_dir, wait_for

ANN, BOB, BOSS = ("ann", "ann-password"), ("bob", "bob-password"), ("boss", "boss-password")
UNLABELED = [f"Flight {i} to Denver was {w}, gate agents {v}" for i, (w, v) in
             enumerate([(w, v) for w in ("late", "fine", "great", "cancelled") for v in ("rude", "kind", "slow")])]
PER_PERSON = 5


@pytest.fixture(scope="module")
def value_app(tmp_path_factory, tiny_csv, app_launcher, copy_first_start) -> Iterator[str]:
    data_dir = copy_first_start(tmp_path_factory.mktemp("value-app") / "runtime")
    seed_data_dir(data_dir, [(*ANN, "annotator"), (*BOB, "annotator"), (*BOSS, "admin")], UNLABELED)

    def ready(url: str) -> bool:
        item = Client(url, auth=BOSS, verbose=False).predict("search", "Denver", [], "all", api_name="/next_item")
        return bool(item and item["predicted"])  # the seeded examples are scored

    with app_launcher(data_dir, tiny_csv, ready) as url:
        yield url


def label_some(client: Client, accept: bool) -> list[dict]:
    """Label PER_PERSON items of the Denver examples as the queue hands them out; accept the shown
    suggestion when `accept`, else answer "neutral". Returns the items as handed out."""
    items = []
    for _ in range(PER_PERSON):
        item = client.predict("search", "Denver", [], "all", api_name="/next_item")
        assert item is not None
        if item["suggestion_hidden"]:  # the audit hid it: no suggestion to see, none to accept
            assert item["predicted"] is None and item["probs"] == {}
        take = accept and not item["suggestion_hidden"]
        client.predict(item["id"], item["predicted"] if take else "neutral", item["version"], take,
                       api_name="/save_label")
        items.append(item)
    return items


def test_roles_audit_share_and_each_persons_figures(value_app, tmp_path):
    ann, bob, boss = (Client(value_app, auth=who, verbose=False) for who in (ANN, BOB, BOSS))
    with pytest.raises(Exception, match="Only admins"):
        ann.predict(0.5, api_name="/set_audit_share")
    with pytest.raises(Exception, match="0.5"):
        boss.predict(0.9, api_name="/set_audit_share")  # at most half the items go without a suggestion
    assert "50%" in boss.predict(0.5, api_name="/set_audit_share")
    handed = {"ann": label_some(ann, accept=True), "bob": label_some(bob, accept=False)}

    mine = ann.predict(api_name="/suggestion_audit")
    everyone = boss.predict(api_name="/suggestion_audit")
    assert mine["share"] == everyone["share"] == 0.5
    assert [p["user"] for p in mine["people"]] == ["ann"]
    assert {p["user"] for p in everyone["people"]} == {"ann", "bob"}
    for p in everyone["people"]:  # the stored conditions are the ones the items were handed out with
        hidden = sum(i["suggestion_hidden"] for i in handed[p["user"]])
        assert (p["hidden"], p["shown"]) == (hidden, PER_PERSON - hidden), p
    ann_row = next(p for p in everyone["people"] if p["user"] == "ann")
    assert ann_row["accepted"] == PER_PERSON - ann_row["hidden"]  # she accepted every suggestion she saw
    assert everyone["shown"]["labels"] + everyone["hidden"]["labels"] == 2 * PER_PERSON

    times_mine, times_all = ann.predict(api_name="/annotation_time"), boss.predict(api_name="/annotation_time")
    assert [p["user"] for p in times_mine["people"]] == ["ann"] and times_mine["people"][0]["labels"] == PER_PERSON
    assert {p["user"] for p in times_all["people"]} == {"ann", "bob"}
    assert all(p["median_s"] is not None and p["median_s"] >= 0 for p in times_all["people"])

    stop = bob.predict(api_name="/stopping_signals")  # the first start trained one version
    assert stop["stable_since"] is None and "few versions" in stop["message"].lower()
    curve = bob.predict(api_name="/learning_curve")
    assert curve["curves"][0]["params"] is None and "few versions" in curve["curves"][0]["message"].lower()

    whole = ann.predict(api_name="/labelling_value")
    assert set(whole) >= {"stopping", "learning_curve", "annotation_time", "suggestion_audit"}
    assert whole["admin"] is False and [p["user"] for p in whole["suggestion_audit"]["people"]] == ["ann"]

    csv = pd.read_csv(Path(ann.predict("csv", api_name="/export_labelling_value")))
    assert csv.columns[0] == "section" and {"annotation_time", "suggestion_audit"} <= set(csv["section"])
    assert "bob" not in set(csv.astype(str).stack())  # an annotator's export has her own rows only
    data = json.loads(Path(boss.predict("json", api_name="/export_labelling_value")).read_text())
    assert {p["user"] for p in data["annotation_time"]["people"]} == {"ann", "bob"}
    with pytest.raises(Exception, match="xlsx"):  # not one of the choices: refused before the handler
        boss.predict("xlsx", api_name="/export_labelling_value")
    wait_for(lambda: boss.predict(0.1, api_name="/set_audit_share"), what="the share set back")
