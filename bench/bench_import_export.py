"""Import and export at corpus sizes (issue 26, item 1): the synthetic corpus of bench_scale.py (the
bundled tweets with small edits, unique, half unlabelled) imported through ImportExport.import_csv
and exported through export_csv, on SQLite and PostgreSQL: seconds and peak RSS of each, each in a
fresh process. "old" rows run the code path before streaming (the CSV read whole, the rows added as
ORM objects; the export built as one DataFrame), kept here for the comparison.

    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/bench_import_export.py --sizes 100000 300000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_scale import Database, write_corpus  # the lead's corpus: the same rows
from benchlib import cpu_model


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def old_import(io, path: str) -> str:
    """The import before streaming: read_csv whole (200,000 rows at most), keys in a set, ORM rows."""
    from sqlalchemy.orm import Session

    from bertdemo.datasets import MAX_ROWS, CSVError, read_csv
    from bertdemo.db import examples
    from bertdemo.db.examples import NewExample
    from bertdemo.db.models import text_key
    from bertdemo.text import try_clean

    try:
        table = read_csv(path, 2**40, max_rows=MAX_ROWS)
    except CSVError as exc:
        return f"refused: {exc}"
    frame, seen, rows = table.frame, set(), []
    for raw, lab in zip(frame[table.text_column], frame["label"]):
        cleaned, _problem = try_clean(raw, io.settings.max_chars)
        lab = lab.strip().lower()
        if cleaned is None or (lab and lab not in io.labels) or text_key(cleaned) in seen:
            continue
        seen.add(text_key(cleaned))
        rows.append(NewExample(text=cleaned, raw_text=raw, label=lab or None))
    with Session(io.engine) as s, s.begin():
        res = examples.import_examples(s, rows, "import", "local", io.labels)
    return f"added {res.added:,}"


def old_export(io, dest: Path) -> str:
    """The export before streaming (tests.support.old_export: every row in one DataFrame, then write_csv)."""
    from tests.support import old_export as build

    build(io, dest)
    return f"{sum(1 for _ in open(dest, encoding='utf-8')) - 1:,} lines"


def watch_writes(engine) -> list[float]:
    """Seconds of each statement that writes examples or their history (on SQLite: what holds the
    database's write lock, which other people's label saves wait for)."""
    from sqlalchemy import event

    spans: list[float] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, _cur, _stmt, *_rest) -> None:
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, _cur, stmt, *_rest) -> None:
        if stmt.lstrip().upper().startswith(("INSERT INTO EXAMPLES", "INSERT INTO LABEL_EVENTS")):
            spans.append(time.perf_counter() - conn.info["t0"])

    return spans


def one(op: str, url: str, csv_path: str, data_dir: str) -> dict:
    """Run one operation in this (fresh) process: seconds, RSS before, peak RSS."""
    from bertdemo.actions.notes import Notes
    from bertdemo.actions.transfer import ImportExport
    from bertdemo.config import Settings
    from bertdemo.db import bulk_io
    from bertdemo.services import Services

    services = Services.create(Settings(serving="bf16", data_dir=Path(data_dir), bootstrap=False, db_url=url))
    io = ImportExport(services, Notes(services))
    bulk_io.USE_COPY = op != "import (no COPY)"
    writes = watch_writes(services.engine)
    base = rss_mb()
    t0 = time.perf_counter()
    if op.startswith("import"):
        result = io.import_csv(csv_path, None).summary()
    elif op == "old import":
        result = old_import(io, csv_path)
    elif op == "export":
        out = Path(io.export_csv(None))
        result = f"{out.stat().st_size / 2**20:.1f} MB file"
    else:
        result = old_export(io, Path(data_dir) / "old.csv")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"op": op, "s": round(seconds, 2), "rss_before_mb": round(base), "peak_mb": round(peak),
            "writes_s": round(sum(writes), 2), "result": result}


def run(op: str, db: Database, csv_path: Path, data_dir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", op, "--url", db.url, "--csv", str(csv_path),
                          "--data-dir", str(data_dir)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{op} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    ap.add_argument("--old", action="store_true", help="also run the old (in-memory) paths")
    ap.add_argument("--one"), ap.add_argument("--url"), ap.add_argument("--csv"), ap.add_argument("--data-dir")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.url, args.csv, args.data_dir)))
        return
    print(f"CPU: {cpu_model()}", flush=True)
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            csv_path = Path(tmp) / f"corpus_{n}.csv"
            write_corpus(csv_path, n, set())
            print(f"{n:,} rows: {csv_path.stat().st_size / 2**20:.1f} MB", flush=True)
            for kind in args.backends:
                plan = [("import", "export", *(["old export"] if args.old else []))]
                if args.old and kind == "sqlite" and n <= 200_000:  # the old path refused more than 200,000 rows
                    plan.append(("old import",))
                if kind == "postgresql":
                    plan.append(("import (no COPY)",))
                for ops in plan:
                    data_dir = Path(tempfile.mkdtemp(dir=tmp))
                    db = Database.create(kind, data_dir)
                    try:
                        table += [{"n": n, "db": kind, **run(op, db, csv_path, data_dir)} for op in ops]
                    finally:
                        db.drop()
    print("\n| rows | database | operation | seconds | of which INSERTs into examples | RSS before | peak RSS | result |"
          "\n|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['n']:,} | {r['db']} | {r['op']} | {r['s']} | {r['writes_s']} | {r['rss_before_mb']} MB "
              f"| {r['peak_mb']} MB | {r['result']} |")


if __name__ == "__main__":
    main()
