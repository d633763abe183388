"""Similar examples at corpus scale: which vector index to serve them from, by measurement.

Builds N synthetic sentence embeddings (default 300k x 384) from real ones: a version's
embeddings.npz (--embeddings, else the newest under data/runtime/models/*/, else ~5k bundled tweets
encoded once with the packaged model), each row a real vector plus small Gaussian noise (per-row
scale 0.02-0.06 per dimension: cosine ~0.65-0.93 to its source, so neighbourhoods overlap the way
near-duplicate tweets do), unit length. Queries are stored rows plus a little noise.

Per engine: build time, recall@10 against exact float32 brute force, single-query p50/p90 at 1 and
2 threads, the file's size, and what a second process pays to open the file and query it
(private memory vs file pages shared through the page cache: `RssAnon` / `RssFile`).

    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/bench_vectors.py [--n 300000] [--queries 200]
    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/bench_vectors.py --search [--n 300000]

sqlite-vec needs SQLite's extension loading, which this Python's sqlite3 lacks: it is measured
through apsw (bench only, `pip install apsw==3.54.1.0`). --search times the Annotate search queue
(db/search.py) at N rows: LIKE scan vs SQLite FTS5 trigram / PostgreSQL pg_trgm.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from benchlib import cpu_model
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parent.parent
K = 10
TIME_BUDGET_S = 30  # per engine and thread count
Search = Callable[[np.ndarray, int], np.ndarray]  # (query (d,), k) -> row numbers, best first


@dataclass(frozen=True)
class Built:
    search: Search
    file: Path | None  # the index on disk (None: memory only)
    build_s: float
    note: str = ""


# --------------------------------------------------------------------------- the data
def base_vectors(path: Path | None) -> tuple[np.ndarray, str]:
    """Real sentence embeddings to make the synthetic corpus from, and where they came from."""
    found = [path] if path else sorted(REPO.glob("data/runtime/models/*/embeddings.npz"),
                                       key=lambda p: p.stat().st_mtime)
    if found:
        with np.load(found[-1]) as data:
            return data["vectors"].astype(np.float32), f"{found[-1]} ({len(data['ids'])} rows)"
    import pandas as pd

    from bertdemo.config import BUNDLED_DATASET, packaged_model_path
    from bertdemo.model.classifier import Classifier
    from bertdemo.text import clean_text

    texts = [clean_text(t) for t in pd.read_csv(BUNDLED_DATASET, keep_default_na=False)["text"].head(5000)]
    clf = Classifier.load(packaged_model_path(), ("negative", "neutral", "positive"))
    return clf.embed(texts).astype(np.float32), f"{len(texts)} bundled tweets encoded with the packaged model"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def synthetic(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """(n, d) unit float32 rows: real vectors plus per-row Gaussian noise, made in slices (bounded memory)."""
    rng = np.random.default_rng(seed)
    base = unit(base)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        scale = rng.uniform(0.02, 0.06, size=(m, 1)).astype(np.float32)
        rows = base[rng.integers(0, len(base), m)]
        out[start:start + m] = unit(rows + scale * rng.standard_normal(rows.shape, dtype=np.float32))
    return out


def exact_top(x: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(q, k) row numbers of the exact float32 top-k: the ground truth."""
    sims = queries @ x.T  # (q, n)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1), 1)


# --------------------------------------------------------------------------- the candidates
def _brute(matrix: np.ndarray) -> Search:
    def search(q: np.ndarray, k: int) -> np.ndarray:
        sims = matrix @ q  # (n,): float16 rows are upcast slice by slice by numpy, no BLAS
        top = np.argpartition(-sims, k - 1)[:k]
        return top[np.argsort(-sims[top])]
    return search


def numpy_f32_memory(x: np.ndarray, folder: Path) -> Built:
    return Built(_brute(x), None, 0.0, "today's VectorIndex: a private float32 copy per process")


def numpy_npy_memmap(x: np.ndarray, folder: Path, dtype: type = np.float32) -> Built:
    start = time.perf_counter()
    path = folder / f"vectors-{np.dtype(dtype).name}.npy"
    np.save(path, x.astype(dtype))
    return Built(_brute(np.load(path, mmap_mode="r")), path, time.perf_counter() - start)


