"""The first start as a new user meets it: `python app.py` on an empty data directory with the
default settings (both bundled datasets, the default first-start recipe), timed from the process
start to the page answering and to the first prediction by version 1, and v1's validation
figures: macro-F1 per dataset (airline, general) and calibration. The command behind the README's
first-start figures (issue 13).

    .venv/bin/python bench/bench_first_start.py [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import client, free_port, launch, stop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-first-")) / "runtime"
    data.mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.time()
    proc = launch(data, port)
    page = served = None
    try:
        c = None
        while time.time() - start < args.timeout:
            if proc.poll() is not None:
                raise SystemExit(f"app.py exited with {proc.returncode}; see {data / 'app.log'}")
            try:
                c = c or client(url, None)
                page = page or time.time() - start
                c.predict("the crew was lovely", api_name="/predict")
                served = time.time() - start
                break
            except Exception:  # noqa: BLE001 - not up, or no version yet
                time.sleep(1)
        if served is None:
            raise SystemExit(f"no prediction within {args.timeout:.0f} s")
    finally:
        stop(proc)
    con = sqlite3.connect(data / "bertdemo.sqlite3")
    metrics = json.loads(con.execute("SELECT metrics FROM model_versions WHERE name = 'v1'").fetchone()[0])
    counts = dict(con.execute("SELECT dataset, count(*) FROM examples GROUP BY dataset").fetchall())
    con.close()
    per = metrics.get("per_dataset", {})
    print(f"examples: {counts}")
    print("| page up | v1 serves (first /predict) | training | pooled macro-F1 | airline macro-F1 | general macro-F1 | ECE |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {page:.0f} s | {served:.0f} s ({served / 60:.1f} min) | {metrics['seconds']:.0f} s, {metrics['train_size']:,} "
          f"examples | {metrics['macro_f1']:.4f} | {per.get('airline', {}).get('macro_f1', float('nan')):.4f} | "
          f"{per.get('general', {}).get('macro_f1', float('nan')):.4f} | {metrics.get('ece', float('nan')):.4f} |")
    print(f"first_start_s={served:.0f} airline_f1={per.get('airline', {}).get('macro_f1')} "
          f"general_f1={per.get('general', {}).get('macro_f1')}")


if __name__ == "__main__":
    main()
