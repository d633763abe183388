"""A team labelling one queue at once: N annotators, each at a human pace (next_item, about `--pace`
seconds to decide, save_label), through the HTTP API of the launched app.

Two ways a team reaches the app (`--mode`): `accounts`, one annotator account per person, signed
in; `guests`, no accounts at all (a shared link as most teams first use it), so each gradio_client
session is a guest of its own (bertdemo.ui.common.user_of). Each person is one gradio_client.Client,
made before the timed loop and reused for every call (its session, its SSL context), as a
browser keeps its connection.

Two queues (`--queue`): `unlabeled`, the bundled tweets imported without labels (no model needed);
`uncertain`, the bundled tweets with a trained version 1 and its stored scores (the queue is
ranked by their entropy). For `uncertain`, `--data-dir DIR` names a data dir that has such a
version (see `--prepare`); each run copies its SQLite file (SQLite's online backup) and links its
model folders into a fresh temporary dir, so one training serves every run.

Before work distribution every person was handed the head of the queue and three saves in four
were refused as conflicts (issue 11: 126 saves, 354 conflicts, p95 464 ms for 20 people over 60 s).
Reports saves, conflicts (refused because someone else changed the row), failed calls, lost or
duplicated writes (from the database afterwards), save and next_item latency, and how many
different people labelled each item (never more than `--overlap`; exactly that once finished).

    .venv/bin/python bench/bench_team.py --prepare /tmp/bench-team-v1      # once: trains v1 (~3 min)
    .venv/bin/python bench/bench_team.py --mode guests --queue uncertain --data-dir /tmp/bench-team-v1
    .venv/bin/python bench/bench_team.py --annotators 20 --seconds 60 [--overlap 2]   # unlabeled, accounts
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (
    add_accounts,
    client,
    copy_data_dir,
    cpu_model,
    cpu_seconds,
    db_url,
    free_port,
    last_event_id,
    launch,
    percentiles,
    prepare_trained,
    stop,
    verify_saves,
    wait_ready,
)
from sqlalchemy.orm import Session

from bertdemo.config import BUNDLED_DATASET, DEFAULT_LABELS
from bertdemo.datasets import load_bundled
from bertdemo.db import examples as db_examples
from bertdemo.db.engine import init_db, make_engine

log = logging.getLogger("bench_team")
ADMIN = "boss"


@dataclass
class Tally:
    """What the annotators did, shared by their threads (under `lock`)."""

    acks: list = field(default_factory=list)  # (example id, version, user) of every acknowledged save
    save_s: list = field(default_factory=list)
    next_s: list = field(default_factory=list)
    out: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self) -> int:
        return sum(n for k, n in self.out.items() if k.startswith("failed"))


def prepare_unlabeled(data_dir: Path) -> None:
    """The bundled tweets as unlabelled examples (no model: the unlabeled queue needs none)."""
    engine = make_engine(db_url(data_dir))
    init_db(engine)
    rows = [db_examples.NewExample(r.text, r.raw_text) for r in load_bundled(BUNDLED_DATASET, 2000)]
    with Session(engine) as s, s.begin():
        db_examples.import_examples(s, rows, "import", "bench", DEFAULT_LABELS)
    engine.dispose()


def names(n: int) -> list[str]:
    return [f"bench{i:02d}" for i in range(n)]


def is_conflict(exc: Exception) -> bool:
    return "changed by" in str(exc) or "after you loaded it" in str(exc)


def annotator(session, name: str, queue: str, pace: float, stop_at: float, tally: Tally) -> None:
    """One person: next_item, read and decide (0.5-1.5 x pace s), save_label; until `stop_at`."""
    rng = random.Random(name)
    seen: list[int] = []
    while time.time() < stop_at:
        t0 = time.perf_counter()
        try:
            item = session.predict(queue, "", seen[-500:], "all", api_name="/next_item")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with tally.lock:
                tally.out["failed next_item: " + str(exc)[:60]] += 1
            continue
        with tally.lock:
            tally.next_s.append(time.perf_counter() - t0)
        if item is None:
            with tally.lock:
                tally.out["queue done for this person"] += 1
            return
        time.sleep(rng.uniform(0.5, 1.5) * pace)  # reading and deciding
        t0 = time.perf_counter()
        try:
            saved = session.predict(item["id"], rng.choice(DEFAULT_LABELS), item["version"], api_name="/save_label")
        except Exception as exc:  # noqa: BLE001 - a conflict, or a failure: both counted
            with tally.lock:
                tally.out["conflicts" if is_conflict(exc) else "failed save: " + str(exc)[:60]] += 1
            seen.append(item["id"])
            continue
        with tally.lock:
            tally.acks.append((saved["example_id"], saved["version"], saved["user"]))
            tally.save_s.append(time.perf_counter() - t0)
            tally.out["saves"] += 1
        seen.append(item["id"])


def people_per_item(data_dir: Path, since_event: int) -> Counter:
    con = sqlite3.connect(data_dir / "bertdemo.sqlite3")
    try:
        rows = con.execute("SELECT example_id, count(DISTINCT user) FROM label_events WHERE source = 'annotator' "
                           "AND id > ? GROUP BY example_id", (since_event,)).fetchall()
    finally:
        con.close()
    return Counter(n for _ex, n in rows)


def run_team(url: str, args: argparse.Namespace) -> Tally:
    """The annotators' threads, each with its own client made (and signed in) before the clock starts."""
    people = names(args.annotators)
    sessions = [client(url, name if args.mode == "accounts" else None) for name in people]
    if args.mode == "guests":  # each gradio_client session is its own guest
        assert len({c.session_hash for c in sessions}) == len(sessions)
    tally = Tally()
    stop_at = time.time() + args.seconds
    threads = [threading.Thread(target=annotator, args=(c, name, args.queue, args.pace, stop_at, tally))
               for c, name in zip(sessions, people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in sessions:
        c.close()
    return tally


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def code_version() -> str:
    """The commit the run measured, "+changes" when bertdemo/ has uncommitted edits."""
    repo = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=repo).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "bertdemo"], capture_output=True, text=True,
                               check=False, cwd=repo).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def report(args: argparse.Namespace, tally: Tally, data_dir: Path, since: int, load: tuple[float, float],
           cpu: tuple[float, float]) -> int:
    """The bench/README.md row and a name=value line; exit status 1 on a lost, duplicated or
    over-shared write."""
    lost, duplicated, mismatched = verify_saves(data_dir, tally.acks, since)
    s50, s95, smax = percentiles(tally.save_s)
    n50, n95, nmax = percentiles(tally.next_s)
    per_item = people_per_item(data_dir, since)
    saves, conflicts = tally.out["saves"], tally.out["conflicts"]
    share = conflicts / max(saves + conflicts, 1)
    for what, n in tally.out.most_common():
        if what.startswith(("failed", "queue done")):
            print(f"  {n} x {what}")
    print("| date (UTC) | code | mode | queue | annotators x s | overlap | saves | conflicts | failed | lost | dup "
          "| save p50 / p95 / max ms | next_item p50 / p95 / max ms | people per item | load avg 1 min before / "
          "after | machine |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} | {code_version()} | {args.mode} | {args.queue} | "
          f"{args.annotators} x {args.seconds:.0f} | {args.overlap} | {saves} | {conflicts} ({share:.1%}) | "
          f"{tally.failed()} | {lost} | {duplicated} | {s50:.0f} / {s95:.0f} / {smax:.0f} | "
          f"{n50:.0f} / {n95:.0f} / {nmax:.0f} | "
          f"{'; '.join(f'{n} people: {c}' for n, c in sorted(per_item.items()))} | {load[0]:.1f} / {load[1]:.1f} | "
          f"{cpu_model()} |")
    too_many = sum(c for n, c in per_item.items() if n > args.overlap)
    print(f"CPU over the {args.seconds:.0f} s: app server {cpu[0]:.1f} s ({cpu[0] / args.seconds:.2f} cores), "
          f"load-test clients {cpu[1]:.1f} s ({cpu[1] / args.seconds:.2f} cores); {os.cpu_count()} cores")
    print(f"conflict_share={share:.4f} save_p95_ms={s95:.1f} next_p95_ms={n95:.1f} failed={tally.failed()} "
          f"lost={lost} dup={duplicated} mismatched={mismatched} items_over_overlap={too_many}")
    return 0 if (lost == duplicated == mismatched == too_many == 0) else 1


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotators", type=int, default=20, help="people labelling at once")
    p.add_argument("--seconds", type=float, default=60.0, help="how long they label")
    p.add_argument("--pace", type=float, default=1.5, help="mean seconds a person takes per item")
    p.add_argument("--overlap", type=int, default=1, help="annotations per item (set by an admin first)")
    p.add_argument("--mode", choices=("accounts", "guests"), default="accounts",
                   help="accounts: one signed-in annotator account per person; guests: no accounts")
    p.add_argument("--queue", choices=("unlabeled", "uncertain"), default="unlabeled",
                   help="the queue the team labels (uncertain needs --data-dir)")
    p.add_argument("--data-dir", type=Path, help="a data dir with a trained, scored active version (copied)")
    p.add_argument("--prepare", type=Path, metavar="DIR",
                   help="make DIR such a data dir (the app's first start: bundled tweets, v1 trained for "
                        "--initial-epochs, its scores stored) and exit")
    p.add_argument("--initial-epochs", type=float, default=0.05, help="with --prepare: length of v1's fine-tune")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir (database, app.log)")
    args = p.parse_args()
    if args.queue == "uncertain" and not (args.data_dir or args.prepare):
        p.error("--queue uncertain needs --data-dir (a data dir made once with --prepare DIR)")
    if args.annotators < 1 or args.seconds <= 0 or args.pace <= 0 or args.overlap < 1:
        p.error("--annotators, --overlap must be >= 1; --seconds, --pace > 0")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.prepare:
        prepare_trained(args.prepare.expanduser().resolve(), args.initial_epochs)
        log.info("%s is ready: run with --data-dir %s", args.prepare, args.prepare)
        return 0
    data_dir = Path(tempfile.mkdtemp(prefix="bench-team-"))
    if args.data_dir:
        copy_data_dir(args.data_dir.expanduser().resolve(), data_dir)
    else:
        prepare_unlabeled(data_dir)
    if args.mode == "accounts":
        add_accounts(data_dir, names(args.annotators))
        add_accounts(data_dir, [ADMIN], role="admin")
    since = last_event_id(data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = launch(data_dir, port, BERTDEMO_BOOTSTRAP="0")
    try:
        first = names(1)[0] if args.mode == "accounts" else None
        wait_ready(url, proc, first, timeout=300,
                   probe=lambda c: c.predict(args.queue, "", [], "all", api_name="/next_item"))
        admin = client(url, ADMIN if args.mode == "accounts" else None)  # a loopback app: a guest may
        admin.predict(args.overlap, api_name="/set_annotations_per_item")
        log.info("app up at %s: %s, %d annotators on %r for %.0f s", url, args.mode, args.annotators, args.queue,
                 args.seconds)
        load_before, server_cpu, own_cpu = os.getloadavg()[0], cpu_seconds(proc.pid), own_cpu_seconds()
        tally = run_team(url, args)
        load_after = os.getloadavg()[0]
        cpu = (cpu_seconds(proc.pid) - server_cpu, own_cpu_seconds() - own_cpu)
    finally:
        stop(proc)
    status = report(args, tally, data_dir, since, (load_before, load_after), cpu)
    print(f"data dir: {data_dir}" if args.keep else "")
    if not args.keep:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
