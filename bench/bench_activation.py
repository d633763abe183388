"""Predictions while a version is activated (issue 22): the activation call, the first prediction
after it and every prediction (one every 0.2 s) while the version's background work runs (its int8
build and gate in BERTDEMO_SERVING=auto, then re-scoring), each with the phase it ran in; then a
rollback, and how long the abandoned version's background work goes on after it.

    python bench/bench_activation.py --data-dir DIR [--to v2] [--seconds 60]

Works on a temporary copy of DIR (two or more versions, one active); the int8 graph of `--to` is
removed from the copy first, so its build is the slow case the issue measured (5.5 s for the
first prediction). Prints one line per prediction over 100 ms and a summary.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import cpu_model

from bertdemo.actions.predict import PredictActions
from bertdemo.config import Settings
from bertdemo.services import Services


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="a data dir with two or more versions")
    p.add_argument("--to", default="v2", help="the version to activate (its int8 graph is rebuilt)")
    p.add_argument("--seconds", type=float, default=60, help="how long to keep predicting after the activation")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-activation-")) / "data"
    shutil.copytree(args.data_dir, work)
    shutil.rmtree(work / "models" / args.to / "int8", ignore_errors=True)
    services = Services.create(Settings.from_env().with_(data_dir=work, serving="auto"))
    services.registry.ensure_servable()
    services.jobs.prepare_serving_if_pending()
    services.jobs.wait_rescore(600)
    before = services.registry.active_version()
    pred = PredictActions(services)
    texts = [f"@united flight {i} was delayed again, thanks for nothing" for i in range(200)]
    pred.predict("warm up")
    idle = []
    for t in texts[:20]:
        t0 = time.perf_counter()
        pred.predict(t)
        idle.append(time.perf_counter() - t0)
    target = next(v for v in services.registry.versions() if v.name == args.to)
    t0 = time.perf_counter()
    services.jobs.activate(target.id, user="bench", reason="bench_activation.py")
    activate_s = time.perf_counter() - t0
    lat, end = [], time.monotonic() + args.seconds
    while time.monotonic() < end:
        phase = services.jobs.activity()
        t0 = time.perf_counter()
        pred.predict(texts[len(lat) % len(texts)])
        lat.append(time.perf_counter() - t0)
        if lat[-1] > 0.1:
            print(f"  {lat[-1] * 1000:.0f} ms at {args.seconds - (end - time.monotonic()):.1f} s: {phase}")
        time.sleep(0.2)
    left = services.jobs.activity() or "done"
    t0 = time.perf_counter()
    services.jobs.activate(before.id, user="bench", reason="rollback")
    rollback_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    for t in [t for t in threading.enumerate() if t.name == f"rescore-{args.to}"]:
        t.join(600)
    stopped_s = time.perf_counter() - t1
    services.jobs.wait_rescore(600)
    ms = sorted(x * 1000 for x in lat)
    print(f"idle: median {statistics.median(idle) * 1000:.0f} ms per prediction ({before.name} serving)")
    print(f"| activate {args.to} (s) | first predict (ms) | predicts | median / p95 / max (ms) | "
          f"after {args.seconds:.0f} s | rollback (s) | abandoned work stopped after (s) | CPU |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {activate_s:.2f} | {ms and lat[0] * 1000:.0f} | {len(ms)} | {statistics.median(ms):.0f} / "
          f"{ms[int(len(ms) * 0.95)]:.0f} / {ms[-1]:.0f} | {left} | {rollback_s:.2f} | {stopped_s:.1f} | {cpu_model()} |")
    services.engine.dispose()


if __name__ == "__main__":
    main()
