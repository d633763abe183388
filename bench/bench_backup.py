"""Backup of a live data directory: `bertdemo backup create` against a plain copy of the folder
(`shutil.copytree`, what an operator might do first), on a data directory with the full bundled
dataset (14.6k examples) and one model version, while 4 threads keep saving labels.

Prints one table: seconds, MB, label saves acknowledged during the copy, whether the copy opens
and passes SQLite's integrity check, whether every label acknowledged before the copy started is
in it, and the verify time.

    python bench/bench_backup.py [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bertdemo import backup  # noqa: E402
from bertdemo.actions.annotate import AnnotateAdapters  # noqa: E402
from bertdemo.config import Settings  # noqa: E402
from bertdemo.model.classifier import Classifier  # noqa: E402
from bertdemo.services import Services  # noqa: E402
from bertdemo.training.config import FitResult, TrainConfig  # noqa: E402


def build(data: Path) -> Services:
    services = Services.create(Settings(data_dir=data))
    services.ensure_dataset()
    clf = Classifier.load(services.settings.model_source, services.settings.labels)
    result = FitResult(labels=services.settings.labels, best_step=0, best_val_loss=1.0, macro_f1=0.0, accuracy=0.0,
                       report="", report_dict={}, confusion=[[0] * 3] * 3)
    info = services.registry.save(clf, result, TrainConfig(), None, "bench", [])
    services.registry.activate(info.id, clf)
    return services


def savers(services: Services, stop: threading.Event, acked: list) -> list[threading.Thread]:
    acts = AnnotateAdapters.create(services).labelling
    ids = acts.queue_ids("search", "flight")[:2000]
    labels = list(services.settings.labels)

    def work(offset: int) -> None:
        i = offset
        while not stop.is_set():
            ex = ids[i % len(ids)]
            item = acts.item(ex)
            label = labels[(labels.index(item.label) + 1) % 3]
            try:
                acts.save_label(ex, label, item.version, None)
            except Exception:  # noqa: BLE001 - a conflict between the threads: not acknowledged
                continue
            finally:
                i += 4
            acked.append((ex, label, time.monotonic()))

    return [threading.Thread(target=work, args=(k,), daemon=True) for k in range(4)]


def check(db: Path, acked: list, started: float) -> tuple[str, str]:
    """(integrity, acknowledged-before labels present) of a copied database."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        newest = {}
        for ex, label, at in acked:
            if at < started:
                newest[ex] = label
        later = {}
        for ex, label, _at in acked:
            later.setdefault(ex, set()).add(label)
        got = dict(con.execute("SELECT id, label FROM examples").fetchall())
        con.close()
        ok = all(got.get(ex) in later[ex] for ex in newest)
        return integrity, f"{'yes' if ok else 'NO'} ({len(newest)} examples)"
    except sqlite3.DatabaseError as exc:
        return f"unreadable: {exc}", "n/a"


def run(name: str, services: Services, copy, dest: Path) -> dict:
    stop, acked = threading.Event(), []
    threads = savers(services, stop, acked)
    for t in threads:
        t.start()
    while len(acked) < 50:
        time.sleep(0.01)
    started, n0 = time.monotonic(), len(acked)
    t0 = time.perf_counter()
    copy(dest)
    seconds = time.perf_counter() - t0
    during = len(acked) - n0
    stop.set()
    for t in threads:
        t.join(10)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) / 2**20
    integrity, present = check(dest / "bertdemo.sqlite3", acked, started)
    return {"path": name, "s": seconds, "MB": size, "saves during": during, "integrity": integrity,
            "acked labels in copy": present}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-backup-"))
    services = build(work / "runtime")
    rows = [run("shutil.copytree (baseline)", services, lambda d: shutil.copytree(services.settings.data_dir, d),
                work / "copy"),
            run("bertdemo backup create", services, lambda d: backup.create(services.settings, d), work / "backup")]
    t0 = time.perf_counter()
    ok = backup.verify(work / "backup").ok
    verify_s = time.perf_counter() - t0
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    print(f"\nverify: {'ok' if ok else 'FAILED'} in {verify_s:.2f} s; "
          f"backup / copytree time ratio {rows[1]['s'] / rows[0]['s']:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
