"""The corpus map's 2-D layout of a version's sentence embeddings: the first two principal
components, fitted on a fixed sample of at most FIT_ROWS rows and applied to every row, chunk by
chunk, in bounded memory. The same function lays out the map in the re-scoring's follow-up (stored
with the scores, training/follow_up.py) and in the map's fallback (actions/corpus_map.py), so both
give the same coordinates for the same embeddings.

The fit accumulates the sample's mean and 384 x 384 scatter matrix chunk by chunk (in float64) and
takes its two leading eigenvectors (what scikit-learn's PCA does for tall data, its
"covariance_eigh" solver), so no copy of the sample is held: ~2 MB instead of sklearn's ~150 MB for
50,000 x 384. Each component's sign is fixed (its largest loading positive) so a refit of the same
vectors never mirrors the map."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

FIT_ROWS = 50_000  # the fit's sample (two components settle long before)
CHUNK_ROWS = 16_384  # rows converted to float32 at a time: 25 MB at 384 wide
FIT_CHUNK = 4_096  # sample rows converted at a time for the fit: 6 MB at 384 wide


@dataclass(frozen=True, eq=False)
class Projection:
    """x -> (x - mean) @ components.T, as two float32 columns."""

    mean: np.ndarray  # (d,) float64
    components: np.ndarray  # (2, d) float64; zero rows where the data has fewer directions

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """(n, 2) float32 coordinates of `rows` ((n, d), any float dtype)."""
        x = np.asarray(rows, dtype=np.float32)
        w = self.components.T.astype(np.float32)
        return (x @ w - (self.mean @ self.components.T).astype(np.float32)).astype(np.float32)


def fit(vectors: np.ndarray, fit_rows: int = FIT_ROWS) -> Projection:
    """The two leading principal directions of `vectors` ((N, d), e.g. a float16 memory map),
    fitted on all rows up to `fit_rows`, else on a fixed random sample of that many (seed 0)."""
    n, d = vectors.shape
    if n < 3:  # no layout to speak of: every point at the origin
        return Projection(np.zeros(d), np.zeros((2, d)))
    rows = np.arange(n) if n <= fit_rows else np.sort(np.random.default_rng(0).choice(n, fit_rows, replace=False))
    total = np.zeros(d, dtype=np.float64)
    scatter = np.zeros((d, d), dtype=np.float64)
    for part in _chunks(len(rows), FIT_CHUNK):
        x = np.asarray(vectors[rows[part]], dtype=np.float32)  # a chunk's products in float32 (half the
        total += x.sum(axis=0, dtype=np.float64)  # time of float64; 4,096 terms each), summed in float64
        scatter += x.T @ x
    mean = total / max(len(rows), 1)
    cov = scatter / max(len(rows), 1) - np.outer(mean, mean)
    values, vecs = np.linalg.eigh(cov)  # ascending
    top = vecs[:, ::-1][:, :2].T.copy()
    top[values[::-1][:2] <= 1e-12 * max(float(values[-1]), 1e-30)] = 0.0  # no spread that way: a flat axis
    if d < 2:
        top = np.vstack([top, np.zeros((2 - len(top), d))])
    signs = np.sign(top[np.arange(2), np.abs(top).argmax(axis=1)])
    return Projection(mean, top * np.where(signs == 0, 1.0, signs)[:, None])


def project(vectors: np.ndarray, projection: Projection | None = None) -> np.ndarray:
    """(N, 2) float32 map coordinates of every row of `vectors`, CHUNK_ROWS at a time (all zeros
    for fewer than 3 rows)."""
    n = len(vectors)
    p = projection or fit(vectors)
    out = np.empty((n, 2), dtype=np.float32)
    for part in _chunks(n):
        out[part] = p(vectors[part])
    return out


def _chunks(n: int, size: int = CHUNK_ROWS) -> Iterator[slice]:
    for a in range(0, n, size):
        yield slice(a, min(a + size, n))
