"""Mixed load: gradio_client sessions calling /predict with varied tweets while others call
/save_label, against the launched app, for a fixed time.

Launches `python app.py` on a fresh data dir with one account per session (the shared-link
setting: everyone signs in). The data: the bundled tweets with a trained version. Either
`--data-dir DIR` names a data dir that has one (benchlib.copy_data_dir: its SQLite database is
copied into the fresh dir with SQLite's online backup, its version folders hard-linked, since a
version's stored path is relative to the data dir),
or the app's first start imports the bundled tweets and fine-tunes version 1 for
`--initial-epochs` (default 0.05 epoch, about a minute here: the numbers measure serving, not
model quality). The load starts once version 1 serves and its scores are stored.

Predict sessions send bundled tweets in random order; save sessions each label their own slice
of examples, passing the version they last saw. Afterwards the database is checked: every
acknowledged save is exactly one `annotator` history row (lost = acknowledged but not stored,
dup = stored but not acknowledged or stored twice) and every example's version equals its
number of history rows. Prints calls, errors, p50/p95/max latency and throughput per kind, and
ends with one `name=value` line.

    .venv/bin/python bench/bench_load.py --clients-predict 20 --clients-save 20 --seconds 60
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    add_accounts,
    client,
    copy_data_dir,
    cpu_seconds,
    db_url,
    examples,
    free_port,
    last_event_id,
    launch,
    percentiles,
    serving_and_scored,
    stop,
    verify_saves,
    wait_ready,
)
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.config import BUNDLED_DATASET, DEFAULT_LABELS  # noqa: E402
from bertdemo.datasets import load_bundled  # noqa: E402
from bertdemo.db.engine import make_engine
from bertdemo.db.models import LabelEvent

log = logging.getLogger("bench_load")


@dataclass
class Tally:
    """Calls of one kind, shared by its sessions."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def failed(self, what: str) -> None:
        with self.lock:
            self.errors[what[:100]] += 1


def predict_worker(url: str, user: str, texts: list[str], seed: int, stop_at: float, tally: Tally) -> None:
    session = client(url, user)
    rng = random.Random(seed)
    while time.time() < stop_at:
        text = rng.choice(texts)
        t0 = time.perf_counter()
        try:
            out = session.predict(text, api_name="/predict")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            tally.failed(f"{type(exc).__name__}: {exc}")
            continue
        if not isinstance(out, dict) or out.get("label") not in DEFAULT_LABELS:
            tally.failed(f"unexpected answer: {out!r}")
            continue
        tally.ok(time.perf_counter() - t0)


