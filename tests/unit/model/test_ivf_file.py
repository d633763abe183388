"""model/ivf_file.py writes the FAISS IVF float16 index list by list, never holding its codes: the
file must be the one faiss.write_index writes for the same index with the same vectors added, byte
for byte (dense lists and the sparse layout faiss picks when most lists are empty), read back by
faiss with the same search results; and the index build uses it on a real embeddings file."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.model import ivf_file, vectors

faiss = pytest.importorskip("faiss")


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def trained(d: int, lists: int, sample: np.ndarray):
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, lists, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    index.train(sample)
    return index


def both_files(tmp_path, index, ids: np.ndarray, x: np.ndarray, block: int) -> tuple[bytes, bytes]:
    """(faiss.write_index's bytes after add_with_ids, ivf_file.write's bytes) for one trained index."""
    reference = faiss.clone_index(index)
    reference.add_with_ids(x, ids)
    faiss.write_index(reference, str(tmp_path / "faiss.index"))

    def blocks():
        for a in range(0, len(ids), block):
            yield ids[a:a + block], x[a:a + block]

    ivf_file.write(tmp_path / "ours.index", faiss.clone_index(index), blocks)
    return (tmp_path / "faiss.index").read_bytes(), (tmp_path / "ours.index").read_bytes()


def test_dense_lists_are_written_byte_for_byte_as_faiss_writes_them(tmp_path):
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(3000, 16)))
    ids = np.arange(10, 3010, dtype=np.int64)[rng.permutation(3000)]
    theirs, ours = both_files(tmp_path, trained(16, 20, x), ids, x, block=700)
    assert ours == theirs
    got = faiss.read_index(str(tmp_path / "ours.index"))
    got.nprobe = 20
    _, found = got.search(x[:5], 3)
    assert found[:, 0].tolist() == ids[:5].tolist()  # each vector finds itself first


def test_mostly_empty_lists_take_faiss_sparse_layout(tmp_path):
    rng = np.random.default_rng(1)
    sample = unit(rng.normal(size=(2000, 8)))
    index = trained(8, 64, sample)
    centroids = index.quantizer.reconstruct_n(0, 3)  # every added vector lies near one of 3 centroids
    x = unit(np.repeat(centroids, 40, axis=0) + rng.normal(scale=1e-3, size=(120, 8)))
    theirs, ours = both_files(tmp_path, index, np.arange(120, dtype=np.int64), x, block=50)
    assert b"sprs" in theirs and ours == theirs


def test_the_index_build_reads_the_embeddings_in_blocks_and_finds_neighbours(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x = unit(rng.normal(size=(2500, 32)))
    ids = np.arange(1, 2501, dtype=np.int64)
    with vectors.Writer(tmp_path / vectors.VECTORS_FILE, ids, 32) as w:
        w.add(x)
    monkeypatch.setattr(vectors, "BUILD_ROWS", 300)  # several blocks
    path = vectors.build_index(tmp_path)
    index = faiss.read_index(str(path))
    assert index.ntotal == 2500
    index.nprobe = index.nlist
    _, found = index.search(x[[0, 1234]], 1)
    assert found[:, 0].tolist() == [1, 1235]