def faiss_index(kind: str) -> Callable[[np.ndarray, Path], Built]:
    def build(x: np.ndarray, folder: Path) -> Built:
        import faiss

        start = time.perf_counter()
        path = folder / f"faiss-{kind.split('-')[0]}.index"  # the ef variants share one graph
        if not path.exists():
            faiss.write_index(_faiss_build(kind, x), str(path))
            _BUILD_S[path] = time.perf_counter() - start
        index = faiss.read_index(str(path), _faiss_flags(kind))
        if kind.startswith("hnsw"):
            index.hnsw.efSearch = int(kind.split("-")[1]) if "-" in kind else 64
        elif kind == "ivf":
            index.nprobe = 32

        def search(q: np.ndarray, k: int) -> np.ndarray:
            return index.search(q.reshape(1, -1), k)[1][0]
        return Built(search, path, _BUILD_S[path])
    return build


_BUILD_S: dict[Path, float] = {}


def _faiss_build(kind: str, x: np.ndarray):
    import faiss

    d = x.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind.startswith("hnsw"):
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    else:  # "ivf": 1024 lists (~2 sqrt(N)), trained on a 50k sample
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 1024, faiss.METRIC_INNER_PRODUCT)
        index.train(x[np.random.default_rng(1).choice(len(x), min(len(x), 50_000), replace=False)])
    index.add(x)
    return index


def _faiss_flags(kind: str) -> int:
    """Map instead of read: the inverted lists of an IVF index, the vectors (flat codes) of the others."""
    import faiss

    return faiss.IO_FLAG_MMAP if kind == "ivf" else faiss.IO_FLAG_MMAP_IFC


def usearch_index(dtype: str, ef: int = 64) -> Callable[[np.ndarray, Path], Built]:
    def build(x: np.ndarray, folder: Path) -> Built:
        from usearch.index import Index

        start = time.perf_counter()
        path = folder / f"usearch-{dtype}.usearch"  # the ef variants share one graph
        if not path.exists():
            index = Index(ndim=x.shape[1], metric="ip", dtype=dtype, connectivity=16, expansion_add=128)
            index.add(np.arange(len(x), dtype=np.uint64), x, threads=2)
            index.save(str(path))
            _BUILD_S[path] = time.perf_counter() - start
        view = Index.restore(str(path), view=True)  # memory-mapped, read-only
        view.expansion_search = ef

        def search(q: np.ndarray, k: int) -> np.ndarray:
            return np.asarray(view.search(q, k, threads=1).keys, dtype=np.int64)
        return Built(search, path, _BUILD_S[path])
    return build