def save_worker(url: str, user: str, rows: list[tuple[int, int]], stop_at: float, tally: Tally,
                acks: list) -> None:
    session = client(url, user)
    versions = dict(rows)
    k = 0
    while time.time() < stop_at:
        ex_id = rows[k % len(rows)][0]
        label = DEFAULT_LABELS[k % len(DEFAULT_LABELS)]
        k += 1
        t0 = time.perf_counter()
        try:
            saved = session.predict(ex_id, label, versions[ex_id], api_name="/save_label")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            tally.failed(f"{type(exc).__name__}: {exc}")
            continue
        tally.ok(time.perf_counter() - t0)
        versions[ex_id] = saved["version"]
        with tally.lock:
            acks.append((saved["example_id"], saved["version"], saved["user"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients-predict", type=int, default=20, help="sessions calling /predict")
    p.add_argument("--clients-save", type=int, default=20, help="sessions calling /save_label")
    p.add_argument("--seconds", type=float, default=60.0, help="how long the load runs")
    p.add_argument("--data-dir", type=Path, help="a data dir with a trained version (its database is copied)")
    p.add_argument("--initial-epochs", type=float, default=0.05,
                   help="without --data-dir: length of the first-start fine-tune (default 0.05)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (database, app log)")
    args = p.parse_args()
    if args.clients_predict < 0 or args.clients_save < 0 or args.clients_predict + args.clients_save == 0:
        p.error("--clients-predict and --clients-save must be >= 0, and not both 0")
    if args.seconds <= 0 or args.initial_epochs <= 0:
        p.error("--seconds and --initial-epochs must be > 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    data_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    if args.data_dir:
        copy_data_dir(args.data_dir.expanduser().resolve(), data_dir)
    predictors = [f"bench-p{i:02d}" for i in range(args.clients_predict)]
    savers = [f"bench-s{i:02d}" for i in range(args.clients_save)]
    add_accounts(data_dir, predictors + savers)
    texts = [r.raw_text for r in load_bundled(BUNDLED_DATASET, 2000)]
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    t_launch = time.time()
    proc = launch(data_dir, port, BERTDEMO_INITIAL_EPOCHS=str(args.initial_epochs))
    try:
        wait_ready(url, proc, (predictors + savers)[0], timeout=900,
                   probe=lambda c: c.predict("hello", api_name="/predict"))  # version 1 serves
        deadline = time.time() + 600
        while not serving_and_scored(data_dir):  # the start's re-scoring would compete for the CPU
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit("the active version's scores were not stored within 10 min")
            time.sleep(2)
        rows = examples(data_dir)
        first_event = last_event_id(data_dir)
        log.info("app up at %s after %.0f s: %d examples; %d predict + %d save sessions for %.0f s", url,
                 time.time() - t_launch, len(rows), len(predictors), len(savers), args.seconds)
        load_before = os.getloadavg()
        ready_cpu = cpu_seconds(proc.pid)
        pred, save = Tally(), Tally()
        acks: list = []
        stop_at = time.time() + args.seconds
        threads = [threading.Thread(target=predict_worker, args=(url, u, texts, i, stop_at, pred))
                   for i, u in enumerate(predictors)]
        threads += [threading.Thread(target=save_worker, args=(url, u, rows[i::len(savers)], stop_at, save, acks))
                    for i, u in enumerate(savers)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        server_cpu = cpu_seconds(proc.pid) - ready_cpu
        load_after = os.getloadavg()
    finally:
        stop(proc)

    lost, duplicated, mismatched = verify_saves(data_dir, acks, first_event)
    engine = make_engine(db_url(data_dir))
    with Session(engine) as s:
        history_rows = s.scalar(select(func.count()).select_from(LabelEvent).where(
            LabelEvent.source == "annotator", LabelEvent.id > first_event)) or 0
    engine.dispose()
    stats = {}
    print(f"\n{'kind':<8} {'clients':>7} {'calls':>8} {'errors':>7} {'per s':>7} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'max ms':>8}")
    for kind, n, tally in (("predict", len(predictors), pred), ("save", len(savers), save)):
        p50, p95, worst = percentiles(tally.latencies)
        calls = len(tally.latencies) + sum(tally.errors.values())
        stats[kind] = (p50, p95, len(tally.latencies) / elapsed)
        print(f"{kind:<8} {n:>7} {calls:>8,} {sum(tally.errors.values()):>7} {len(tally.latencies) / elapsed:>7.1f} "
              f"{p50:>8.1f} {p95:>8.1f} {worst:>8.1f}")
    errors = sum(pred.errors.values()) + sum(save.errors.values())
    for msg, n in (pred.errors + save.errors).most_common(5):
        print(f"  {n} x {msg}")
    total_ok = len(pred.latencies) + len(save.latencies)
    print(f"\nthroughput: {total_ok / elapsed:.1f} answered calls/s over {elapsed:.1f} s")
    print(f"writes: {len(acks):,} acknowledged saves, {history_rows:,} annotator history rows; lost {lost}, "
          f"duplicated {duplicated}, rows whose version != history rows {mismatched}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU: app server {server_cpu:.1f} s ({server_cpu / elapsed:.2f} cores, "
          f"{server_cpu / max(total_ok, 1) * 1000:.1f} ms per answered call); load-test clients "
          f"{usage.ru_utime + usage.ru_stime:.1f} s (incl. set-up); cores: {os.cpu_count()}; load average "
          f"before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)")
    if args.keep:
        print(f"data dir kept: {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    ok = errors == 0 and lost == 0 and duplicated == 0 and mismatched == 0 and len(acks) == history_rows
    print(f"predict_p50_ms={stats['predict'][0]:.1f} predict_p95_ms={stats['predict'][1]:.1f} "
          f"predict_per_s={stats['predict'][2]:.1f} save_p50_ms={stats['save'][0]:.1f} "
          f"save_p95_ms={stats['save'][1]:.1f} save_per_s={stats['save'][2]:.1f} errors={errors} lost={lost} "
          f"dup={duplicated}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
