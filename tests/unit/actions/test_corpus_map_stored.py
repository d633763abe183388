"""The corpus map's coordinates stored with the scores (migration 0012), on SQLite and PostgreSQL
(their bulk writes differ): written per chunk by the re-scoring's follow-up (its "mapping" phase),
complete only when every score has them, cleared when the scores are written again; the map's
first draw reads them without touching the embeddings, a box or lasso is a range query plus a
polygon test whose counts are exact; a follow-up abandoned halfway leaves the map laying itself
out from the embeddings (the same coordinates) and storing them in the background."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.path import Path as Polygon
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bertdemo.actions.corpus_map import CorpusMap
from bertdemo.config import Settings
from bertdemo.db import keysets, map_coords, versions
from bertdemo.db.models import Example, Score, now
from bertdemo.model import projection, vectors
from bertdemo.services import Services
from bertdemo.training import follow_up
from bertdemo.training.follow_up import Abandoned, Ticket
from tests.support import LABELS, wait_for

N = 3_000


class NoIndex:
    """SimilarExamples for a map that must read stored coordinates: asking for the index fails."""

    def index(self):
        raise AssertionError("the map asked for the embeddings although its coordinates are stored")


class FromFile:
    """SimilarExamples over the version's embeddings file (the fallback's source)."""

    def __init__(self, path) -> None:
        self.path = path

    def index(self):
        return vectors.load(self.path)


@pytest.fixture
def stored(db_url, tmp_path):
    """Services on `db_url` with N examples (a third unlabelled, one label outside LABELS), an active
    version v1 with their scores (another version's too) and its embeddings file, no coordinates yet."""
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False, db_url=db_url))
    rng = np.random.default_rng(4)
    labels = [None if k % 3 == 0 else ("other" if k == 1 else LABELS[k % 3]) for k in range(N)]
    with Session(services.engine) as s, s.begin():
        s.execute(insert(Example), [{"text": f"t{k}", "raw_text": f"t{k}", "text_key": f"k{k}", "source": "import",
                                     "dataset": "import", "meta": {}, "created_at": now(), "label": lab,
                                     "version": int(lab is not None)} for k, lab in enumerate(labels)])
        ids = keysets.example_ids(s)
        vid = versions.add_version(s, name="v1", path="models/v1", base_model="x", is_active=True).id
        other = versions.add_version(s, name="v2", path="models/v2", base_model="x").id
        probs = rng.dirichlet([1.0, 1.0, 1.0], size=N)
        versions.save_scores(s, vid, ids.tolist(), probs, LABELS)
        versions.save_scores(s, other, ids.tolist(), probs[::-1], LABELS)
    centres = rng.normal(size=(4, 8)) * 3
    v = centres[rng.integers(0, 4, N)] + rng.normal(size=(N, 8))
    path = services.registry.folder(services.registry.active_version()) / vectors.VECTORS_FILE
    vectors.save(path, ids, v / np.linalg.norm(v, axis=1, keepdims=True))
    yield SimpleNamespace(services=services, ids=ids, vid=vid, other=other, probs=probs, labels=labels, path=path)
    services.engine.dispose()


def _expected_xy(path) -> np.ndarray:
    return projection.project(vectors.load(path).vectors)


