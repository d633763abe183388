"""A team labelling one queue at once: N annotators with accounts, each at a human pace (next_item,
about `--pace` seconds to decide, save_label), through the HTTP API of the launched app.

Before work distribution every person was handed the head of the queue and three saves in four
were refused as conflicts (issue 11: 126 saves, 354 conflicts, p95 464 ms for 20 people over 60 s).
Reports saves, conflicts (refused because someone else changed the row), failed calls, lost or
duplicated writes (from the database afterwards), save latency, and, with `--overlap k`, how many
different people labelled each item (never more than k; exactly k once an item is finished).

    .venv/bin/python bench/bench_team.py --annotators 20 --seconds 60 [--overlap 2]
"""

from __future__ import annotations

import argparse
import logging
import random
import sqlite3
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
    db_url,
    free_port,
    last_event_id,
    launch,
    percentiles,
    stop,
    verify_saves,
    wait_ready,
)
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.config import BUNDLED_DATASET, DEFAULT_LABELS  # noqa: E402
from bertdemo.datasets import load_bundled  # noqa: E402
from bertdemo.db import examples as db_examples  # noqa: E402
from bertdemo.db.engine import init_db, make_engine  # noqa: E402

log = logging.getLogger("bench_team")
QUEUE, SEARCH = "unlabeled", ""  # the bundled tweets, imported without their labels: one queue for the team


def prepare(data_dir: Path, annotators: int) -> None:
    """The bundled tweets as unlabelled examples, one account per annotator and an admin."""
    engine = make_engine(db_url(data_dir))
    init_db(engine)
    rows = [db_examples.NewExample(r.text, r.raw_text) for r in load_bundled(BUNDLED_DATASET, 2000)]
    with Session(engine) as s, s.begin():
        db_examples.import_examples(s, rows, "import", "bench", DEFAULT_LABELS)
    engine.dispose()
    add_accounts(data_dir, [f"bench{i:02d}" for i in range(annotators)])
    add_accounts(data_dir, ["boss"], role="admin")


def annotator(url: str, name: str, pace: float, stop_at: float, acks: list, lat: list, out: Counter,
              lock: threading.Lock) -> None:
    session = client(url, name)
    rng = random.Random(name)
    seen: list[int] = []
    while time.time() < stop_at:
        try:
            item = session.predict(QUEUE, SEARCH, seen[-500:], api_name="/next_item")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                out["failed next_item: " + str(exc)[:60]] += 1
            continue
        if item is None:
            with lock:
                out["queue done for this person"] += 1
            return
        time.sleep(rng.uniform(0.5, 1.5) * pace)  # reading and deciding
        t0 = time.perf_counter()
        try:
            saved = session.predict(item["id"], rng.choice(["negative", "neutral", "positive"]), item["version"],
                                    api_name="/save_label")
        except Exception as exc:  # noqa: BLE001 - a conflict, or a failure: both counted
            kind = "conflicts" if "changed by" in str(exc) or "after you loaded it" in str(exc) else "failed save"
            with lock:
                out[kind] += 1
            seen.append(item["id"])
            continue
        with lock:
            acks.append((saved["example_id"], saved["version"], saved["user"]))
            lat.append(time.perf_counter() - t0)
            out["saves"] += 1
        seen.append(item["id"])


def people_per_item(data_dir: Path, since_event: int) -> Counter:
    con = sqlite3.connect(data_dir / "bertdemo.sqlite3")
    try:
        rows = con.execute("SELECT example_id, count(DISTINCT user) FROM label_events WHERE source = 'annotator' "
                           "AND id > ? GROUP BY example_id", (since_event,)).fetchall()
    finally:
        con.close()
    return Counter(n for _ex, n in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotators", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--pace", type=float, default=1.5, help="mean seconds a person takes per item")
    p.add_argument("--overlap", type=int, default=1, help="annotations per item (set by an admin first)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-team-"))
    prepare(data_dir, args.annotators)
    since = last_event_id(data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = launch(data_dir, port, BERTDEMO_BOOTSTRAP="0")
    try:
        wait_ready(url, proc, "bench00")
        client(url, "boss").predict(args.overlap, api_name="/set_annotations_per_item")
        acks, lat, out, lock = [], [], Counter(), threading.Lock()
        stop_at = time.time() + args.seconds
        threads = [threading.Thread(target=annotator, args=(url, f"bench{i:02d}", args.pace, stop_at, acks, lat,
                                                            out, lock)) for i in range(args.annotators)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop(proc)
    lost, duplicated, mismatched = verify_saves(data_dir, acks, since)
    p50, p95, worst = percentiles(lat)
    per_item = people_per_item(data_dir, since)
    attempts = out["saves"] + out["conflicts"]
    print("| annotators | seconds | overlap | saves | conflicts | conflict share | failed | lost | duplicated | "
          "save p50 / p95 / max ms | people per item |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.annotators} | {args.seconds:.0f} | {args.overlap} | {out['saves']} | {out['conflicts']} | "
          f"{out['conflicts'] / max(attempts, 1):.1%} | {out['failed save'] + sum(v for k, v in out.items() if k.startswith('failed next'))} | "
          f"{lost} | {duplicated} | {p50:.0f} / {p95:.0f} / {worst:.0f} | "
          f"{', '.join(f'{n} people: {c}' for n, c in sorted(per_item.items()))} |")
    too_many = sum(c for n, c in per_item.items() if n > args.overlap)
    print(f"conflict_share={out['conflicts'] / max(attempts, 1):.4f} save_p95_ms={p95:.1f} lost={lost} "
          f"dup={duplicated} items_over_overlap={too_many}")
    return 0 if (lost == duplicated == mismatched == too_many == 0) else 1


if __name__ == "__main__":
    raise SystemExit(main())
