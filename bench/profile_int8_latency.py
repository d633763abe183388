"""Where one tweet's int8 latency goes: tokenizing, OpenVINO's infer call alone (one thread, two
threads, other hints) and the served path (`Classifier.predict_proba` with the version's int8 graph
and its fitted guard), each over the version's own validation tweets, one at a time.

    .venv/bin/python bench/profile_int8_latency.py --model DATA_DIR/models/vN [--reps 300] [--busy]

The version needs its int8 graph (vN/int8/, built when it first served under BERTDEMO_SERVING=auto).
Prints p50/p90 per row and the CPU model (`lscpu`). Run it alone: it measures speed."""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import cpu_model  # noqa: E402

from bertdemo.model import int8  # noqa: E402
from bertdemo.model.classifier import Classifier  # noqa: E402

LABELS = ("negative", "neutral", "positive")


def timed(fn, texts: list[str], reps: int) -> str:
    for i in range(20):  # warm-up: the first calls compile shapes
        fn(texts[i % len(texts)])
    ms = []
    for i in range(reps):
        t = time.perf_counter()
        fn(texts[i % len(texts)])
        ms.append((time.perf_counter() - t) * 1000)
    return f"{statistics.median(ms):.2f} | {np.percentile(ms, 90):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--busy", action="store_true",
                    help="beside a busy neighbour process (a Python loop on one core), as bench_inference's table")
    args = ap.parse_args()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        profile(args)
    finally:
        if hog is not None:
            hog.kill()


def profile(args: argparse.Namespace) -> None:
    import openvino as ov

    with open(args.model / "validation.csv", encoding="utf-8", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)][:400]
    clf = Classifier.load(args.model, LABELS, "cpu", 64, name=args.model.name)
    tok = clf.tokenizer
    enc = {t: tok([t], truncation=True, max_length=64, return_tensors="np") for t in texts}
    cpu = cpu_model()
    beside = ", beside a busy neighbour process" if args.busy else ""
    print(f"{len(texts)} validation tweets of {args.model}, one at a time, {args.reps} calls per row{beside}\n")
    print("| what | p50 ms | p90 ms | CPU |\n|---|---|---|---|")
    tokenize = lambda t: tok([t], truncation=True, max_length=64, return_tensors="np")  # noqa: E731
    print(f"| tokenize | {timed(tokenize, texts, args.reps)} | {cpu} |")
    core = ov.Core()
    graph = core.read_model(str(args.model / int8.FOLDER / int8.INT8_FILE))
    base = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    for name, cfg in (("OpenVINO infer, 1 thread (what serves one tweet)", {"INFERENCE_NUM_THREADS": 1}),
                      ("OpenVINO infer, 2 threads", {"INFERENCE_NUM_THREADS": 2}),
                      ("OpenVINO infer, 1 thread, bf16 hint for the non-int8 ops",
                       {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "bf16"})):
        req = core.compile_model(graph, "CPU", base | cfg).create_infer_request()

        def infer(t: str, req=req) -> None:
            e = enc[t]
            req.infer({"input_ids": e["input_ids"].astype(np.int64),
                       "attention_mask": e["attention_mask"].astype(np.int64)})

        print(f"| {name} | {timed(infer, texts, args.reps)} | {cpu} |")
    scorer = int8.open_scorer(args.model / int8.FOLDER, clf.max_threads)
    dynamic = int8.Int8Scorer(scorer.path, clf.max_threads, scorer.margin_guard, fixed_lengths=())
    scorer.wait_fixed()
    for label, graph in ((f"fixed-shape graphs {scorer.fixed_lengths}", scorer), ("dynamic graph only", dynamic)):
        clf.use_graph(graph)
        print(f"| served path: Classifier.predict_proba, int8 + guard {graph.margin_guard:.3g}, {label} | "
              f"{timed(lambda t: clf.predict_proba([t]), texts, args.reps)} | {cpu} |")
    for label, graph in (("fixed", scorer), ("dynamic", dynamic)):
        print(f"\n{label}: re-scored in fp32 under the guard: {graph.rescored} of {graph.scored} texts, "
              f"{graph.fixed_scored} on a fixed-shape graph")


if __name__ == "__main__":
    main()
