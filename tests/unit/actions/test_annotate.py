"""The Annotate tab's adapters (Labelling, ImportExport, TeamProgress) without Gradio or a model: a temporary SQLite store with a fake active
version whose stored scores we choose, so every queue's order is known."""

from __future__ import annotations

import csv
import re
import threading

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.labelling import Labelling
from bertdemo.config import Settings
from bertdemo.datasets import CSVError
from bertdemo.db import examples, versions
from bertdemo.db.examples import NewExample
from bertdemo.db.models import Example, LabelEvent
from bertdemo.errors import BadInput, Conflict, Forbidden, NotFound, NotReady, UserError
from bertdemo.services import Services

LABELS = ("negative", "neutral", "positive")


@pytest.fixture
def services(tmp_path) -> Services:
    return Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False, max_upload_mb=1,
                                    max_import_mb=1))


def seed(services, rows, probs=None):
    """Import rows (text, label|None); store `probs` as the active version's scores."""
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, [NewExample(t, t, lab) for t, lab in rows], "dataset", "dataset", LABELS)
        ids = list(s.scalars(select(Example.id).order_by(Example.id)))
        if probs is not None:
            v = versions.add_version(s, name="v1", path="/nowhere", base_model="x", is_active=True)
            versions.save_scores(s, v.id, ids, np.asarray(probs), LABELS)
    return ids


@pytest.fixture
def adapters(services) -> AnnotateAdapters:
    return AnnotateAdapters.create(services)


@pytest.fixture
def acts(adapters) -> Labelling:
    return adapters.labelling


def test_queues_use_stored_scores_in_the_documented_order(services, acts):
    ids = seed(services, [("a", "negative"), ("b", "positive"), ("c", None), ("d", "neutral")],
               [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33], [0.1, 0.1, 0.8]])
    assert acts.queue_ids("unlabeled") == [ids[2]]
    # disagreements, most confident model first: d (0.8 positive vs neutral), b (0.6 negative vs positive)
    assert acts.queue_ids("disagree") == [ids[3], ids[1]]
    assert acts.queue_ids("uncertain")[0] == ids[2]  # near-uniform probabilities: highest entropy
    assert acts.queue_ids("search", "B") == [ids[1]]
    assert acts.queue_ids("search", "%") == []  # LIKE wildcards are matched literally
    assert acts.queue_ids("recent") == []  # dataset labels are not "changes"
    item = acts.next_item("disagree")
    assert (item.id, item.label, item.predicted, item.remaining) == (ids[3], "neutral", "positive", 2)
    assert item.confidence == pytest.approx(0.8)
    assert acts.next_item("disagree", seen=[ids[3]]).id == ids[1]
    assert acts.next_item("disagree", seen=[ids[3], ids[1]]) is None
    with pytest.raises(BadInput, match="The queue must be one of"):
        acts.queue_ids("bogus")


def test_score_queues_explain_when_no_model_is_active(services, acts):
    seed(services, [("a", None)])
    with pytest.raises(NotReady, match="No model version is active"):
        acts.next_item("uncertain")
    assert acts.next_item("unlabeled").predicted is None


def test_save_undo_history_and_conflict(services, acts):
    ids = seed(services, [("a", "negative"), ("b", None)])
    item = acts.item(ids[0])
    saved = acts.save_label(item.id, "positive", item.version, "local")
    assert (saved.previous, saved.label, saved.version, saved.source) == ("negative", "positive", 2, "annotator")
    # a second person who loaded version 1 is refused and told who changed it
    with pytest.raises(Conflict, match="changed by local"):
        acts.save_label(item.id, "neutral", item.version, "local")
    assert acts.queue_ids("recent") == [ids[0]]
    undone = acts.undo(item.id, "local", saved.version)
    assert (undone.previous, undone.label, undone.source, undone.version) == ("positive", "negative", "undo", 3)
    h = acts.history(item.id)
    assert list(zip(h["from"], h["to"], h["source"])) == [("", "negative", "dataset"),
                                                          ("negative", "positive", "annotator"),
                                                          ("positive", "negative", "undo")]
    # undoing an unlabeled row's first label makes it unlabeled again (still a new row)
    s2 = acts.save_label(ids[1], "neutral", 0, "local")
    acts.undo(ids[1], "local", s2.version)
    assert acts.item(ids[1]).label is None and len(acts.history(ids[1])) == 2
    with pytest.raises(BadInput, match="Nothing to undo"):
        acts.undo(seed(services, [("c", "neutral")])[-1], "local")
    with pytest.raises(BadInput, match="The label must be one of"):
        acts.save_label(ids[0], "great", None, "local")