def sqlite_vec_table(x: np.ndarray, folder: Path) -> Built:
    import apsw
    import sqlite_vec

    start = time.perf_counter()
    path = folder / "vec.sqlite3"
    con = apsw.Connection(str(path))
    con.enable_load_extension(True)
    con.load_extension(sqlite_vec.loadable_path())
    con.execute(f"CREATE VIRTUAL TABLE vec USING vec0(embedding float[{x.shape[1]}])")
    with con:
        con.executemany("INSERT INTO vec(rowid, embedding) VALUES (?, ?)",
                        ((i, x[i].tobytes()) for i in range(len(x))))

    def search(q: np.ndarray, k: int) -> np.ndarray:
        rows = con.execute("SELECT rowid FROM vec WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                           (q.astype(np.float32).tobytes(), k)).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)
    return Built(search, path, time.perf_counter() - start, "brute force (vec0 has no ANN in 0.1.x)")


def _version(x: np.ndarray, folder: Path) -> Path:
    """A version folder holding `x` as its embeddings file (ids = row numbers), written once."""
    from bertdemo.model import vectors

    version = folder / "version"
    if not (version / vectors.VECTORS_FILE).exists():
        vectors.save(version / vectors.VECTORS_FILE, np.arange(len(x)), x)
    return version


def vector_index_today(x: np.ndarray, folder: Path) -> Built:
    """VectorIndex.nearest as served without an index file: brute force over the float16 file."""
    from bertdemo.model import vectors

    path = _version(x, folder) / vectors.VECTORS_FILE
    return Built(_ids_of(vectors.load(path).nearest), path, 0.0, "brute force, float16 memory-mapped")


def chosen_index(x: np.ndarray, folder: Path) -> Built:
    """What the app serves from: vectors.build_index / open_index (FAISS IVF, float16 codes)."""
    from bertdemo.model import vectors

    version = _version(x, folder)
    start = time.perf_counter()
    path = vectors.build_index(version)
    return Built(_ids_of(vectors.open_index(version).nearest), path, time.perf_counter() - start)


def _ids_of(nearest: Callable) -> Search:
    return lambda q, k: np.asarray([i for i, _sim in nearest(q, k)], dtype=np.int64)


CANDIDATES: dict[str, Callable[[np.ndarray, Path], Built]] = {
    "VectorIndex.nearest, no index file (f16 .npz memmap)": vector_index_today,
    "vectors.build_index: faiss IVF SQfp16 (mmap) [chosen]": chosen_index,
    "numpy f32 in memory": numpy_f32_memory,
    "numpy f32 .npy memmap": numpy_npy_memmap,
    "numpy f16 .npy memmap": lambda x, f: numpy_npy_memmap(x, f, np.float16),
    "faiss IndexFlatIP (mmap)": faiss_index("flat"),
    "faiss IVFFlat 1024, nprobe 32 (mmap)": faiss_index("ivf"),
    "faiss HNSWFlat M32, ef 64": faiss_index("hnsw-64"),
    "faiss HNSWFlat M32, ef 128": faiss_index("hnsw-128"),
    "usearch HNSW f16, ef 64 (view)": usearch_index("f16"),
    "usearch HNSW f16, ef 128 (view)": usearch_index("f16", 128),
    "usearch HNSW i8 (view)": usearch_index("i8"),
    "sqlite-vec vec0 (apsw)": sqlite_vec_table,
}


# --------------------------------------------------------------------------- measuring
def timings(search: Search, queries: np.ndarray, threads: int) -> tuple[float, float]:
    """p50, p90 of one query in ms, with `threads` BLAS / OpenMP threads."""
    import faiss

    faiss.omp_set_num_threads(threads)
    with threadpool_limits(threads):
        for q in queries[:5]:
            search(q, K)  # warm: page in a mapped file, JIT-free but caches cold
        ms: list[float] = []
        budget = time.perf_counter() + TIME_BUDGET_S
        for q in queries:
            t = time.perf_counter()
            search(q, K)
            ms.append((time.perf_counter() - t) * 1000)
            if len(ms) >= 20 and t > budget:  # a slow engine: 20+ queries are enough for p50/p90
                break
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 90))


def recall(search: Search, queries: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(search(q, K).tolist()) & set(t.tolist())) / K for q, t in zip(queries, truth)]))


def probe(name: str, path: str, d: int) -> None:
    """In a fresh process: open the index file, query it 20 times, print private vs shared memory."""
    def status() -> dict[str, float]:
        lines = Path("/proc/self/status").read_text().splitlines()
        return {k: int(v.split()[0]) / 1024 for k, v in (ln.split(":", 1) for ln in lines)
                if k in ("RssAnon", "RssFile")}
    _import(name)  # the libraries' own pages are not the index's
    before = status()
    t = time.perf_counter()
    search = _open(name, Path(path))
    open_ms = (time.perf_counter() - t) * 1000
    rng = np.random.default_rng(5)
    for _ in range(20):
        search(unit(rng.standard_normal(d, dtype=np.float32)), K)
    after = status()
    print(json.dumps({"open_ms": open_ms, **{k: after[k] - before[k] for k in after}}))


def _import(name: str) -> None:
    for word, module in (("faiss", "faiss"), ("VectorIndex", "bertdemo.model.vectors"), ("usearch", "usearch.index"), ("sqlite-vec", "apsw")):
        if word in name:
            __import__(module)