def test_the_follow_up_stores_the_map_and_the_map_reads_it(stored, monkeypatch):
    monkeypatch.setattr(follow_up, "MAP_CHUNK", 1_000)
    engine, vid = stored.services.engine, stored.vid
    with Session(engine) as s:
        assert not map_coords.complete(s, vid) and not map_coords.complete(s, 999)
    phases = []
    assert follow_up.lay_out(engine, stored.path, vid, phases.append) == N
    assert [(p.name, p.done, p.total) for p in phases] == [("mapping", d, N) for d in (0, 1_000, 2_000, N)]
    xy = _expected_xy(stored.path)
    with Session(engine) as s:
        assert map_coords.complete(s, vid) and not map_coords.complete(s, stored.other)  # only v1's rows
        got = map_coords.coordinates(s, vid)
        order = np.argsort(got.ids)
        assert got.ids[order].tolist() == stored.ids.tolist() and np.array_equal(got.xy[order], xy)  # float32, exactly
        pred = map_coords.prediction_codes(s, vid, LABELS)
        assert dict(zip(pred.ids.tolist(), pred.codes.tolist())) == dict(zip(stored.ids.tolist(),
                                                                            stored.probs.argmax(axis=1).tolist()))
        labels = map_coords.label_codes(s, LABELS)
        want = {int(i): (LABELS.index(lab) if lab in LABELS else 3) for i, lab in zip(stored.ids, stored.labels) if lab}
        assert dict(zip(labels.ids.tolist(), labels.codes.tolist())) == want
        other = map_coords.prediction_codes(s, stored.other, LABELS)
        assert dict(zip(other.ids.tolist(), other.codes.tolist())) == dict(zip(stored.ids.tolist(),
                                                                              stored.probs[::-1].argmax(axis=1).tolist()))
    cmap = CorpusMap(stored.services, NoIndex(), max_points=500)
    lay = cmap.layout()
    assert lay.version_id == vid and np.array_equal(lay.xy[lay.lookup.rows_of(stored.ids)], xy)
    view = cmap.view("label")
    assert view.total == N and view.drawn == 500 and view.drawn + view.density.total == N
    assert view.counts == [sum(lab == name for lab in stored.labels) for name in LABELS] + [N // 3 + 1]
    dis = cmap.view("disagreement")
    wrong = sum(1 for lab, p in zip(stored.labels, stored.probs) if lab in LABELS and LABELS[p.argmax()] != lab)
    assert dis.counts == [N - (N // 3 + 1) - wrong, wrong, N // 3 + 1] and wrong > 0  # "other" counts unlabelled
    assert cmap.view("prediction").counts == np.bincount(stored.probs.argmax(axis=1), minlength=4).tolist()
    # the scores written again (a re-scoring): their coordinates go with them, the map is incomplete
    with Session(engine) as s, s.begin():
        versions.save_scores(s, vid, stored.ids[:10].tolist(), stored.probs[:10], LABELS)
    with Session(engine) as s:
        assert not map_coords.complete(s, vid)
    # ... and once laid out again from new embeddings (the version scored anew), the map reads them
    index = vectors.load(stored.path)
    vectors.save(stored.path, index.ids, index.dense()[::-1].copy())
    follow_up.lay_out(engine, stored.path, vid)
    again = cmap.layout()
    assert again is not lay and np.array_equal(again.xy[again.lookup.rows_of(stored.ids)], _expected_xy(stored.path))


def test_a_box_and_a_lasso_are_a_range_query_and_a_polygon_test_with_exact_counts(stored):
    follow_up.lay_out(stored.services.engine, stored.path, stored.vid)
    xy, ids = _expected_xy(stored.path).astype(np.float64), stored.ids
    (ax, bx), (ay, by) = np.quantile(xy[:, 0], [0.2, 0.7]), np.quantile(xy[:, 1], [0.1, 0.8])
    inside = (xy[:, 0] >= ax) & (xy[:, 0] <= bx) & (xy[:, 1] >= ay) & (xy[:, 1] <= by)
    cmap = CorpusMap(stored.services, NoIndex())
    cmap.layout = lambda: pytest.fail("a selection on stored coordinates loaded the whole layout")
    box = cmap.select({"box": [bx, by, ax, ay]})  # corners in any order
    assert box == sorted(ids[inside].tolist()) and len(box) > N // 5
    tri = [[ax, ay], [bx, ay], [(ax + bx) / 2, by]]
    lasso = cmap.select({"lasso": tri})
    assert lasso == sorted(ids[Polygon(np.array(tri)).contains_points(xy)].tolist()) and 0 < len(lasso) < len(box)
    # a point exactly on the box's edge is inside (both bounds inclusive, compared as stored)
    k = int(np.argmax(xy[:, 0]))
    assert int(ids[k]) in cmap.select({"box": [xy[k, 0], xy[k, 1], xy[k, 0] - 1, xy[k, 1]]})
    with Session(stored.services.engine) as s:  # another version's rows never answer
        assert len(map_coords.in_box(s, stored.other, -1e9, 1e9, -1e9, 1e9).ids) == 0
        assert len(map_coords.in_box(s, stored.vid, -1e9, 1e9, -1e9, 1e9).ids) == N
    from bertdemo.errors import BadInput

    with pytest.raises(BadInput, match="empty"):
        cmap.select({"box": [1e6, 1e6, 1e6 + 1, 1e6 + 1]})
    for bad in ({"box": [0, 0, float("nan"), 1]}, {"lasso": [[0, 0], [1, 1]]}, {"circle": 1}):
        with pytest.raises(BadInput):
            cmap.select(bad)


def test_an_abandoned_layout_stops_and_the_map_lays_itself_out_and_stores_it(stored, monkeypatch):
    monkeypatch.setattr(follow_up, "MAP_CHUNK", 1_000)
    engine, vid = stored.services.engine, stored.vid
    ticket = Ticket("v1")

    def report(p):
        if p.done >= 1_000:
            ticket.abandon()  # another version starts serving while the second chunk would start

    with pytest.raises(Abandoned):
        follow_up.lay_out(engine, stored.path, vid, report, ticket)
    with Session(engine) as s:
        assert not map_coords.complete(s, vid)
        assert s.scalar(select(Score.example_id).where(Score.version_id == vid, Score.map_x.is_not(None))
                        .order_by(Score.example_id.desc()).limit(1)) == int(stored.ids[999])  # one chunk kept
    # the map computes the same layout from the embeddings, and stores it in the background
    cmap = CorpusMap(stored.services, FromFile(stored.path))
    lay = cmap.layout()
    assert lay.version_id is None and np.array_equal(lay.xy, _expected_xy(stored.path))

    def complete():
        with Session(engine) as s:
            return map_coords.complete(s, vid)

    wait_for(complete, timeout=60, interval=0.2, what="the map's coordinates stored in the background")
    wait_for(lambda: stored.services.jobs.activity() == "", timeout=30, interval=0.1, what="the activity ended")
    cmap.similar = NoIndex()
    again = cmap.layout()
    assert again.version_id == vid and np.array_equal(again.xy[again.lookup.rows_of(lay.ids)], lay.xy)


def test_tiny_maps_lie_at_the_origin():
    for n in (0, 1, 2):
        assert projection.project(np.ones((n, 8), dtype=np.float16)).tolist() == [[0.0, 0.0]] * n
    flat = projection.fit(np.tile(np.eye(8)[:1], (5, 1)))  # one point five times: no direction at all
    assert np.abs(flat.components).max() == 0.0
