"""Sentence embeddings of the stored examples, one file per model version (written by the
re-scoring pass beside the version's weights), and what is asked of them: the nearest neighbours
of a vector (cosine similarity, one matrix-vector product: milliseconds for the whole corpus) and
a 2-D projection for the corpus map (scikit-learn's PCA, cached with the index).

Vectors are stored in float16 (half the disk, the ranking agrees with float32 to ~1e-3 in
similarity) and computed in float32."""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VECTORS_FILE = "embeddings.npz"


def save(path: Path, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".embeddings-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, ids=np.asarray(ids, dtype=np.int64), vectors=np.asarray(vectors, dtype=np.float16))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> VectorIndex:
    with np.load(path) as data:
        ids, vectors = data["ids"], data["vectors"].astype(np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"{path} is not an embeddings file (ids {ids.shape}, vectors {vectors.shape})")
    return VectorIndex(ids, vectors)


@dataclass
class VectorIndex:
    ids: np.ndarray  # (N,) example ids
    vectors: np.ndarray  # (N, d) unit-length float32
    _row: dict[int, int] = field(default_factory=dict, repr=False)
    _xy: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._row = {int(i): n for n, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def vector_of(self, example_id: int) -> np.ndarray | None:
        n = self._row.get(int(example_id))
        return None if n is None else self.vectors[n]

    def nearest(self, query: np.ndarray, k: int, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        """The `k` stored examples most similar to `query` (cosine), best first, without `exclude`."""
        if not len(self.ids) or k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        sims = self.vectors @ q
        want = min(len(sims), k + len(exclude or ()))
        top = np.argpartition(-sims, want - 1)[:want]
        top = top[np.argsort(-sims[top], kind="stable")]
        found = [(int(self.ids[n]), float(sims[n])) for n in top if int(self.ids[n]) not in (exclude or ())]
        return found[:k]

    def projection(self) -> np.ndarray:
        """(N, 2) map coordinates: the first two principal components, computed once per index."""
        with self._lock:
            if self._xy is None:
                from sklearn.decomposition import PCA

                if len(self.ids) < 3:
                    self._xy = np.zeros((len(self.ids), 2), dtype=np.float32)
                else:
                    self._xy = PCA(n_components=2, random_state=0).fit_transform(self.vectors).astype(np.float32)
            return self._xy