def _open(name: str, path: Path) -> Search:
    from bertdemo.model import vectors

    if "VectorIndex" in name:
        return _ids_of(vectors.load(path).nearest)
    if "build_index" in name:
        return _ids_of(vectors.open_index(path.parent).nearest)
    if "numpy" in name:
        return _brute(np.load(path, mmap_mode="r"))
    if "faiss" in name:
        import faiss
        index = faiss.read_index(str(path), _faiss_flags("ivf" if "IVF" in name else "flat"))
        return lambda q, k: index.search(q.reshape(1, -1), k)[1][0]
    if "usearch" in name:
        from usearch.index import Index
        view = Index.restore(str(path), view=True)
        return lambda q, k: view.search(q, k).keys
    import apsw
    import sqlite_vec
    con = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    con.enable_load_extension(True)
    con.load_extension(sqlite_vec.loadable_path())
    return lambda q, k: con.execute("SELECT rowid FROM vec WHERE embedding MATCH ? AND k = ?",
                                    (q.tobytes(), k)).fetchall()


def second_process(name: str, built: Built, d: int) -> dict[str, float]:
    if built.file is None:
        return {}
    out = subprocess.run([sys.executable, __file__, "--probe", name, str(built.file), str(d)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _shared(probe_out: dict[str, float], size_mb: float) -> str:
    """Whether a second process maps the file (its private memory well under the index's size)."""
    return "yes" if probe_out and probe_out["RssAnon"] < 0.25 * size_mb else "no"


def run_vectors(args: argparse.Namespace) -> None:
    base, source = base_vectors(args.embeddings)
    x = synthetic(base, args.n)
    rng = np.random.default_rng(7)
    queries = unit(x[rng.integers(0, len(x), args.queries)] +
                   0.02 * rng.standard_normal((args.queries, x.shape[1]), dtype=np.float32))
    truth = exact_top(x, queries, K)
    print(f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {cpu_model()}, {os.cpu_count()} CPUs; "
          f"{len(x):,} x {x.shape[1]} vectors from {source}; {args.queries} queries, k={K}")
    print("| engine | build s | recall@10 | p50 / p90 ms, 1 thread | p50 / p90 ms, 2 threads | file MB "
          "| 2nd process: open ms, private MB, shared file MB | mapped, shared |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-vectors-") as tmp:
        for name, make in CANDIDATES.items():
            if args.only and not any(o.lower() in name.lower() for o in args.only):
                continue
            try:
                built = make(x, Path(tmp))
            except ImportError as exc:  # usearch, sqlite-vec, apsw: bench-only candidates
                print(f"| {name} | not installed ({exc.name}) |||||||")
                continue
            r = recall(built.search, queries, truth)
            t1, t2 = timings(built.search, queries, 1), timings(built.search, queries, 2)
            size = built.file.stat().st_size / 2**20 if built.file else x.nbytes / 2**20
            p = second_process(name, built, x.shape[1])
            second = (f"{p['open_ms']:.0f}, {p['RssAnon']:.0f}, {p['RssFile']:.0f}" if p
                      else f"-, {x.nbytes / 2**20:.0f} (a copy each)")
            print(f"| {name} | {built.build_s:.1f} | {r:.3f} | {t1[0]:.1f} / {t1[1]:.1f} | {t2[0]:.1f} / {t2[1]:.1f} "
                  f"| {size:.0f} | {second} | {_shared(p, size)} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300_000, help="how many vectors (or rows for --search)")
    ap.add_argument("--queries", type=int, default=200, help="how many timed queries per engine")
    ap.add_argument("--embeddings", type=Path, help="an embeddings.npz to start from (default: newest version's)")
    ap.add_argument("--only", nargs="*", help="engines whose name contains one of these words")
    ap.add_argument("--search", action="store_true", help="time text search (LIKE vs FTS5 / pg_trgm) instead")
    ap.add_argument("--db-url", help="with --search: a PostgreSQL URL to time too (an empty database)")
    ap.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)  # internal: the second process
    args = ap.parse_args()
    if args.probe:
        probe(args.probe[0], args.probe[1], int(args.probe[2]))
    elif args.search:
        from bench_search import run_search

        run_search(args.n, args.db_url)
    else:
        run_vectors(args)


if __name__ == "__main__":
    main()
