"""Sentence embeddings of the stored examples, one file per model version (written by the
re-scoring pass beside the version's weights), and what is asked of them: the nearest neighbours
of a vector (cosine similarity) and a 2-D projection for the corpus map (scikit-learn's PCA,
cached with the index).

Vectors are stored in float16 (half the disk, the ranking agrees with float32 to ~1e-3 in
similarity). The file is an uncompressed .npz (ids.npy, then vectors.npy) written chunk by chunk
(`Writer`: the re-scoring never holds all the vectors) and read memory-mapped: the vectors stay in
the page cache, shared by every process that serves the version, instead of a float32 copy
(1.5 KB an example) in each; rows are converted to float32 as they are used."""

from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VECTORS_FILE = "embeddings.npz"
CHUNK_ROWS = 65536  # rows converted to float32 at a time when the whole matrix is used (~100 MB at 384)
PCA_FIT_ROWS = 50_000  # the map's projection is fitted on a sample this big (two components settle long before)


class Writer:
    """Write a version's embeddings file chunk by chunk, atomically (a reader sees the old file or
    the new one, never half of one): `ids` are known up front (the re-scoring's keyset), the vectors
    arrive in the same order, `add` by `add`. Use as a context manager; the file appears on a clean
    exit only (`commit`)."""

    def __init__(self, path: Path, ids: np.ndarray | list[int], dim: int) -> None:
        self.path, self.ids, self.dim = path, np.asarray(ids, dtype=np.int64), int(dim)
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=path.parent, prefix=".embeddings-", suffix=".npz")
        self._file = os.fdopen(fd, "wb")
        self._zip = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        with self._zip.open("ids.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, self.ids)
        self._member = self._zip.open("vectors.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                  "shape": (len(self.ids), self.dim)}
        np.lib.format.write_array_header_1_0(self._member, header)

    def add(self, vectors: np.ndarray) -> None:
        v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float16).reshape(-1, self.dim))
        if self.written + len(v) > len(self.ids):
            raise ValueError(f"more vectors than ids ({self.written + len(v)} > {len(self.ids)})")
        self._member.write(v.tobytes())
        self.written += len(v)

    def commit(self) -> None:
        if self.written != len(self.ids):
            self.discard()
            raise ValueError(f"{self.written} vectors written for {len(self.ids)} ids")
        self._member.close()
        self._zip.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        for closing in (self._member.close, self._zip.close, self._file.close):
            try:
                closing()
            except Exception:  # noqa: BLE001 - a half-written temporary file is removed either way
                pass
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind, _value, _tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


def save(path: Path, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    v = np.asarray(vectors)
    with Writer(path, ids, v.shape[1] if v.ndim == 2 else 0) as w:
        w.add(v)


def _member(path: Path, name: str) -> np.ndarray:
    """One array of an uncompressed .npz, memory-mapped (read-only) where it is stored uncompressed,
    else read into memory."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            with z.open(name) as f:
                return np.lib.format.read_array(f)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the local file header: its name and extra field lengths are at 26 and 28
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        major, _minor = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if not shape or 0 in shape:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _read_rows(file: tuple[str, int], mapped: np.memmap, rows: np.ndarray) -> np.ndarray:
    """`mapped`[rows] read from its `file` (path, offset of row 0) with one pread per run of
    consecutive rows."""
    width = mapped.shape[1] * mapped.dtype.itemsize
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    cuts = np.flatnonzero(np.diff(ordered) != 1) + 1
    out = np.empty((len(rows), mapped.shape[1]), dtype=mapped.dtype)
    fd = os.open(file[0], os.O_RDONLY)
    try:
        for a, b in zip(np.concatenate([[0], cuts]).tolist(), np.concatenate([cuts, [len(rows)]]).tolist()):
            raw = os.pread(fd, (b - a) * width, file[1] + int(ordered[a]) * width)
            out[order[a:b]] = np.frombuffer(raw, dtype=mapped.dtype).reshape(b - a, -1)
    finally:
        os.close(fd)
    return out


def load(path: Path) -> VectorIndex:
    ids, vectors = np.asarray(_member(path, "ids.npy"), dtype=np.int64), _member(path, "vectors.npy")
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"{path} is not an embeddings file (ids {ids.shape}, vectors {vectors.shape})")
    mapped = isinstance(vectors, np.memmap) and vectors.flags.c_contiguous
    return VectorIndex(ids, vectors, _file=(str(vectors.filename), int(vectors.offset)) if mapped else None)


class RowLookup:
    """Each example id's row in an id array, by binary search over a sorted copy made once (8 bytes
    an id where a dict of them takes ~100): the embeddings file's rows, the quick model's."""

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    def rows_of(self, example_ids: np.ndarray | list[int]) -> np.ndarray:
        """(N,) each id's row, -1 where it has none."""
        want = np.asarray(example_ids, dtype=np.int64).reshape(-1)
        if not len(self._sorted) or not len(want):
            return np.full(len(want), -1, dtype=np.int64)
        at = np.clip(np.searchsorted(self._sorted, want), 0, len(self._sorted) - 1)
        return np.where(self._sorted[at] == want, self._order[at], -1)


