"""The first start as a new user meets it: `python app.py` on an empty data directory with the
default settings (both bundled datasets, the default first-start recipe, the quick first version
on), timed from the process start to the page answering, to the first prediction (by the quick
version, "quick, frozen encoder": training/quick_first.py), and to the fine-tuned version serving
in its place; each version's validation figures: macro-F1 per dataset (airline, general) and
calibration, and the fine-tuned report's line on the recipe's out-of-domain figures (issue 23).
The command behind the README's first-start figures.

    .venv/bin/python bench/bench_first_start.py [--timeout 900] [--no-quick]

--no-quick: BERTDEMO_QUICK_FIRST=0, the first start before issue 24 (the first answer waits for
the fine-tune).
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
from benchlib import client, cpu_model, free_port, launch, stop  # noqa: E402

PROMPT = "the crew was lovely"


def active(data: Path) -> tuple[str, str] | None:
    """(name, kind) of the version serving now, read through a read-only connection; None before one."""
    try:
        con = sqlite3.connect(f"file:{data / 'bertdemo.sqlite3'}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:  # not created yet
        return None
    try:
        row = con.execute("SELECT name, train_config FROM model_versions WHERE is_active").fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return None
    finally:
        con.close()
    return (row[0], json.loads(row[1] or "{}").get("kind") or "fine-tune") if row else None


def versions(data: Path) -> dict[str, dict]:
    """name -> {"kind", "metrics"} of every version."""
    con = sqlite3.connect(data / "bertdemo.sqlite3")
    rows = con.execute("SELECT name, train_config, metrics FROM model_versions ORDER BY id").fetchall()
    con.close()
    return {name: {"kind": json.loads(cfg or "{}").get("kind") or "fine-tune", "metrics": json.loads(m or "{}")}
            for name, cfg, m in rows}


def timeline(data: Path, url: str, proc, timeout: float, start: float) -> dict:
    """Seconds from `start` to the page answering, to the first answered /predict (and which version
    served it), and to the first answered /predict once a fine-tuned version serves."""
    out: dict = {}
    c = None
    while time.time() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}; see {data / 'app.log'}")
        try:
            c = c or client(url, None)
            out.setdefault("page", time.time() - start)
            serving = active(data)
            c.predict(PROMPT, api_name="/predict")
            now = time.time() - start
            if "first" not in out:
                out["first"], out["first_version"] = now, active(data) or serving
            after = active(data)
            if after is not None and after[1] != "quick":  # None: the database was busy; ask again
                out["fine_tuned"], out["fine_tuned_version"] = now, after
                return out
        except Exception:  # noqa: BLE001 - not up, or no version yet
            pass
        time.sleep(1)
    raise SystemExit(f"no fine-tuned version served within {timeout:.0f} s: {out}")


def row(name: str, v: dict) -> str:
    m, per = v["metrics"], v["metrics"].get("per_dataset", {})
    how = (f"{m['train_size']:,} tweets, logistic regression, {m['seconds']:.0f} s" if v["kind"] == "quick"
           else f"{m['seconds']:.0f} s, {m['train_size']:,} examples")
    return (f"| {name} ({v['kind']}) | {how} | {m['macro_f1']:.4f} | "
            f"{per.get('airline', {}).get('macro_f1', float('nan')):.4f} | "
            f"{per.get('general', {}).get('macro_f1', float('nan')):.4f} | {m.get('ece', float('nan')):.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--no-quick", action="store_true", help="BERTDEMO_QUICK_FIRST=0: no quick first version")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-first-")) / "runtime"
    data.mkdir(parents=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.time()
    proc = launch(data, port, **({"BERTDEMO_QUICK_FIRST": "0"} if args.no_quick else {}))
    try:
        t = timeline(data, url, proc, args.timeout, start)
    finally:
        stop(proc)
    con = sqlite3.connect(data / "bertdemo.sqlite3")
    counts = dict(con.execute("SELECT dataset, count(*) FROM examples GROUP BY dataset").fetchall())
    con.close()
    made = versions(data)
    first, fine = t["first_version"], t["fine_tuned_version"]
    print(f"examples: {counts}; CPU: {cpu_model()}")
    print("| page up | first /predict | by | fine-tuned serves | by |")
    print("|---|---|---|---|---|")
    print(f"| {t['page']:.0f} s | {t['first']:.0f} s | {first[0]} ({first[1]}) | {t['fine_tuned']:.0f} s "
          f"({t['fine_tuned'] / 60:.1f} min) | {fine[0]} ({fine[1]}) |")
    print("\n| version | made from | pooled macro-F1 | airline macro-F1 | general macro-F1 | ECE |")
    print("|---|---|---|---|---|---|")
    for name, v in made.items():
        print(row(name, v))
    report = data / "models" / fine[0] / "classification_report.txt"  # the report the Train tab shows
    print("\n".join(line for line in report.read_text().splitlines() if line.startswith("out of domain")))
    per = made[fine[0]]["metrics"].get("per_dataset", {})
    quick = next((v["metrics"] for v in made.values() if v["kind"] == "quick"), {})
    print(f"first_prediction_s={t['first']:.0f} first_by={first[0]}:{first[1]} fine_tuned_s={t['fine_tuned']:.0f} "
          f"quick_f1={quick.get('macro_f1')} airline_f1={per.get('airline', {}).get('macro_f1')} "
          f"general_f1={per.get('general', {}).get('macro_f1')}")


if __name__ == "__main__":
    main()
