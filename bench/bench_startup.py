"""Cold start and memory of the running app, against issue 6's targets.

Launches `python app.py` on a data dir that already holds a trained, active version (a later
start: nothing to import or train), and measures the time from the process start to the first
answered `/predict`. Then it exercises every heavy path once through `gradio_client` (predict,
explain, tokenize, a 2,000-row CSV, compare_word, re-activating the version, which re-scores
every example) and reads the app's peak resident memory (VmHWM) from /proc.

    BERTDEMO_DATA_DIR=<dir with a trained version> python bench/bench_startup.py [--starts 3]

Ends with one `name=value` line. Targets: cold start < 15 s, peak memory < 2 GB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pandas as pd  # noqa: E402
from benchlib import client, free_port, launch, stop, wait_ready  # noqa: E402

from bertdemo.config import BUNDLED_DATASET  # noqa: E402


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=3, help="later starts timed (median reported)")
    ap.add_argument("--csv-rows", type=int, default=2000, help="rows of the batch-prediction CSV")
    args = ap.parse_args()
    data_dir = Path(os.environ.get("BERTDEMO_DATA_DIR", "")).resolve()
    if not (data_dir / "models").is_dir():
        raise SystemExit("set BERTDEMO_DATA_DIR to a data dir with a trained version "
                         "(e.g. one made by `python -m bertdemo.train`)")

    def probe(c) -> None:
        c.predict("the flight was fine", api_name="/predict")

    starts = []
    for i in range(args.starts):
        port = free_port()
        t0 = time.perf_counter()
        proc = launch(data_dir, port)
        try:
            wait_ready(f"http://127.0.0.1:{port}/", proc, None, timeout=120, probe=probe)
            starts.append(time.perf_counter() - t0)
            print(f"start {i + 1}: first prediction after {starts[-1]:.1f} s")
            if i < args.starts - 1:
                continue
            # the last start stays up: exercise every heavy path, then read the peak memory
            c = client(f"http://127.0.0.1:{port}/", None)
            after_start = status_kb(proc.pid, "VmRSS")
            c.predict("@united thanks for the quick rebooking, great crew", "predicted", True, api_name="/explain")
            c.predict("hello world", 32, api_name="/tokenize")
            with tempfile.TemporaryDirectory() as tmp:
                csv = Path(tmp) / "batch.csv"
                pd.read_csv(BUNDLED_DATASET, usecols=["text"]).head(args.csv_rows).to_csv(csv, index=False)
                from gradio_client import handle_file

                c.predict(handle_file(str(csv)), api_name="/predict_csv")
            c.predict("I saw a bat fly at night.\nHe swung the cricket bat.", "bat", 6, api_name="/compare_word")
            log = data_dir / "app.log"
            done_before = log.read_text().count("re-scored ")
            name = c.predict(api_name="/training_status")["version"] or "v1"
            c.predict(name, api_name="/activate_version")  # re-scores every example in the background
            deadline = time.time() + 300
            while log.read_text().count("re-scored ") == done_before and time.time() < deadline:
                time.sleep(1)
            peak = status_kb(proc.pid, "VmHWM")
            now = status_kb(proc.pid, "VmRSS")
        finally:
            stop(proc)
    cold = statistics.median(starts)
    print(f"\n| measure | value | target |\n|---|---|---|\n"
          f"| later start -> first prediction (median of {len(starts)}) | {cold:.1f} s | < 15 s |\n"
          f"| resident memory after start | {after_start / 1024:.0f} MB | |\n"
          f"| peak resident memory (predict, explain, CSV, embeddings, re-score) | {peak / 1024:.0f} MB | < 2048 MB |\n"
          f"| resident memory at the end | {now / 1024:.0f} MB | |")
    print(f"\ncold_start_s={cold:.1f} rss_after_start_mb={after_start / 1024:.0f} peak_rss_mb={peak / 1024:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