def test_concurrent_saves_of_one_row_never_overwrite_silently(services, acts):
    ids = seed(services, [("a", "negative")])
    results: list[str] = []

    def save(lab):
        try:
            acts.save_label(ids[0], lab, 1, "local")
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=save, args=(lab,)) for lab in ("neutral", "positive", "neutral", "positive")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 3 + ["ok"]
    assert len(acts.history(ids[0])) == 2


def test_accounts_record_the_signed_in_user_and_agreement_is_for_admins(services, acts, adapters):
    ids = seed(services, [(f"t{i}", None) for i in range(6)])
    auth.add_user(services.engine, "ann", "password1", "annotator")
    auth.add_user(services.engine, "boss", "password2", "admin")
    with pytest.raises(Forbidden, match="Sign in"):
        acts.save_label(ids[0], "neutral", 0, None)
    a_labels = ["negative", "neutral", "positive", "negative", "neutral"]
    b_labels = ["negative", "neutral", "positive", "neutral", "neutral"]
    for i, (la, lb) in enumerate(zip(a_labels, b_labels)):
        acts.save_label(ids[i], la, None, "ann")
        acts.save_label(ids[i], lb, None, "boss")
    assert acts.item(ids[0]).updated_by == "boss"
    with pytest.raises(Forbidden, match="Only admins"):
        adapters.progress.agreement("ann")
    a = adapters.progress.agreement("boss")
    from sklearn.metrics import cohen_kappa_score
    assert a.shared_items == 5
    assert a.kappa == pytest.approx(cohen_kappa_score(a_labels, b_labels), abs=1e-4)
    assert dict(zip(a.counts["annotator"], a.counts["changes"])) == {"ann": 5, "boss": 5}
    assert list(a.pairs.iloc[0][["annotator_a", "annotator_b", "items"]]) == ["ann", "boss", 5]


