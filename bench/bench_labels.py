"""Load test of label saving: N concurrent gradio_client sessions against the launched app.

Launches `python app.py` on a fresh SQLite data dir holding the bundled tweets (no training:
BERTDEMO_BOOTSTRAP=0, so the numbers measure the save path, not a training job next to it),
with one account per session, then lets every session call the `save_label` endpoint in a loop
for `--seconds`. Each session labels its own slice of examples, passing the version it last saw.

Checks, from the database afterwards: every acknowledged save is exactly one history row
(no lost and no duplicated writes: the (example, version) pairs acknowledged equal the
annotator rows stored), and each example's version equals its number of history rows.
Prints p50/p95/max latency of acknowledged saves and ends with one `name=value` line.

    .venv/bin/python bench/bench_labels.py --sessions 20 --seconds 60
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    add_accounts,
    client,
    cpu_seconds,
    db_url,
    examples,
    free_port,
    launch,
    percentiles,
    stop,
    verify_saves,
    wait_ready,
)
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.config import BUNDLED_DATASET, DEFAULT_LABELS  # noqa: E402
from bertdemo.datasets import load_bundled  # noqa: E402
from bertdemo.db import examples as db_examples
from bertdemo.db.engine import init_db, make_engine

log = logging.getLogger("bench_labels")


def prepare(data_dir: Path, sessions: int) -> list[tuple[int, int]]:
    """Import the bundled tweets and one account per session; (id, version) of every example."""
    engine = make_engine(db_url(data_dir))
    init_db(engine)
    with Session(engine) as s, s.begin():
        db_examples.import_examples(s, load_bundled(BUNDLED_DATASET, 2000), "dataset", "dataset", DEFAULT_LABELS)
    engine.dispose()
    add_accounts(data_dir, [f"bench{i:02d}" for i in range(sessions)])
    return examples(data_dir)


def worker(url: str, name: str, rows: list[tuple[int, int]], stop_at: float, acks: list, lat: list,
           errors: Counter, lock: threading.Lock) -> None:
    session = client(url, name)
    versions = dict(rows)
    ids = [i for i, _v in rows]
    k = 0
    while time.time() < stop_at:
        ex_id = ids[k % len(ids)]
        label = DEFAULT_LABELS[k % len(DEFAULT_LABELS)]
        k += 1
        t0 = time.perf_counter()
        try:
            saved = session.predict(ex_id, label, versions[ex_id], api_name="/save_label")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            continue
        dt = time.perf_counter() - t0
        versions[ex_id] = saved["version"]
        with lock:
            acks.append((saved["example_id"], saved["version"], saved["user"]))
            lat.append(dt)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=20, help="concurrent gradio_client sessions")
    p.add_argument("--seconds", type=float, default=60.0, help="how long every session keeps saving")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (database, app log)")
    args = p.parse_args()
    if args.sessions < 1 or args.seconds <= 0:
        p.error("--sessions must be >= 1 and --seconds > 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    data_dir = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    rows = prepare(data_dir, args.sessions)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = launch(data_dir, port, BERTDEMO_BOOTSTRAP="0")
    try:
        wait_ready(url, proc, "bench00")
        ready_cpu = cpu_seconds(proc.pid)
        log.info("app up at %s with %d examples; %d sessions for %.0f s", url, len(rows), args.sessions, args.seconds)
        acks: list = []
        lat: list[float] = []
        errors: Counter = Counter()
        lock = threading.Lock()
        stop_at = time.time() + args.seconds
        threads = [threading.Thread(target=worker, args=(url, f"bench{i:02d}", rows[i::args.sessions], stop_at,
                                                         acks, lat, errors, lock)) for i in range(args.sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        server_cpu = cpu_seconds(proc.pid)
    finally:
        stop(proc)
    lost, duplicated, mismatched = verify_saves(data_dir, acks)
    p50, p95, worst = percentiles(lat)
    print(f"sessions: {args.sessions}, seconds: {args.seconds:.0f}, acknowledged saves: {len(acks):,} "
          f"({len(acks) / args.seconds:.1f}/s), failed calls: {sum(errors.values())}")
    for msg, n in errors.most_common(5):
        print(f"  {n} x {msg}")
    print(f"lost writes: {lost}, duplicated writes: {duplicated}, rows whose version != history rows: {mismatched}")
    client_cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime
    per_save = (server_cpu - ready_cpu) / max(len(acks), 1) * 1000
    print(f"CPU: app server {per_save:.1f} ms per acknowledged save; load-test clients {client_cpu:.1f} s "
          f"(incl. set-up); cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(f"save latency ms: p50 {p50:.1f}, p95 {p95:.1f}, max {worst:.1f}")
    if args.keep:
        print(f"data dir kept: {data_dir}")
    ok = lost == 0 and duplicated == 0 and mismatched == 0 and not errors
    print(f"save_p95_ms={p95:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
