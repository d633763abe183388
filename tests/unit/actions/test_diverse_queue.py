"""The "Diverse uncertain (BADGE)" queue and the default "Unlabeled, most informative first" queue
(breaking ties, bench/al_sim.py's winner) through the actions (no API, no network, no fine-tune): on a
fake active version whose stored scores and sentence embeddings we choose, its first two items come
from two different clusters where breaking ties asks about one cluster twice; it says which model
ranked it; without embeddings it falls back to breaking ties; the quick model's refit re-picks it."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy.orm import Session

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.labelling import QUEUES
from bertdemo.actions.ranked import MODEL_QUEUES, RANKED_QUEUES
from bertdemo.config import Settings
from bertdemo.db import examples, versions
from bertdemo.db.examples import NewExample
from bertdemo.model import vectors
from bertdemo.services import Services

LABELS = ("negative", "neutral", "positive")


def cluster_data() -> tuple[np.ndarray, np.ndarray]:
    """Examples 0-5 around one direction, 6-11 around another, all near a tie (cluster one a
    little nearer: breaking ties asks about it first), 12-19 certain."""
    rng = np.random.default_rng(0)
    vecs = np.array([[1.0, 0.0]] * 6 + [[0.0, 1.0]] * 6 + [[0.7, 0.7]] * 8) + rng.normal(0, 1e-3, (20, 2))
    probs = np.array([[0.47, 0.49, 0.04]] * 6 + [[0.45, 0.5, 0.05]] * 6 + [[0.96, 0.02, 0.02]] * 8)
    return probs, vecs


@pytest.fixture
def clusters(tmp_path):
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False,
                                        quick_refit_every=3))
    probs, vecs = cluster_data()
    with Session(services.engine) as s, s.begin():
        rows = [NewExample(f"tweet {n}", f"tweet {n}", "neutral" if n < 12 else "negative",
                           dataset="airline" if n < 12 else "general") for n in range(20)]
        examples.import_examples(s, rows, "dataset", "dataset", LABELS)
        ids = sorted(examples.current_labels(s))
        folder = tmp_path / "v1"
        vectors.save(folder / vectors.VECTORS_FILE, ids, vecs)
        v = versions.add_version(s, name="v1", path=str(folder), base_model="x", is_active=False)
        versions.save_scores(s, v.id, ids, probs, LABELS)
        versions.activate_version(s, v.id)
    return services, AnnotateAdapters.create(services), ids, folder


def test_the_diverse_queue_is_offered_and_ranked_by_a_model():
    assert QUEUES["diverse"].startswith("Diverse uncertain (BADGE")
    assert "diverse" in MODEL_QUEUES and "diverse" in RANKED_QUEUES


def test_its_first_two_come_from_two_clusters_where_breaking_ties_stays_in_one(clusters):
    _services, adapters, ids, _folder = clusters
    acts = adapters.labelling
    cluster = {i: min(n // 6, 2) for n, i in enumerate(ids)}  # 0, 1, or 2 (certain)
    margin = acts.queue_ids("margin")
    assert [cluster[i] for i in margin[:6]] == [0] * 6  # breaking ties: six of cluster one first
    diverse = acts.queue_ids("diverse")
    assert sorted(diverse) == sorted(ids)  # every example: the batch, then the rest by margin
    assert {cluster[i] for i in diverse[:2]} == {0, 1}
    assert cluster[diverse[0]] == 0  # the longest gradient: the nearest tie
    assert acts.queue_ids("diverse") == diverse  # cached: the same batch until the scores or the fit change
    item = acts.next_item("diverse", "", [], "ann")
    assert item.id == diverse[0] and item.ranked_by.startswith("ranked by v1's stored scores")
    second = acts.next_item("diverse", "", [item.id], "ann")
    assert cluster[second.id] != cluster[item.id]
    airline = acts.queue_ids("diverse", dataset="airline")  # the batch is picked within the dataset
    assert sorted(airline) == sorted(ids[:12]) and {cluster[i] for i in airline[:2]} == {0, 1}


def test_without_embeddings_it_falls_back_to_breaking_ties(clusters):
    _services, adapters, _ids, folder = clusters
    (folder / vectors.VECTORS_FILE).unlink()
    acts = adapters.labelling
    assert acts.queue_ids("diverse") == acts.queue_ids("margin")


def test_the_quick_models_refit_picks_a_new_batch(clusters):
    services, adapters, ids, _folder = clusters
    acts = adapters.labelling
    before = acts.queue_ids("diverse")
    for i in ids[:3]:  # cluster one is negative after all
        acts.save_label(i, "negative", None, "ann")
    adapters.quick.wait(60)
    fit = adapters.quick.current(services.registry.active_version().id)
    assert fit is not None
    after = acts.queue_ids("diverse")
    assert after != before and sorted(after) == sorted(ids)
    assert acts.next_item("diverse", "", [], "bob").ranked_by.startswith("ranked by the quick model refit at")


def test_the_default_queue_hands_out_the_unlabelled_ones_by_breaking_ties(tmp_path):
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False))
    probs = np.array([[0.9, 0.05, 0.05], [0.5, 0.45, 0.05], [0.34, 0.33, 0.33], [0.45, 0.1, 0.45], [0.4, 0.4, 0.2]])
    with Session(services.engine) as s, s.begin():  # margins 0.85, 0.05, 0.01, 0.00, 0.00 (labelled)
        rows = [NewExample(t, t, "neutral" if t == "e" else None) for t in "abcde"]
        examples.import_examples(s, rows, "dataset", "dataset", LABELS)
        ids = sorted(i for i, _t in examples.all_texts(s))
        v = versions.add_version(s, name="v1", path=str(tmp_path / "v1"), base_model="x", is_active=False)
        versions.save_scores(s, v.id, ids, probs, LABELS)
        versions.activate_version(s, v.id)
    acts = AnnotateAdapters.create(services).labelling
    assert acts.default_queue() == "informative"
    assert QUEUES["informative"] == "Unlabeled, most informative first (breaking ties)"
    assert acts.queue_ids("unlabeled") == ids[:4]  # oldest first
    assert acts.queue_ids("informative") == [ids[3], ids[2], ids[1], ids[0]]  # smallest margin first, e left out
    item = acts.next_item("informative", "", [], "ann")
    assert item.id == ids[3] and item.ranked_by.startswith("ranked by v1's stored scores")
    acts.save_label(ids[3], "positive", item.version, "ann")
    assert acts.queue_ids("informative") == [ids[2], ids[1], ids[0]]
