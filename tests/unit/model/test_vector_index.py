"""The vector index file of a version (bertdemo.model.vectors: build_index, open_index, IvfIndex):
recall@10 against brute force on a synthetic clustered set, the same answers' shape as
VectorIndex.nearest, and brute force (None) whenever the file is missing, stale or unreadable."""

from __future__ import annotations

import os

import numpy as np
import pytest

from bertdemo.model import vectors


def clustered(n: int, d: int = 384, centres: int = 300, seed: int = 0) -> np.ndarray:
    """Unit rows around `centres` random directions: neighbourhoods that overlap, like tweets'."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((centres, d)).astype(np.float32)
    rows = base[rng.integers(0, centres, n)] / np.sqrt(d)
    rows += rng.uniform(0.02, 0.06, (n, 1)).astype(np.float32) * rng.standard_normal((n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def folder(tmp_path):
    """A version folder with 4,000 stored embeddings, ids 1001.. (not row numbers)."""
    x = clustered(4000)
    vectors.save(tmp_path / vectors.VECTORS_FILE, np.arange(1001, 5001), x)
    return tmp_path


def test_the_index_finds_what_brute_force_finds(folder):
    assert vectors.build_index(folder) == folder / vectors.INDEX_FILE
    graph, brute = vectors.open_index(folder), vectors.load(folder / vectors.VECTORS_FILE)
    assert graph is not None and len(graph) == len(brute) == 4000
    rng = np.random.default_rng(1)
    recalls = []
    for _ in range(100):
        q = brute.vector_of(int(rng.integers(1001, 5001))) + 0.02 * rng.standard_normal(384).astype(np.float32)
        want, got = brute.nearest(q, 10), graph.nearest(q, 10)
        recalls.append(len({i for i, _ in want} & {i for i, _ in got}) / 10)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)  # best first
        sims = dict(want)  # cosine similarity as brute force computes it, to float16's precision
        assert all(abs(sims[i] - s) < 1e-2 for i, s in got if i in sims)
    assert np.mean(recalls) >= 0.95


def test_exclude_and_k_behave_as_brute_force(folder):
    vectors.build_index(folder)
    graph, brute = vectors.open_index(folder), vectors.load(folder / vectors.VECTORS_FILE)
    q = brute.vector_of(2000)
    got = graph.nearest(q, 5, exclude={2000})
    assert len(got) == 5 and 2000 not in {i for i, _ in got}
    assert graph.nearest(q, 1)[0][0] == 2000 and graph.nearest(q, 1)[0][1] == pytest.approx(1.0, abs=1e-3)
    assert graph.nearest(q, 0) == [] and len(graph.nearest(q, 50)) == 50  # MAX_NEIGHBOURS of similar.py


def test_no_index_means_brute_force(folder, tmp_path_factory):
    assert vectors.open_index(folder) is None  # not built yet
    assert vectors.build_index(tmp_path_factory.mktemp("empty")) is None  # no embeddings yet
    path = vectors.build_index(folder)
    # embeddings written again after the index (a re-scoring since): the index is stale
    earlier = (folder / vectors.VECTORS_FILE).stat().st_mtime_ns - 1_000_000_000
    os.utime(path, ns=(earlier, earlier))
    assert vectors.open_index(folder) is None
    vectors.build_index(folder)
    assert vectors.open_index(folder) is not None
    path.write_bytes(b"not an index")  # unreadable
    assert vectors.open_index(folder) is None


def test_a_second_process_opens_the_same_file_memory_mapped(folder):
    """The file is shared through the page cache: a fresh process maps it instead of reading it."""
    import subprocess
    import sys

    vectors.build_index(folder)
    code = ("import sys; from pathlib import Path; import numpy as np; from bertdemo.model import vectors; "
            "g = vectors.open_index(Path(sys.argv[1])); print(g.nearest(np.ones(384, np.float32), 3)[0][0])")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    graph = vectors.open_index(folder)
    assert int(out.stdout.strip()) == graph.nearest(np.ones(384, np.float32), 3)[0][0]


def test_the_streamed_index_file_is_the_one_faiss_writes(tmp_path):
    """build_index writes the codes list by list (model/ivf_file.py); the file is faiss's own, byte for byte."""
    import faiss

    x = clustered(3000, d=16, centres=20)
    ids = np.arange(3000) * 7 + 3
    vectors.save(tmp_path / vectors.VECTORS_FILE, ids, x)
    built = vectors.build_index(tmp_path).read_bytes()
    stored = vectors.load(tmp_path / vectors.VECTORS_FILE)
    lists = vectors.index_lists(3000)
    ref = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(16), 16, lists, faiss.ScalarQuantizer.QT_fp16,
                                        faiss.METRIC_INNER_PRODUCT)
    sample = np.sort(np.random.default_rng(0).choice(3000, min(3000, vectors.INDEX_TRAIN_PER_LIST * lists),
                                                     replace=False))
    ref.train(vectors._unit(stored.rows(sample)))
    ref.add_with_ids(vectors._unit(stored.rows(np.arange(3000))), ids)
    assert built == faiss.serialize_index(ref).tobytes()
    rows = np.array([5, 4, 2999, 0, 5, 1000])
    assert np.array_equal(stored.rows(rows), np.asarray(stored.vectors[rows], dtype=np.float32))  # pread = mapping
