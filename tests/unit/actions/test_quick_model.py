"""The quick model (training/quick.py, actions/quick_model.py) and the breaking-ties queue on a fake
active version whose stored scores and sentence embeddings we choose (no network, no fine-tune):
after N labels the refit re-ranks the queues and the suggestion, the queue says which model ranked
it, and once another version serves neither its fit nor its warm rankings are used again."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.warm import Warmed
from bertdemo.config import Settings
from bertdemo.db import examples, versions
from bertdemo.db.examples import NewExample
from bertdemo.errors import NotReady
from bertdemo.model import strategies, vectors
from bertdemo.services import Services
from bertdemo.training.quick import fit_quick

LABELS = ("negative", "neutral", "positive")
XS = np.round(np.linspace(-1.0, 1.0, 41), 2)  # one example per position on a line; 0 is the old boundary


def sigmoid_probs(xs: np.ndarray, at: float = 0.0) -> np.ndarray:
    """(N, 3) probabilities of a model whose negative/positive boundary is at `at` (neutral ~0)."""
    pos = 1 / (1 + np.exp(-8 * (xs - at)))
    return np.stack([(1 - pos) * 0.98, np.full_like(xs, 0.02), pos * 0.98], axis=1)


def add_version(s: Session, tmp_path, name: str, ids: list[int], probs: np.ndarray, vecs: np.ndarray) -> int:
    folder = tmp_path / name
    vectors.save(folder / vectors.VECTORS_FILE, ids, vecs)
    v = versions.add_version(s, name=name, path=str(folder), base_model="x", is_active=False)
    versions.save_scores(s, v.id, ids, probs, LABELS)
    return v.id


@pytest.fixture
def line(tmp_path):
    """41 examples on a line, labelled by the side of 0 they are on; v1 active, scored and embedded
    (2-d embeddings: the position, and a constant)."""
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False, quick_refit_every=5))
    rows = [NewExample(f"tweet at {x:+.2f}", f"tweet at {x:+.2f}", "negative" if x < 0 else "positive") for x in XS]
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, rows, "dataset", "dataset", LABELS)
        ids = sorted(examples.current_labels(s))
        vid = add_version(s, tmp_path, "v1", ids, sigmoid_probs(XS), np.stack([XS * 3, np.ones_like(XS)], axis=1))
        versions.activate_version(s, vid)
    adapters = AnnotateAdapters.create(services)
    return services, adapters, dict(zip(XS.tolist(), ids))


def test_a_refit_after_n_labels_re_ranks_the_queue_and_says_so(line):
    services, adapters, id_at = line
    acts = adapters.labelling
    before = acts.queue_ids("uncertain")
    assert before[0] == id_at[0.0]  # v1's boundary
    first = acts.next_item("uncertain", "", [], "ann")
    assert first.ranked_by == "ranked by v1's stored scores · the quick model re-ranks after 5 more labels"
    assert first.suggested_by == "stored score"
    # people move the boundary: the five positives just above 0 are negative after all
    moved = [id_at[x] for x in (0.05, 0.1, 0.15, 0.2, 0.25)]
    for n, i in enumerate(moved, start=1):
        acts.save_label(i, "negative", None, "ann")
        if n < 5:
            assert not adapters.quick.refitting() and adapters.quick.current(1) is None
    adapters.quick.wait(60)
    fit = adapters.quick.current(1)
    assert fit is not None and fit.labels_used == 41
    after = acts.queue_ids("uncertain")
    assert after != before
    # the newest relabelled example sits at the new boundary: it moved up, the old boundary moved down
    assert after.index(id_at[0.25]) < before.index(id_at[0.25]) and after.index(id_at[0.25]) <= 1
    assert after.index(id_at[0.0]) > before.index(id_at[0.0])
    item = acts.next_item("uncertain", "", [], "bob")
    assert item.ranked_by.startswith(f"ranked by the quick model refit at {fit.fitted_at:%H:%M} UTC on 41 labels")
    assert item.suggested_by == "quick model"
    # the suggestion shown is the quick model's: it says negative where v1's stored score says positive
    shown = acts.item(id_at[0.15])
    assert (shown.predicted, examples_score(services, id_at[0.15])) == ("negative", "positive")
    acts.save_label(id_at[0.15], "negative", None, "ann", accepted_suggestion=True)  # accepted as shown


def examples_score(services, example_id: int) -> str:
    with Session(services.engine) as s:
        return examples.score_of(s, example_id, 1).predicted


def test_disagreements_follow_the_quick_model_between_versions(line):
    _services, adapters, id_at = line
    acts = adapters.labelling
    assert acts.queue_ids("disagree") == [id_at[0.0]]  # v1 agrees with every label but its tie at 0
    for x in (0.05, 0.1, 0.15, 0.2, 0.25):
        acts.save_label(id_at[x], "negative", None, "ann")
    # v1's stored scores disagree with all five new labels, most confident first
    stored = acts.queue_ids("disagree")
    assert stored[0] == id_at[0.25]
    adapters.quick.wait(60)
    # the quick model learnt them: fewer disagreements, and its own order
    assert len(acts.queue_ids("disagree")) < len(stored)


def test_a_new_version_serves_its_own_scores_not_the_old_quick_fit(line, tmp_path):
    services, adapters, id_at = line
    acts = adapters.labelling
    fit = adapters.quick.refit()
    assert adapters.quick.current(1) is fit
    with Session(services.engine) as s, s.begin():
        ids = [id_at[x] for x in XS.tolist()]
        v2 = add_version(s, tmp_path, "v2", ids, sigmoid_probs(XS, at=-0.5), np.stack([XS, XS], axis=1))
        versions.activate_version(s, v2)
    assert adapters.quick.current(v2) is None
    assert acts.queue_ids("uncertain")[0] == id_at[-0.5]  # v2's boundary, from its stored scores
    assert acts.next_item("uncertain", "", [], "ann").ranked_by.startswith("ranked by v2's stored scores")


def test_a_version_still_re_scoring_is_not_a_done_queue(line, tmp_path):
    """Between an activation and its first stored score the model queues say so, not "done"."""
    services, adapters, id_at = line
    with Session(services.engine) as s, s.begin():
        v2 = versions.add_version(s, name="v2", path=str(tmp_path / "v2"), base_model="x", is_active=False).id
        versions.activate_version(s, v2)
    for queue in ("uncertain", "margin", "diverse", "disagree"):
        with pytest.raises(NotReady, match="v2 serves, but its scores are still being written"):
            adapters.labelling.next_item(queue, "", [], "ann")
    assert adapters.labelling.next_item("unlabeled", "", [], "ann") is None  # every example is labelled here
    assert adapters.labelling.default_queue() == "unlabeled"  # the tab does not open on an error
    with Session(services.engine) as s, s.begin():  # its first chunk of scores: the queue ranks what is there
        versions.save_scores(s, v2, [id_at[0.5]], sigmoid_probs(np.array([0.5])), LABELS)
    assert adapters.labelling.next_item("uncertain", "", [], "ann").id == id_at[0.5]
    assert adapters.labelling.default_queue() == "disagree"  # all labelled, and a model ranks


def test_the_first_starts_quick_version_says_the_fine_tunes_scores_come_later(line, tmp_path):
    """A quick first version is never re-scored: its queues say what they wait for."""
    services, adapters, _id_at = line
    with Session(services.engine) as s, s.begin():
        v = versions.add_version(s, name="v2", path=str(tmp_path / "v2"), base_model="x", is_active=False,
                                 train_config={"kind": "quick"}).id
        versions.activate_version(s, v)
    with pytest.raises(NotReady, match="v2 is the quick first version: the model queues rank by the fine-tuned"):
        adapters.labelling.next_item("margin", "", [], "ann")
    assert adapters.labelling.default_queue() == "unlabeled"


def test_the_suspicious_ranking_is_never_served_for_another_version(line, tmp_path, monkeypatch):
    services, adapters, id_at = line
    acts = adapters.labelling
    ranked_from: list[int] = []

    def by_neutral(rows, labels):  # stands in for confident learning: the most neutral stored scores first
        ranked_from.append(len(rows))
        return [r[0] for r in sorted(rows, key=lambda r: (-r[3][1], r[0]))][:3]

    monkeypatch.setattr("bertdemo.training.label_issues.find_suspicious", by_neutral)
    assert adapters.watch.check().name == "v1"  # v1 serves with its scores: its ranking starts in the background
    assert adapters.watch.check() is None  # once per version
    acts.suspicious.wait(30)
    assert acts.queue_ids("suspicious") == [id_at[-1.0], id_at[-0.95], id_at[-0.9]]  # all tie at 0.02: by id
    assert acts.next_item("suspicious", "", [], "ann").ranked_by.startswith(
        "ranked by confident learning over v1's stored scores, ranked at")
    with Session(services.engine) as s, s.begin():  # v2 serves: it finds the far right neutral
        probs = sigmoid_probs(XS)
        probs[:, 1] = np.clip(XS, 0, 1)
        v2 = add_version(s, tmp_path, "v2", [id_at[x] for x in XS.tolist()], probs, np.stack([XS, XS], axis=1))
        versions.activate_version(s, v2)
    assert acts.suspicious.warmed.latest().key[0] != v2  # v1's ranking is in memory, under v1's key only
    assert adapters.watch.check().name == "v2"
    acts.suspicious.wait(30)
    assert acts.queue_ids("suspicious") == [id_at[1.0], id_at[0.95], id_at[0.9]]
    assert ranked_from == [41, 41]  # once per version, in the background; the requests only read
    # stored beside the version: another process (here a fresh SuspiciousLabels) serves it without ranking
    from bertdemo.actions.suspicious import SUSPICIOUS_FILE, SuspiciousLabels

    assert (services.registry.folder(services.registry.get(v2)) / SUSPICIOUS_FILE).is_file()
    other = SuspiciousLabels(services)
    other.warm(services.registry.get(v2))
    assert other.ids(v2) == [id_at[1.0], id_at[0.95], id_at[0.9]] and ranked_from == [41, 41]


def test_a_version_scored_again_is_ranked_again_and_its_old_ranking_never_served(line, monkeypatch):
    """The serving version activated again is re-scored (new examples get scores; here its scores
    move): its ranking made from the old scores, in memory or in the file, is not served again."""
    services, adapters, id_at = line
    acts = adapters.labelling
    ranked_from: list[int] = []

    def by_neutral(rows, labels):
        ranked_from.append(len(rows))
        return [r[0] for r in sorted(rows, key=lambda r: (-r[3][1], r[0]))][:3]

    monkeypatch.setattr("bertdemo.training.label_issues.find_suspicious", by_neutral)
    assert adapters.watch.check().name == "v1"
    acts.suspicious.wait(30)
    assert acts.queue_ids("suspicious") == [id_at[-1.0], id_at[-0.95], id_at[-0.9]]
    info = services.registry.active_version()
    ids = [id_at[x] for x in XS.tolist()]
    probs = sigmoid_probs(XS)
    probs[:, 1] = np.clip(XS, 0, 1)  # v1 scored again: now the far right is the most neutral
    with Session(services.engine) as s, s.begin():
        versions.save_scores(s, info.id, ids, probs, LABELS)
    path = services.registry.folder(info) / vectors.VECTORS_FILE
    vectors.save(path, ids, np.stack([XS * 3, np.ones_like(XS)], axis=1))
    st = path.stat()  # the pass's end, a second later than the first (coarse file-system clocks)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    from bertdemo.actions.suspicious import SuspiciousLabels

    other = SuspiciousLabels(services)  # another process: the stored file is from v1's old scores
    assert other.ranked_by(info) == "ranked by confident learning over v1's stored scores"  # no time: none served
    assert adapters.watch.check().name == "v1"  # the same version, its scores anew: warmed again
    assert adapters.watch.check() is None
    acts.suspicious.wait(30)
    assert acts.queue_ids("suspicious") == [id_at[1.0], id_at[0.95], id_at[0.9]]
    assert other.ids(info.id) == [id_at[1.0], id_at[0.95], id_at[0.9]]  # the new file, not ranked again
    assert ranked_from == [41, 41]


def test_breaking_ties_asks_about_the_smallest_margin_first(tmp_path):
    probs = np.array([[0.5, 0.4, 0.1],     # margin 0.10
                      [0.34, 0.33, 0.33],  # 0.01, the highest entropy
                      [0.9, 0.05, 0.05],   # 0.85
                      [0.45, 0.1, 0.45]])  # 0.00: a tie
    assert strategies.rank([10, 11, 12, 13], probs, "margin") == [13, 11, 10, 12]
    assert strategies.rank([10, 11, 12, 13], probs, "entropy") == [11, 13, 10, 12]
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False))
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, [NewExample(t, t, None) for t in "abcd"], "dataset", "dataset", LABELS)
        ids = sorted(i for i, _t in examples.all_texts(s))
        versions.activate_version(s, add_version(s, tmp_path, "v1", ids, probs, np.eye(4)))
    acts = AnnotateAdapters.create(services).labelling
    assert acts.queue_ids("margin") == [ids[3], ids[1], ids[0], ids[2]]
    assert acts.queue_ids("uncertain") == [ids[1], ids[3], ids[0], ids[2]]
    item = acts.next_item("margin", "", [], "ann")
    assert item.id == ids[3] and item.ranked_by.startswith("ranked by v1's stored scores")


def test_the_quick_fit_gives_every_class_a_column_and_needs_the_embeddings(line, tmp_path):
    services, _adapters, id_at = line
    info = services.registry.active_version()
    fit = fit_quick(services.engine, tmp_path / "v1" / vectors.VECTORS_FILE, (info.id, info.name), LABELS)
    assert fit.probs.shape == (41, 3) and np.allclose(fit.probs.sum(axis=1), 1, atol=1e-5)
    assert (fit.probs[:, 1] == 0).all()  # nobody labelled neutral: the class gets no probability
    assert fit.probs_of(id_at[1.0])[2] > 0.9 and fit.probs_of(id_at[-1.0])[0] > 0.9
    with pytest.raises(Exception, match="not stored yet"):
        fit_quick(services.engine, tmp_path / "nowhere.npz", (info.id, info.name), LABELS)


def test_a_request_before_the_warm_up_ends_is_told_since_when_and_gets_no_other_key():
    gate = threading.Event()
    warmed = Warmed("ranking the things", lambda key: (gate.wait(30), key)[1])
    assert warmed.start((1, 41)) and not warmed.start((1, 41))  # one computation per key at a time
    with pytest.raises(NotReady, match=r"^Ranking the things\.\.\. \(started 0 s ago\)\. Try again"):
        warmed.get((1, 41), wait_s=0.05)
    gate.set()
    warmed.wait_all(30)
    assert warmed.get((1, 41)).value == (1, 41)
    assert warmed.peek((2, 41)) is None  # another version's key: never the value of (1, 41)
    assert warmed.get((2, 41), wait_s=30).value == (2, 41)
    assert "the last one took 0 s" in warmed.waiting((3, 41))


def test_a_fit_reads_a_bounded_number_of_rows_keeping_every_persons_label(line, tmp_path, monkeypatch):
    """Past MAX_ROWS labelled examples a fit reads every label a person gave and a seeded sample of
    the imported ones (bounded memory at any corpus size), and still scores every example."""
    from bertdemo.training import quick

    services, adapters, id_at = line
    adapters.labelling.save_label(id_at[0.5], "negative", None, "ann")  # a person's label: always read
    monkeypatch.setattr(quick, "MAX_ROWS", 12)
    read = []
    real = quick._training_rows

    def spy(engine, index, labels):
        x, y, w, mark = real(engine, index, labels)
        read.append(len(y))
        return x, y, w, mark

    monkeypatch.setattr(quick, "_training_rows", spy)
    info = services.registry.active_version()
    fit = fit_quick(services.engine, tmp_path / "v1" / vectors.VECTORS_FILE, (info.id, info.name), LABELS)
    assert read == [12] and fit.labels_used == 12 and fit.probs.shape == (41, 3)
    assert quick._bounded(list(range(100)), {5, 99}) == quick._bounded(list(range(100)), {5, 99})  # seeded
    kept = quick._bounded(list(range(100)), {5, 99})
    assert len(kept) == 12 and {5, 99} <= set(kept) and kept == sorted(kept)


def test_a_fit_is_stale_once_a_re_scoring_writes_the_versions_embeddings_again(line, tmp_path):
    """Examples imported after a fit have no row in it: once the re-scoring writes the version's
    embeddings again, the fit stops ranking (the complete stored scores do, every example counted)
    and a refit on the new embeddings starts in the background."""
    services, adapters, id_at = line
    quick, acts = adapters.quick, adapters.labelling
    fit = quick.refit()
    assert quick.current(1) is fit and len(acts.queue_ids("uncertain")) == 41
    with Session(services.engine) as s, s.begin():  # an import, then its re-scoring
        examples.import_examples(s, [NewExample("a new tweet", "a new tweet")], "import", "ann", LABELS)
        ids = sorted(i for i, _t in examples.all_texts(s))
        versions.save_scores(s, 1, ids[-1:], sigmoid_probs(np.array([0.5])), LABELS)
    xs = np.r_[XS, 0.5]
    vectors.save(tmp_path / "v1" / vectors.VECTORS_FILE, ids, np.stack([xs * 3, np.ones_like(xs)], axis=1))
    assert quick.current(1) is None  # the old fit no longer ranks
    assert len(acts.queue_ids("uncertain")) == 42  # the stored scores rank every example meanwhile
    quick.wait(60)
    again = quick.current(1)
    assert again is not None and again is not fit and len(again.ids) == 42 and again.probs_of(ids[-1]) is not None


def test_the_diverse_queue_finds_the_versions_embeddings_loaded_when_it_serves(line, monkeypatch):
    """VersionWatch loads the serving version's embeddings for the Diverse queue, so its first
    request does not (0.3 s at 300k); a re-scoring (a new file) is loaded again, once."""
    services, adapters, _id_at = line
    loads = []
    real = vectors.load
    monkeypatch.setattr("bertdemo.actions.ranked.vectors.load", lambda path: loads.append(path) or real(path))
    assert adapters.watch.check().name == "v1"
    assert len(loads) == 1
    assert len(adapters.labelling.queue_ids("diverse")) == 41 and len(loads) == 1
    info = services.registry.active_version()
    path = services.registry.folder(info) / vectors.VECTORS_FILE
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # v1 scored again
    assert adapters.watch.check().name == "v1" and len(loads) == 2
    adapters.labelling.queue_ids("diverse")
    assert len(loads) == 2
