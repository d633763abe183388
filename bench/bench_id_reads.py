"""Reading many ids from SQLite inside the app, alone and beside a thread busy in Python
(db/keysets.py `sorted_ids` against the row-by-row read, `id_array`).

Python's sqlite3 drops the GIL around every row it steps and takes it back after; beside another
thread that runs Python (a background refit, a ranking) every take-back waits, so a row-by-row read
of hundreds of thousands of ids slows by orders of magnitude. `sorted_ids` reads them as one string
joined by the database (group_concat) and splits it in numpy: one step, one take-back.

    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/bench_id_reads.py [--rows 300000]

Builds a scratch database of `--rows` examples (a quarter each of three labels and none), reads the
labelled ids (the "Model disagrees" queue's read, keysets.labelled) both ways, 5 times alone and 3
times beside a busy thread, and prints min / max seconds and the ratio, with the CPU model."""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import cpu_model  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.db import examples, keysets  # noqa: E402
from bertdemo.db.engine import init_db, make_engine  # noqa: E402
from bertdemo.db.examples import NewExample  # noqa: E402
from bertdemo.db.models import Example  # noqa: E402

LABELS = ("negative", "neutral", "positive")


def build(path: Path, n: int):
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    rng = np.random.default_rng(0)
    labels = [(LABELS + (None,))[k] for k in rng.integers(0, 4, n)]
    with Session(engine) as s, s.begin():
        examples.import_examples(s, [NewExample(f"tweet number {i}", f"tweet number {i}", lab)
                                     for i, lab in enumerate(labels)], "dataset", "dataset", LABELS)
    return engine


def row_by_row(s: Session) -> np.ndarray:
    parts = [keysets.id_array(s, select(Example.id).where(Example.label == lab)) for lab in LABELS]
    return np.sort(np.concatenate(parts))


def one_string(s: Session) -> np.ndarray:
    return np.sort(np.concatenate([keysets.sorted_ids(s, select(Example.id).where(Example.label == lab))
                                   for lab in LABELS]))


def timed(engine, fn, reps: int) -> tuple[float, float]:
    took = []
    for _ in range(reps):
        with Session(engine) as s:
            t = time.perf_counter()
            fn(s)
            took.append(time.perf_counter() - t)
    return min(took), max(took)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=300_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = build(Path(tmp) / "ids.sqlite3", args.rows)
        with Session(engine) as s:
            ids = one_string(s)
            assert np.array_equal(ids, row_by_row(s))
        rows = {"alone": {}, "beside a busy thread": {}}
        rows["alone"] = {name: timed(engine, fn, 5) for name, fn in (("rows", row_by_row), ("string", one_string))}
        stop = threading.Event()

        def busy() -> None:
            x = 0
            while not stop.is_set():
                x += 1

        worker = threading.Thread(target=busy, daemon=True)
        worker.start()
        try:
            rows["beside a busy thread"] = {name: timed(engine, fn, 3)
                                            for name, fn in (("rows", row_by_row), ("string", one_string))}
        finally:
            stop.set()
            worker.join()
    cpu = cpu_model()
    print(f"{len(ids):,} labelled ids of {args.rows:,} examples, SQLite")
    print("| condition | row by row (id_array), s | one string (sorted_ids), s | ratio | CPU |")
    print("|---|---|---|---|---|")
    for cond, r in rows.items():
        a, b = r["rows"], r["string"]
        print(f"| {cond} | {a[0]:.3f}-{a[1]:.3f} | {b[0]:.3f}-{b[1]:.3f} | {a[0] / b[0]:.0f}x | {cpu} |")


if __name__ == "__main__":
    main()
