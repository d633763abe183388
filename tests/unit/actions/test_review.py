"""Adjudication, bulk labels with one undo, guidelines and comments, retrain every N labels: what
an admin and a team do, through the actions (no Gradio)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.auth import add_user
from bertdemo.config import Settings
from bertdemo.db import examples, runs
from bertdemo.errors import BadInput, Conflict, Forbidden, NotFound
from bertdemo.services import Services
from tests.unit.actions.test_annotate import seed


@pytest.fixture
def team(tmp_path) -> AnnotateAdapters:
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False, lease_minutes=5))
    add_user(services.engine, "boss", "password-boss", "admin")
    for name in ("ann", "bob", "cid"):
        add_user(services.engine, name, f"password-{name}", "annotator")
    seed(services, [(f"tweet number {i}", None) for i in range(6)])
    return AnnotateAdapters.create(services)


def label_all(team: AnnotateAdapters, votes: dict[str, str]) -> dict[int, dict[str, str]]:
    """Each person in `votes` labels every item they are handed with their label."""
    done: dict[int, dict[str, str]] = {}
    for _ in range(6):
        for name, lab in votes.items():
            item = team.labelling.next_item("unlabeled", "", [], name)
            if item is not None:
                team.labelling.save_label(item.id, lab, item.version, name)
                done.setdefault(item.id, {})[name] = lab
    return done


# ------------------------------------------------------------------------- adjudication
def test_disagreements_wait_for_an_admin_whose_label_is_final_and_trained_on(team):
    team.work.set_overlap(2, "boss")
    done = label_all(team, {"ann": "positive", "bob": "negative"})
    assert all(len(v) == 2 for v in done.values())
    adj = team.adjudication
    waiting = adj.waiting("boss")
    assert sorted(waiting) == sorted(done)  # ann and bob disagree on every item
    case = adj.next_case("boss")
    assert case.waiting == 6
    assert dict(zip(case.labels["annotator"], case.labels["label"])) == {"ann": "positive", "bob": "negative"}
    saved = adj.decide(case.item.id, "neutral", case.item.version, "boss")
    assert saved.source == "adjudication" and saved.label == "neutral"
    assert case.item.id not in adj.waiting("boss")
    assert team.labelling.item(case.item.id).label == "neutral"
    history = team.labelling.history(case.item.id)
    assert list(history["source"])[-1] == "adjudication"
    # training: the adjudicated item with its final label, the 5 contested ones left out
    inputs_ids = {row[0]: row[2] for row in _training_rows(team)}
    assert inputs_ids == {case.item.id: "neutral"}


def _training_rows(team):
    from bertdemo.db.decisions import awaiting_adjudication

    with Session(team.labelling.engine) as s:
        contested = set(awaiting_adjudication(s))
        return [r for r in examples.labeled_examples(s) if r[0] not in contested]


def test_agreeing_annotators_need_no_adjudication_and_undo_withdraws_a_label(team):
    team.work.set_overlap(2, "boss")
    label_all(team, {"ann": "positive", "bob": "positive"})
    adj = team.adjudication
    assert adj.waiting("boss") == [] and adj.next_case("boss") is None
    item = team.labelling.next_item("search", "tweet number 0", [], "cid")
    saved = team.labelling.save_label(item.id, "negative", item.version, "cid")  # a third person disagrees
    assert adj.waiting("boss") == [item.id]
    team.labelling.undo(item.id, "cid", saved.version)  # and thinks better of it
    assert adj.waiting("boss") == []


def test_adjudication_is_for_admins_and_refuses_stale_or_unannotated_items(team):
    team.work.set_overlap(2, "boss")
    label_all(team, {"ann": "positive", "bob": "negative"})
    adj = team.adjudication
    with pytest.raises(Forbidden):
        adj.waiting("ann")
    case = adj.next_case("boss")
    with pytest.raises(Forbidden):
        adj.decide(case.item.id, "neutral", case.item.version, "bob")
    with pytest.raises(BadInput, match="final label"):
        adj.decide(case.item.id, "meh", case.item.version, "boss")
    with pytest.raises(Conflict):
        adj.decide(case.item.id, "neutral", case.item.version - 1, "boss")
    with pytest.raises(NotFound):
        adj.decide(10_000, "neutral", None, "boss")
    with Session(team.labelling.engine) as s, s.begin():  # an item nobody labelled
        examples.import_examples(s, [examples.NewExample("a new tweet", "a new tweet")], "import", "boss",
                                 team.labels)
    fresh = team.labelling.queue_ids("search", "a new tweet")[0]
    with pytest.raises(BadInput, match="no annotators"):
        adj.decide(fresh, "neutral", None, "boss")


# ------------------------------------------------------------------------- bulk labels
def test_bulk_label_previews_applies_as_one_batch_and_undoes_in_one_step(team):
    ids = team.labelling.queue_ids("unlabeled")
    one = team.labelling.next_item("unlabeled", "", [], "ann")
    team.labelling.save_label(one.id, "positive", one.version, "ann")
    preview = team.bulk.preview(ids, "positive")
    assert preview.unchanged == 1 and preview.changes == {"none → positive": 5}
    assert "5 of 6" in preview.summary() and len(preview.sample) == 6
    with Session(team.labelling.engine) as s:
        before = {i: examples.get(s, i).label for i in ids}
    # someone changes a row between the preview and the apply: it is left as they made it
    other = team.labelling.item(ids[-1])
    team.labelling.save_label(other.id, "negative", other.version, "boss")
    with pytest.raises(Forbidden):
        team.bulk.apply(preview, "ann")
    result = team.bulk.apply(preview, "boss")
    assert (result.changed, result.unchanged, result.conflicts) == (4, 1, 1)
    assert team.labelling.item(ids[-1]).label == "negative"
    assert all(team.labelling.history(i)["source"].iloc[-1] == "bulk" for i in ids[1:-1] if i != one.id)
    undone = team.bulk.undo(result.batch, "boss")
    assert undone.changed == 4
    with Session(team.labelling.engine) as s:
        after = {i: examples.get(s, i).label for i in ids}
    assert after == before | {ids[-1]: "negative"}


def test_bulk_label_refuses_bad_selections_and_changes_nothing(team):
    with Session(team.labelling.engine) as s:
        newest = examples.newest_event_id(s)
    with pytest.raises(BadInput, match="empty"):
        team.bulk.preview([], "positive")
    with pytest.raises(BadInput, match="at most 100,000"):
        team.bulk.preview(list(range(1, 100_002)), "positive")
    with pytest.raises(NotFound, match="No example with id 999"):
        team.bulk.preview([1, 999], "positive")
    with pytest.raises(BadInput, match="label"):
        team.bulk.preview([1], "great")
    with pytest.raises(NotFound):
        team.bulk.undo("no-such-batch", "boss")
    with Session(team.labelling.engine) as s:
        assert examples.newest_event_id(s) == newest


# ------------------------------------------------------------------------- guidelines & comments
def test_guidelines_are_written_by_admins_and_comments_show_in_history_and_export(team):
    assert "negative" in team.notes.guidelines()  # a default to start from
    with pytest.raises(Forbidden):
        team.notes.set_guidelines("# mine", "ann")
    team.notes.set_guidelines("# Rules\n\nSarcasm is **negative**.", "boss")
    assert team.notes.guidelines().startswith("# Rules")
    with pytest.raises(BadInput, match="limit"):
        team.notes.set_guidelines("x" * 20_001, "boss")
    ex = team.labelling.queue_ids("unlabeled")[0]
    team.notes.comment(ex, "is @united sarcastic here? see https://example.com", "ann")
    with pytest.raises(BadInput, match="empty"):
        team.notes.comment(ex, "   ", "bob")
    with pytest.raises(NotFound):
        team.notes.comment(10_000, "hello", "bob")
    history = team.labelling.history(ex)
    assert list(history["source"]) == ["comment"]
    assert history["comment"].iloc[0] == "is @united sarcastic here? see https://example.com"
    export = team.transfer.export_frame().set_index("id")
    assert export.loc[ex, "comments"] == "ann: is @united sarcastic here? see https://example.com"


# ------------------------------------------------------------------------- retrain every N
class FakeJobs:
    def __init__(self):
        self.started: list[tuple] = []

    def status(self):
        from bertdemo.training.records import JobStatus

        return JobStatus(state="running" if self.started else "idle")

    def start(self, config, user, activate=True, reason=""):
        self.started.append((config, user, reason))
        return len(self.started)


def test_retrain_every_n_labels_starts_one_run_that_says_why(team):
    assert team.autotrain.every() == 0
    with pytest.raises(Forbidden):
        team.autotrain.set_every(10, "ann")
    with pytest.raises(BadInput, match="0 \\(off\\) or from 10"):
        team.autotrain.set_every(3, "boss")
    with pytest.raises(BadInput):
        team.autotrain.set_every(1e9, "boss")
    jobs = FakeJobs()
    team.autotrain.services = type("S", (), {"jobs": jobs, "registry": team.labelling.services.registry,
                                             "settings": team.labelling.services.settings})()
    seed(team.labelling.services, [(f"another tweet {i}", None) for i in range(6)])  # 12 in all
    team.autotrain.set_every(10, "boss")
    ids = team.labelling.queue_ids("unlabeled")
    for n in range(12):  # one example flipped back and forth counts once: 6 examples so far
        item = team.labelling.item(ids[n % 6])
        team.labelling.save_label(item.id, ["negative", "positive"][n % 2], item.version, "boss")
    assert jobs.started == [] and team.autotrain.pending() == (6, 10)
    for n in range(6, 9):
        item = team.labelling.item(ids[n])
        team.labelling.save_label(item.id, "positive", item.version, "boss")
    assert jobs.started == [] and team.autotrain.pending() == (9, 10)
    item = team.labelling.item(ids[9])
    team.labelling.save_label(item.id, "neutral", item.version, "boss")
    assert len(jobs.started) == 1
    config, user, reason = jobs.started[0]
    assert user == "auto-retrain" and config.init_from == "base"
    assert reason == "started automatically after 10 examples were relabelled (the admin setting: retrain every 10 labels)"
    assert team.autotrain.pending() == (0, 10)


def test_the_train_tab_shows_why_a_run_started(team):
    from bertdemo.actions.train import TrainingActions

    with Session(team.labelling.engine) as s, s.begin():
        run = runs.create_run(s, "auto-retrain", {"epochs": 1, "reason": "started automatically after 50 new labels"})
        run.status = "succeeded"
    view = TrainingActions(team.labelling.services).status()
    assert view.reason == "started automatically after 50 new labels" and view.as_api()["reason"] == view.reason


def test_an_automatic_run_records_its_reason_even_when_it_fails(team):
    from bertdemo.actions.train import TrainingActions

    seed(team.labelling.services, [(f"another tweet {i}", None) for i in range(6)])  # 12 in all
    team.autotrain.set_every(10, "boss")
    ids = team.labelling.queue_ids("unlabeled")
    for n in range(10):
        item = team.labelling.item(ids[n])
        team.labelling.save_label(item.id, ["negative", "positive"][n % 2], item.version, "boss")
    status = team.labelling.services.jobs.wait(60)
    assert status.state == "failed" and "at least 20 labelled examples" in status.message  # 10 examples
    assert status.reason.startswith("started automatically after 10 examples were relabelled")
    assert TrainingActions(team.labelling.services).status().reason == status.reason