@dataclass
class VectorIndex:
    ids: np.ndarray  # (N,) example ids
    vectors: np.ndarray  # (N, d) unit-length, float16 memory-mapped (a file) or any float array
    _lookup: RowLookup | None = field(default=None, repr=False)
    _xy: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _file: tuple[str, int] | None = field(default=None, repr=False)  # (path, offset of row 0) of a mapped file

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        self._lookup = RowLookup(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, example_ids: np.ndarray | list[int]) -> np.ndarray:
        """(N,) each id's row, -1 where it has none (an example added since the re-scoring)."""
        return self._lookup.rows_of(example_ids)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), d) float32 vectors of these rows. From a file, read (pread) rather than
        touched through the mapping: pages touched stay in this process's RSS while the index
        lives, and a fit or a scan that reads every row would hold the whole file there (O(N))."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self._file is not None and len(rows) and 0 <= rows.min() and rows.max() < len(self.vectors):
            return np.asarray(_read_rows(self._file, self.vectors, rows), dtype=np.float32)
        return np.asarray(self.vectors[rows], dtype=np.float32)

    def vector_of(self, example_id: int) -> np.ndarray | None:
        n = int(self.rows_of([example_id])[0])
        return None if n < 0 else np.asarray(self.vectors[n], dtype=np.float32)

    def dense(self) -> np.ndarray:
        """(N, d) float32 copy of every vector (a fit or a projection that needs the whole matrix)."""
        return np.asarray(self.vectors, dtype=np.float32)

    def nearest(self, query: np.ndarray, k: int, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        """The `k` stored examples most similar to `query` (cosine), best first, without `exclude`:
        brute force, CHUNK_ROWS rows converted to float32 at a time."""
        if not len(self.ids) or k <= 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        sims = np.concatenate([np.asarray(self.vectors[a:a + CHUNK_ROWS], dtype=np.float32) @ q
                               for a in range(0, len(self.ids), CHUNK_ROWS)])
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
                else:  # fitted on at most PCA_FIT_ROWS rows (all of them up to there), projected chunk by chunk
                    fit_rows = np.random.default_rng(0).choice(len(self.ids), PCA_FIT_ROWS, replace=False) \
                        if len(self.ids) > PCA_FIT_ROWS else slice(None)
                    pca = PCA(n_components=2, random_state=0).fit(np.asarray(self.vectors[fit_rows], np.float32))
                    self._xy = np.concatenate([
                        pca.transform(np.asarray(self.vectors[a:a + CHUNK_ROWS], np.float32)).astype(np.float32)
                        for a in range(0, len(self.ids), CHUNK_ROWS)])
            return self._xy


# --------------------------------------------------------------------------- the vector index file
# Similar examples at corpus scale come from an inverted-file index (FAISS IVF, float16 codes) built
# from the embeddings file, written beside it and opened memory-mapped read-only, so every process
# serving the version shares its pages. Chosen by bench/bench_vectors.py at 300k x 384: recall@10
# 0.999 at 3 ms a query, built in 15 s (exact over the float16 file: ~270 ms); HNSW graphs (faiss,
# usearch) answered in under a millisecond but took 4-8 minutes to build on 2 cores and reached
# recall 0.93 / 0.91 at ef 128.
INDEX_FILE = "embeddings.faiss"
INDEX_TRAIN_PER_LIST = 64  # k-means training rows per list (faiss wants >= 39)
INDEX_MIN_NPROBE = 32  # lists scanned per query, at least: recall@10 0.995 at 300k (1,095 lists)
BUILD_ROWS = 16384  # vectors the index build holds in float32 at a time (25 MB at 384)


def index_lists(n: int) -> int:
    """Inverted lists for `n` vectors: ~2 sqrt(n) (a few hundred rows each), at most n // 39 (enough
    training points per centroid; a small corpus gets few lists, scanned whole: exact)."""
    return int(max(1, min(2 * np.sqrt(n), n // 39)))


def build_index(version_folder: Path) -> Path | None:
    """Build `version_folder`/INDEX_FILE from its embeddings file (VECTORS_FILE), atomically, with the
    example ids as the index's ids; None when there are no embeddings (yet). Call it after the
    re-scoring wrote the embeddings. Bounded memory at any corpus size but for the k-means sample
    (INDEX_TRAIN_PER_LIST rows a list, ~2 sqrt(N) lists: 108 MB of float32 at 300k): the vectors are
    read BUILD_ROWS at a time and the codes written straight to the file (model/ivf_file.py), never
    all held: 8.5-12 s and ~+217 MB private at 300k on 2 cores (bench/README.md, "the vector index build's memory")."""
    import faiss

    from bertdemo.model import ivf_file

    source = Path(version_folder) / VECTORS_FILE
    if not source.exists():
        return None
    stored = load(source)
    n, d = stored.vectors.shape
    if not n:
        return None  # no examples: nothing to search, brute force answers (nothing)
    lists = index_lists(n)
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(d), d, lists, faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, INDEX_TRAIN_PER_LIST * lists), replace=False))
    # k-means on the sample, as index.train does it (same centroids, same file) without the
    # residuals copy of the sample it makes to train float16 codes, which need no training
    faiss.Clustering(d, lists, index.cp).train(_unit(stored.rows(sample), in_place=True), index.quantizer)
    index.is_trained = True

    def blocks():
        for a in range(0, n, BUILD_ROWS):
            yield stored.ids[a:a + BUILD_ROWS], _unit(stored.rows(np.arange(a, min(a + BUILD_ROWS, n))), in_place=True)

    target = Path(version_folder) / INDEX_FILE
    ivf_file.write(target, index, blocks)
    return target


def open_index(version_folder: Path) -> IvfIndex | None:
    """The version's index file, memory-mapped; None while there is none, or when it is older than
    the embeddings file (written again since: brute force until it is rebuilt) or unreadable."""
    path, source = Path(version_folder) / INDEX_FILE, Path(version_folder) / VECTORS_FILE
    try:
        if path.stat().st_mtime_ns < source.stat().st_mtime_ns:
            return None
        import faiss

        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except (OSError, RuntimeError):  # faiss raises RuntimeError for a file it cannot read
        return None
    index.nprobe = max(INDEX_MIN_NPROBE, index.nlist // 32)
    return IvfIndex(path, index)


@dataclass(frozen=True)
class IvfIndex:
    """Approximate nearest neighbours from a memory-mapped FAISS IVF file (ids: example ids)."""

    path: Path
    index: object = field(repr=False)  # faiss.IndexIVFScalarQuantizer, read with IO_FLAG_MMAP

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def nearest(self, query: np.ndarray, k: int, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        """As VectorIndex.nearest: the `k` most similar (cosine) stored examples, best first."""
        if not len(self) or k <= 0:
            return []
        q = _unit(np.asarray(query, dtype=np.float32).reshape(1, -1))
        sims, ids = self.index.search(q, min(len(self), k + len(exclude or ())))  # (1, k') each
        found = [(int(i), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0]  # -1: fewer found
        return [(i, s) for i, s in found if i not in (exclude or ())][:k]


def _unit(x: np.ndarray, in_place: bool = False) -> np.ndarray:
    """Rows scaled to unit length (float32): inner product = cosine. `in_place`: `x` (float32, ours
    to change) is scaled where it lies, no second copy (the index build's k-means sample: 108 MB at 300k)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    if in_place and x.flags.writeable:
        x /= norms
        return x
    return x / norms