def test_table_filters_and_shows_prediction(services, acts):
    ids = seed(services, [("hello <script>alert(1)</script>", "negative"), ("b", "positive")],
               [[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    acts.save_label(ids[1], "neutral", 1, "local")
    t = acts.table()
    assert list(t["id"]) == [ids[1], ids[0]]  # newest change first
    assert list(t.iloc[0][["label", "annotator", "model"]]) == ["neutral", "local", "positive"]
    assert list(acts.table("negative")["id"]) == [ids[0]]
    assert list(acts.table(annotator="local")["id"]) == [ids[1]]
    assert t.iloc[1]["text"] == "hello <script>alert(1)</script>"  # kept verbatim, shown as text


def write(tmp_path, name, rows, header=("text", "label")):
    p = tmp_path / name
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(p)


def test_import_preview_then_import_and_bad_files_change_nothing(services, acts, adapters, tmp_path):
    seed(services, [("already here", "neutral")])
    path = write(tmp_path, "in.csv", [("new one", "Positive"), ("Already HERE", ""), ("bad label", "great"),
                                      ("new one", "negative"), ("   ", ""), ("<b>bold</b> =1+2", "")])
    p = adapters.transfer.preview_import(path)
    assert list(p.add["text"]) == ["new one", "<b>bold</b> =1+2"]
    reasons = dict(zip(p.skipped["row"], p.skipped["reason"]))
    assert reasons[2].startswith("duplicate: already") and reasons[4].startswith("duplicate: repeated")
    assert reasons[3].startswith("unknown label: 'great'") and reasons[5].startswith("bad text")
    assert "2 rows to add, 4 to skip" in p.summary()
    with Session(services.engine) as s:
        assert examples.count_examples(s) == 1  # preview writes nothing
    auth.add_user(services.engine, "ann", "password1", "annotator")
    with pytest.raises(Forbidden):
        adapters.transfer.import_csv(path, "ann")
    auth.add_user(services.engine, "boss", "password2", "admin")
    done = adapters.transfer.import_csv(path, "boss")
    assert (done.added, done.skipped) == (2, 4)
    with Session(services.engine) as s:
        assert examples.label_counts(s) == {"neutral": 1, "positive": 1, None: 1}
    with pytest.raises(CSVError, match="Nothing to import"):
        adapters.transfer.import_csv(path, "boss")  # now all duplicates

    def unchanged():
        with Session(services.engine) as s:
            return (examples.count_examples(s), s.scalar(select(func.count()).select_from(LabelEvent)))

    before = unchanged()
    bad = tmp_path / "bad.csv"
    bad.write_text('text,label\n"unterminated,positive\nx,y,z,w\n')
    with pytest.raises(CSVError, match="not valid CSV"):
        adapters.transfer.import_csv(str(bad), "boss")
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.write(b"text\n")
        f.truncate(50 * 2**20)
    with pytest.raises(CSVError, match="50.0 MB; the limit is 1 MB"):
        adapters.transfer.preview_import(str(big))
    with pytest.raises(CSVError, match="'text' column"):
        adapters.transfer.import_csv(write(tmp_path, "nocol.csv", [("a", "b")], header=("body", "label")), "boss")
    assert unchanged() == before


def test_export_is_formula_safe_and_counts_changes(services, acts, adapters, tmp_path):
    ids = seed(services, [("=HYPERLINK(\"http://x\")", "negative"), ("plain", None)])
    acts.save_label(ids[0], "neutral", 1, "local")
    path = adapters.transfer.export_csv(None)
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(df["text"]) == ["'=HYPERLINK(\"http://x\")", "plain"]
    assert list(df["label"]) == ["neutral", ""] and list(df["annotator"]) == ["local", ""]
    assert list(df["changes"]) == ["2", "0"]


def test_suspicious_queue_finds_flipped_labels_out_of_sample(services, acts):
    rng = np.random.default_rng(0)
    words = {"negative": ["awful", "delayed", "lost", "rude"], "neutral": ["when", "gate", "flight", "time"],
             "positive": ["great", "thanks", "love", "awesome"]}
    rows, probs, flipped = [], [], []
    for i in range(150):
        true = LABELS[i % 3]
        text = " ".join(rng.choice(words[true], 3)) + f" n{i}"
        given = true
        if i % 25 == 0:  # 6 flipped labels
            given = LABELS[(i + 1) % 3]
            flipped.append(text)
        p = np.full(3, 0.1)
        p[LABELS.index(true)] = 0.8
        rows.append((text, given))
        probs.append(p)
    ids = seed(services, rows, probs)
    acts.suspicious.warm(services.registry.active_version())  # what VersionWatch does when a version serves
    acts.suspicious.wait(60)
    found = acts.queue_ids("suspicious")
    by_text = dict(zip(ids, [r[0] for r in rows]))
    hits = {by_text[i] for i in found} & set(flipped)
    assert len(hits) >= 5 and len(found) <= 12
    assert acts.queue_ids("suspicious") == found  # cached
    acts.save_label(found[0], "neutral", None, "local")
    assert acts.queue_ids("suspicious") == found[1:]  # a fixed row leaves the queue, no recomputation


def test_default_queue_is_unlabeled_until_everything_is_labelled(services, acts):
    ids = seed(services, [("a", "negative"), ("b", None)], [[0.9, 0.05, 0.05], [0.2, 0.2, 0.6]])
    # a model serves: the unlabelled ones, breaking ties first (bench/al_sim.py's winner)
    assert acts.default_queue() == "informative"
    assert acts.queue_ids("informative") == [ids[1]]
    acts.save_label(ids[1], "neutral", 0, None)
    assert acts.default_queue() == "disagree"


def test_default_queue_is_unlabeled_before_any_model(services, acts):
    seed(services, [("a", "negative"), ("b", None)])
    assert acts.default_queue() == "unlabeled"


@pytest.mark.parametrize("bad_id, message", [
    (-1, "No example with id -1"), (0, "No example with id 0"), (10**30, "No example with id 1000000000000"),
    (2**63, "No example with id"), (None, "example id must be a whole number, got None"),
    ("abc", "must be a whole number, got 'abc'"), (1.5, "whole number, got 1.5"), (True, "whole number"),
    ([1], r"whole number, got \[1\]"), (float("nan"), "whole number"), (float("inf"), "whole number"),
])
def test_bad_example_ids_are_refused_with_a_message_and_write_nothing(services, acts, bad_id, message):
    seed(services, [("a", "negative")])
    with Session(services.engine) as s:
        before = s.scalar(select(func.count()).select_from(LabelEvent))
    for call in (lambda: acts.save_label(bad_id, "positive", 1, None), lambda: acts.undo(bad_id, None),
                 lambda: acts.item(bad_id), lambda: acts.history(bad_id)):
        with pytest.raises(UserError, match=message):  # NotFound or BadInput
            call()
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(LabelEvent)) == before


def test_undo_on_a_missing_example_says_so(services, acts):
    seed(services, [("a", "negative")])
    with pytest.raises(NotFound, match="No example with id 99"):
        acts.undo(99, None)


def test_ids_may_come_as_whole_floats_or_digit_strings(services, acts):
    ids = seed(services, [("a", "negative")])
    assert acts.save_label(float(ids[0]), "neutral", "1", None).version == 2
    with pytest.raises(BadInput, match="version must be the 'version' that next_item returned"):
        acts.save_label(ids[0], "neutral", -5, None)
    with pytest.raises(BadInput, match="The label must be one of .*, got None"):
        acts.save_label(ids[0], None, 2, None)


@pytest.mark.parametrize("queue, search, exclude, message", [
    (5, "", [], "The queue must be one of ['unlabeled', "), (None, "", [], ", got None"),
    ("unlabeled", "", 5, "exclude must be a list of example ids, got 5"),
    ("unlabeled", "", "1,2", "exclude must be a list"), ("unlabeled", "", ["x"], "Every id in exclude"),
    ("search", ["x"], [], "The search must be text"), ("search", "x" * 501, [], "the limit is 500"),
    ("search", "a\ud800b", [], "not text (lone UTF-16 surrogates)"),
])
def test_next_item_refuses_bad_arguments(services, acts, queue, search, exclude, message):
    seed(services, [("a", None)])
    with pytest.raises(ValueError, match=re.escape(message)):
        acts.next_item(queue, search, exclude)


def test_import_of_rows_with_missing_fields(services, acts, adapters, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("text,label\nno label field here\n,positive\n")
    done = adapters.transfer.import_csv(str(path), None)
    assert (done.added, done.skipped) == (1, 1)
    assert acts.next_item("search", "no label field").label is None  # not an unknown label 'nan'


def test_accepting_the_models_suggestion_is_recorded_as_such(services, acts, adapters):
    """The `a` key / accepted_suggestion: the label must be the active version's prediction; the
    history row's source is 'suggestion', and the agreement view counts them per person."""
    ids = seed(services, [("a", None), ("b", None)], [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8]])
    item = acts.next_item("unlabeled", "", [], None)
    assert item.predicted == "negative"
    with pytest.raises(BadInput, match="The model suggests 'negative' for example .*, not 'positive'"):
        acts.save_label(item.id, "positive", item.version, None, accepted_suggestion=True)
    with pytest.raises(BadInput, match="accepted_suggestion must be true or false, got 'yes'"):
        acts.save_label(item.id, "negative", item.version, None, accepted_suggestion="yes")
    saved = acts.save_label(item.id, "negative", item.version, None, accepted_suggestion=True)
    assert (saved.source, saved.label) == ("suggestion", "negative")
    other = acts.save_label(ids[1], "neutral", 0, None)  # a person's own label, against the model
    assert other.source == "annotator"
    counts = adapters.progress.agreement(None).counts
    row = counts.to_dict("records")[0]
    assert len(counts) == 1 and {k: row[k] for k in ("annotator", "changes", "items", "accepted suggestions",
                                                     "last hour")} == {"annotator": "local", "changes": 2, "items": 2,
                                                                       "accepted suggestions": 1, "last hour": 2}
    assert adapters.progress.agreement(None).items_left == 0  # both items are labelled
    assert acts.undo(item.id, None).label is None  # an accepted suggestion is undone like any label


def test_a_suggestion_needs_a_stored_score(services, acts):
    [ex] = seed(services, [("no score yet", None)])
    with pytest.raises(BadInput, match="has no suggestion for example .* yet"):
        acts.save_label(ex, "neutral", 0, None, accepted_suggestion=True)
