"""Similar examples and the corpus map on a trained version's stored embeddings: neighbours by
example and by typed text, a region selected on the map, and bulk labels from both."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.errors import BadInput, NotReady
from bertdemo.model import vectors
from bertdemo.services import Services


@pytest.fixture(scope="module")
def acts(trained_services) -> AnnotateAdapters:
    return AnnotateAdapters.create(trained_services)


@pytest.fixture
def own(tmp_path, trained_services) -> AnnotateAdapters:
    """A copy of the trained data directory to change."""
    data = tmp_path / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    return AnnotateAdapters.create(Services.create(trained_services.settings.with_(data_dir=data)))


def test_rescoring_stores_unit_length_embeddings_of_every_example(acts):
    index = acts.similar.index()
    n = len(acts.labelling.table("any", limit=1000))  # every stored example
    assert n > 200 and len(index) == n and index.vectors.shape == (n, 384)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=2e-3)


def test_neighbours_of_an_example_are_the_most_similar_others_best_first(acts):
    ex = acts.labelling.queue_ids("search", "delayed")[0]
    found = acts.similar.of_example(ex, 5)
    assert len(found.rows) == 5 and ex not in found.ids
    sims = list(found.rows["similarity"])
    assert sims == sorted(sims, reverse=True) and 0 < sims[0] <= 1
    index = acts.similar.index()
    brute = index.vectors @ index.vector_of(ex)
    brute_ids = [int(index.ids[n]) for n in np.argsort(-brute) if int(index.ids[n]) != ex][:5]
    assert found.ids == brute_ids  # the same as an exhaustive search (its speed: bench/bench_similar.py)


def test_find_similar_to_typed_text_ranks_a_stored_tweet_first(acts):
    ex = acts.labelling.queue_ids("search", "delayed")[0]
    text = acts.labelling.item(ex).text
    found = acts.similar.of_text(text, 3)
    assert found.ids[0] == ex and found.rows["similarity"].iloc[0] > 0.99
    with pytest.raises(BadInput, match="Nothing is left"):
        acts.similar.of_text("   @someone http://x.y", 3)
    with pytest.raises(BadInput, match="Number of similar examples"):
        acts.similar.of_text("hello", 500)


def test_label_the_similar_examples_in_one_batch_anyone_may_undo_their_own(own):
    ex = own.labelling.queue_ids("search", "delayed")[0]
    found = own.similar.of_example(ex, 5)
    before = {i: own.labelling.item(i).label for i in found.ids}
    preview = own.bulk.preview(found.ids, "positive")
    result = own.bulk.apply(preview, None, admin=False)  # single-user mode: the local person
    assert result.changed == sum(lab != "positive" for lab in before.values()) >= 1
    assert all(own.labelling.item(i).label == "positive" for i in found.ids)
    own.bulk.undo(result.batch, None, admin=False)
    assert {i: own.labelling.item(i).label for i in found.ids} == before


def test_the_map_has_a_point_per_example_coloured_three_ways(acts):
    index = acts.similar.index()
    for colour_by in ("label", "prediction", "disagreement"):
        view = acts.map.view(colour_by)
        assert view.drawn == view.total == len(index) and view.version == "v1"  # a small corpus: every point
        assert sorted(view.ids.tolist()) == sorted(index.ids.tolist()) and view.density.total == 0
        assert set(view.keys.tolist()) <= set(range(len(view.legend)))
        assert view.counts == np.bincount(view.keys, minlength=len(view.legend)).tolist()
    by_label = acts.map.view("label")
    names = [n for n, _c in by_label.legend]
    counts = np.bincount(by_label.keys, minlength=len(names))
    stored = acts.labelling.table("any", limit=1000)["label"].value_counts()
    assert list(counts[:3]) == [stored[lab] for lab in names[:3]] and counts[3] == 0
    with pytest.raises(BadInput, match="Colour by"):
        acts.map.view("mood")


def test_a_box_or_lasso_on_the_map_selects_the_examples_inside(acts):
    index = acts.similar.index()
    xy, ids = index.projection(), index.ids
    x0, x1 = np.quantile(xy[:, 0], [0.0, 0.5])
    y0, y1 = xy[:, 1].min(), xy[:, 1].max()
    box = acts.map.select({"box": [x1, y1, x0, y0]})  # corners in any order
    inside = ids[(xy[:, 0] >= x0) & (xy[:, 0] <= x1)]
    assert sorted(box) == sorted(inside.tolist()) and len(box) >= 100
    lasso = acts.map.select({"lasso": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
    assert set(lasso) <= set(box) and len(lasso) >= len(box) - 3  # the boundary may differ
    far = xy[:, 0].max() + 10
    with pytest.raises(BadInput, match="empty"):
        acts.map.select({"box": [far, far, far + 1, far + 1]})
    for bad in (None, {"circle": 1}, {"box": [1, 2]}, {"lasso": [[0, 0], [1, 1]]}, {"box": ["a", 1, 2, 3]}):
        with pytest.raises(BadInput):
            acts.map.select(bad)


def test_a_map_selection_becomes_the_persons_own_queue(own):
    view = own.map.view("label")
    chosen = [int(i) for i in view.ids[:4]]
    assert own.map.keep_selection(chosen, None) == 4
    item = own.labelling.next_item("selection", "", [], None)
    assert item.id in chosen and item.remaining == 4


def test_without_stored_embeddings_similar_examples_say_they_are_coming(own):
    info = own.labelling.services.registry.active_version()
    (own.labelling.services.registry.folder(info) / vectors.VECTORS_FILE).unlink()
    with pytest.raises(NotReady, match="being computed"):
        own.similar.of_example(1, 5)
    own.labelling.services.jobs.wait_rescore(120)  # the look-up started re-scoring, which writes them
    assert len(own.similar.index()) > 200
