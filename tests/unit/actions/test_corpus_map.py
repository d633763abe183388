"""The corpus map at any size, on synthetic indexes (no model): the stratified sample (cap kept,
every colour kept, the same every time), the typed-array payload read back as the page reads it,
density cells and totals that add up to every example, and box and lasso selections counted
exactly over all points, not over the sample. The map on a trained version is in test_similar.py."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from matplotlib.path import Path as Polygon
from sqlalchemy.orm import Session

from bertdemo.actions.corpus_map import CorpusMap, decode, quotas, stratified_sample
from bertdemo.config import Settings
from bertdemo.db import examples
from bertdemo.model import projection
from bertdemo.model.vectors import VectorIndex
from bertdemo.services import Services
from tests.support import LABELS


class StubSimilar:
    """What CorpusMap asks of SimilarExamples: the active version's index."""

    def __init__(self, index: VectorIndex) -> None:
        self._index = index

    def index(self) -> VectorIndex:
        return self._index


def synthetic_index(ids: np.ndarray, seed: int = 0) -> VectorIndex:
    """Random unit vectors in 4-D around three centres (PCA of 4-D is quick at any N)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 4)) * 3
    v = centres[rng.integers(0, 3, len(ids))] + rng.normal(size=(len(ids), 4))
    return VectorIndex(np.asarray(ids, dtype=np.int64), (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))


def corpus_map(tmp_path, n: int, label_of, max_points: int) -> CorpusMap:
    """A CorpusMap over `n` stored examples (label_of(k) labels the k-th, or None) and an index of them."""
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False))
    rows = [examples.NewExample(f"example {k}", f"example {k}", label_of(k)) for k in range(n)]
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, rows, "import", "test", LABELS)
    with Session(services.engine) as s:
        ids = np.array([i for i, _t in examples.all_texts(s)], dtype=np.int64)
    return CorpusMap(services, StubSimilar(synthetic_index(ids)), max_points=max_points)


# ------------------------------------------------------------------------------- sampling
def test_quotas_keep_the_cap_and_every_class():
    counts = np.array([150_000, 60_000, 40, 0, 90_000])
    q = quotas(counts, 50_000)
    assert q.sum() == 50_000 and (q <= counts).all()  # the whole budget, never more than a class holds
    assert q[2] == 40 and q[3] == 0  # a rare class is sent whole
    assert q[0] > q[4] > q[1] > q[2]  # the others in proportion
    assert list(quotas(np.array([10, 20]), 50)) == [10, 20]  # under the cap: everything


def test_the_sample_respects_the_cap_keeps_every_class_and_is_deterministic():
    rng = np.random.default_rng(1)
    n = 200_000
    keys = rng.choice(4, size=n, p=[0.7, 0.2, 0.0995, 0.0005])
    ids = rng.permutation(np.arange(1, n + 1))
    from bertdemo.actions.corpus_map import id_priority

    chosen = stratified_sample(keys, id_priority(ids), 5_000)
    assert len(chosen) == 5_000 and len(set(chosen.tolist())) == len(chosen)
    per = np.bincount(keys[chosen], minlength=4)
    assert per[3] == (keys == 3).sum() > 50  # the rare class, all of it
    assert per[0] > per[1] > per[2] > 0
    again = stratified_sample(keys, id_priority(ids), 5_000)
    assert np.array_equal(chosen, again)
    # the same examples, given in another order, give the same sample (it depends on ids, not rows)
    shuffle = rng.permutation(n)
    other = stratified_sample(keys[shuffle], id_priority(ids[shuffle]), 5_000)
    assert set(ids[shuffle][other].tolist()) == set(ids[chosen].tolist())
    # drawn largest class first: rare points lie on top
    assert list(keys[chosen][[0, -1]]) == [0, 3]


# ------------------------------------------------------------------------------- the view
def test_a_large_map_sends_a_sample_and_cells_that_add_up_to_every_example(tmp_path):
    n = 6_000

    def label_of(k: int) -> str | None:  # half unlabelled, three "neutral" only
        if k % 2:
            return None
        return "neutral" if k % 2000 == 0 else ("negative" if (k // 2) % 3 == 0 else "positive")

    cmap = corpus_map(tmp_path, n, label_of, max_points=1_000)
    view = cmap.view("label")
    names = [name for name, _c in view.legend]
    assert names == [*LABELS, "none"] and view.total == n and view.drawn == 1_000
    expected = [sum(label_of(k) == lab for k in range(n)) for lab in LABELS] + [n // 2]
    assert view.counts == expected and expected[1] == 3  # three "neutral": a rare class
    assert int((view.keys == 1).sum()) == 3  # ... all of them drawn
    assert view.drawn + view.density.total == n
    per_class = np.bincount(view.keys, minlength=4) + np.bincount(view.density.keys, weights=view.density.counts,
                                                                  minlength=4).astype(int)
    assert per_class.tolist() == view.counts
    payload = view.as_json()
    assert json.loads(json.dumps(payload)) == payload and payload["total"] == n and payload["drawn"] == view.drawn
    # colourings: disagreement without a version is "agrees" for every labelled example
    dis = cmap.view("disagreement")
    assert dis.counts == [n // 2, 0, n // 2] and cmap.view("prediction").counts == [0, 0, 0, n]


def test_the_payload_round_trips_as_the_page_reads_it(tmp_path):
    cmap = corpus_map(tmp_path, 3_000, lambda k: LABELS[k % 3] if k % 4 else None, max_points=1_000)
    view = cmap.view("label")
    got = decode(view.as_json())
    x0, x1, y0, y1 = view.bounds
    assert np.array_equal(got["id"], view.ids) and np.array_equal(got["c"], view.keys)
    # Uint16 steps across the bounds: within half a step of the true coordinate
    assert np.abs(got["x"] - view.xy[:, 0]).max() <= (x1 - x0) / 65_535
    assert np.abs(got["y"] - view.xy[:, 1]).max() <= (y1 - y0) / 65_535
    assert np.array_equal(got["cell"], view.density.cells) and np.array_equal(got["cell_n"], view.density.counts)
    assert np.array_equal(got["cell_c"], view.density.keys) and got["cell"].max() < 128 * 128
    # every point inside the bounds, and the bounds those of every example, not only the drawn
    xy = projection.project(cmap.similar.index().vectors)
    assert (x0, x1, y0, y1) == (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max())


def test_a_small_map_draws_every_point(tmp_path):
    cmap = corpus_map(tmp_path, 50, lambda k: LABELS[k % 3], max_points=1_000)
    view = cmap.view("label")
    assert view.drawn == view.total == 50 and view.density.total == 0 and len(view.density.cells) == 0
    assert sorted(view.ids.tolist()) == sorted(cmap.similar.index().ids.tolist())


# ------------------------------------------------------------------------------- selections
@pytest.fixture(scope="module")
def big(tmp_path_factory) -> CorpusMap:
    """A map of 200,000 points laid out from an index (no stored coordinates: no version, no rows)."""
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path_factory.mktemp("big") / "rt",
                                        bootstrap=False))
    return CorpusMap(services, StubSimilar(synthetic_index(np.arange(10, 200_010), seed=3)))


def test_box_and_lasso_counts_are_exact_over_200k_points(big):
    xy = projection.project(big.similar.index().vectors)
    ids = big.similar.index().ids
    (ax, bx), (ay, by) = np.quantile(xy[:, 0], [0.2, 0.7]), np.quantile(xy[:, 1], [0.1, 0.8])
    inside = (xy[:, 0] >= ax) & (xy[:, 0] <= bx) & (xy[:, 1] >= ay) & (xy[:, 1] <= by)
    t0 = time.perf_counter()
    box = big.select({"box": [bx, by, ax, ay]})
    box_s = time.perf_counter() - t0
    assert sorted(box) == sorted(ids[inside].tolist()) and len(box) > 50_000  # more than the map ever draws
    # a triangle (lasso): the exact test over every point, with no bounding-box shortcut
    tri = [[ax, ay], [bx, ay], [(ax + bx) / 2, by]]
    expected = ids[Polygon(np.array(tri)).contains_points(xy)]
    t0 = time.perf_counter()
    lasso = big.select({"lasso": tri})
    lasso_s = time.perf_counter() - t0
    assert sorted(lasso) == sorted(expected.tolist()) and len(lasso) > 20_000
    assert box_s < 1.0 and lasso_s < 2.0  # milliseconds here; generous for a loaded machine
