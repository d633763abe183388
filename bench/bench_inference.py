"""Batch scoring and latency: our inference paths (PyTorch bf16, the int8 graph) vs the HF
`pipeline`, in one interleaved run.

    python bench/bench_inference.py [--n 2000] [--rounds 3] [--model PATH]

Prints a table (sentences/s, ratio to the pipeline default, argmax agreement with our fp32
path, share of the measured bf16 matmul peak, the CPU model) and p50/p95 latency of one `predict` and one
`explain` (Integrated Gradients at the default 16 steps and at 50, Gradient x Input, and the
correlation of 16-step attributions with 50-step fp32 ones), then one line of name=value pairs.
The int8 graph is the version's own (`vN/int8/`) when built, else exported here; it serves with
the margin guard its gate fitted (`vN/int8/gate.json`), else the script runs the app's gate on the
version's validation split (no split: the guard is fitted on held-out bundled tweets), and it is
timed with and without the guard, with its raw flips and their int8 top-two gaps. The model
defaults to the active version in BERTDEMO_DATA_DIR, else the packaged encoder with a fresh head.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import pipeline  # noqa: E402

from bertdemo.config import BUNDLED_DATASET, Settings  # noqa: E402
from bertdemo.datasets import load_bundled  # noqa: E402
from bertdemo.model import classifier, explain, int8, margin_guard  # noqa: E402
from bertdemo.model.classifier import PARALLEL_MIN_TOKENS, Classifier, cpu_cores  # noqa: E402
from bertdemo.services import Services  # noqa: E402


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9  # GFLOP/s


def model_flops(clf: Classifier, tokens: int) -> float:
    """Forward FLOPs of one sequence: 2 * (non-embedding params) * T + attention (4 * L * T^2 * H)."""
    cfg = clf.model.config
    params = sum(p.numel() for n, p in clf.model.named_parameters() if "embeddings" not in n)
    return 2 * params * tokens + 4 * cfg.num_hidden_layers * tokens**2 * cfg.hidden_size


def cpu_model() -> str:
    """The CPU's model name as `lscpu` prints it, and its core count (recorded with every row)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else platform.processor() or 'unknown CPU'}, {cpu_cores()} cores"


def int8_scorer(ours: Classifier, graph: Path, path: Path, held_out: list[str]) -> int8.Int8Scorer:
    """The graph with the guard the app would serve it with: its gate's, else the app's gate run
    here on the version's validation split, else a guard fitted on `held_out` (no labels needed)."""
    d = graph.parent
    if (d / int8.GATE_FILE).is_file():
        scorer = int8.open_scorer(d, ours.max_threads)
        scorer.wait_fixed()  # one tweet is timed on the fixed-shape graphs, as the app serves it
        print(f"int8 guard {scorer.margin_guard:.3g} from the version's gate: {int8.Gate.load(d / int8.GATE_FILE).summary()}")
        return scorer
    scorer = int8.Int8Scorer(graph, ours.max_threads)
    scorer.wait_fixed()
    val = Path(path) / "validation.csv"
    if val.is_file():
        with open(val, encoding="utf-8", newline="") as fh:
            rows = [(r["text"], r["label"]) for r in csv.DictReader(fh) if r["label"] in ours.labels]
        g = int8.timed_gate(ours, scorer, [t for t, _ in rows], [ours.labels.index(lab) for _, lab in rows],
                            f"the validation split of {Path(path).name}")
        print(f"the app's gate, run here: {g.summary()}")
    else:
        scorer.margin_guard = 0.0
        ref, q = ours.logits(held_out, path="fp32"), ours.logits(held_out, path=scorer)
        scorer.margin_guard = margin_guard.fit_guard(ref, q)
        print(f"int8 guard {scorer.margin_guard:.3g} fitted on {len(held_out)} held-out tweets (no validation split)")
    return scorer


def flip_report(ref: np.ndarray, raw: np.ndarray, guard: float) -> str:
    """The int8 graph's raw flips against fp32 on the scored tweets and how close they were."""
    flips = ref.argmax(1) != raw.argmax(1)
    gaps = np.sort(margin_guard.top_two_gap(raw)[flips])
    missed = int((gaps >= guard).sum())
    return (f"int8 without the guard: {flips.sum()} flips in {len(raw)} ({1 - flips.mean():.2%} agreement); "
            f"their int8 top-two gaps: {', '.join(f'{g:.3f}' for g in gaps[-5:])} (largest 5); "
            f"guard {guard:.3g}: {np.mean(margin_guard.top_two_gap(raw) < guard):.1%} of tweets under it, "
            f"{missed} flips above it; largest overstated lead {margin_guard.overstatement(ref, raw).max():.3f}")


@contextlib.contextmanager
def every_core_always():
    """The naive setting, for comparison: every forward pass on all of torch's threads."""
    old = classifier.PARALLEL_MIN_TOKENS
    classifier.PARALLEL_MIN_TOKENS = 0
    try:
        yield
    finally:
        classifier.PARALLEL_MIN_TOKENS = old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="tweets scored per variant and round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    ap.add_argument("--model", default=None, help="model directory (default: active version, else packaged)")
    ap.add_argument("--latency-reps", type=int, default=100, help="single predict calls timed (explain: a fifth)")
    args = ap.parse_args()

    settings = Settings.from_env()
    path = args.model
    if path is None:
        info = Services.create(settings.with_(bootstrap=False)).registry.active_version()
        path = info.path if info else settings.model_source
    cpu = cpu_model()
    print(f"model: {path}\ncpu: {cpu}\nthreads: {torch.get_num_threads()}  cores: {torch.get_num_interop_threads()}")
    all_texts = [r.text for r in load_bundled(BUNDLED_DATASET, settings.max_chars)]
    texts = all_texts[: args.n]
    ours = Classifier.load(path, settings.labels)  # auto precision (bf16 where native)
    fp32 = Classifier(ours.model, ours.tokenizer, ours.labels, ours.device, precision="fp32")
    pipe = pipeline("text-classification", model=ours.model, tokenizer=ours.tokenizer, device=-1)
    graph = Path(path) / int8.FOLDER / int8.INT8_FILE
    if not graph.is_file():
        import tempfile
        tmp = Path(tempfile.mkdtemp()) / "v"
        ours.save(tmp)
        t = time.perf_counter()
        int8.export(tmp, tmp / int8.FOLDER, all_texts[args.n:][::20][:512])  # calibrated on texts not scored here
        print(f"int8 export: {time.perf_counter() - t:.1f} s")
        graph = tmp / int8.FOLDER / int8.INT8_FILE
    scorer = int8_scorer(ours, graph, Path(path), all_texts[args.n:][::20][:1000])
    raw = int8.Int8Scorer(graph, ours.max_threads, margin_guard=0.0, fixed_lengths=())  # batches only
    q8 = Classifier(ours.model, ours.tokenizer, ours.labels, ours.device)
    q8.use_graph(scorer)
    q8name = f"ours, int8 (OpenVINO + NNCF), guard {scorer.margin_guard:.2g} fitted per version"

    variants = {
        "HF pipeline, default": lambda: pipe(texts, truncation=True),
        "HF pipeline, batch 32": lambda: pipe(texts, batch_size=32, truncation=True),
        "ours, fp32": lambda: fp32.predict_proba(texts),
        f"ours, {'bf16 autocast' if ours.amp_dtype else 'fp32 (no native bf16)'}": lambda: ours.predict_proba(texts),
        "ours, int8 without the guard": lambda: ours.logits(texts, path=raw),
        q8name: lambda: q8.predict_proba(texts),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):  # interleaved, so drift and neighbours hit every variant alike
        for name, fn in variants.items():
            t = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t)
            if isinstance(out, list):
                label_of = {v: k for k, v in ours.model.config.id2label.items()}
                out = np.array([label_of[o["label"]] for o in out])
            else:
                out = out.argmax(1)
            outputs[name] = out
    ref = outputs["ours, fp32"]
    print(flip_report(fp32.logits(texts), ours.logits(texts, path=raw), scorer.margin_guard))
    tokens = np.mean([len(ids) for ids in ours.tokenizer(texts)["input_ids"]])
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    flops = model_flops(ours, int(round(tokens)))
    base = args.n / statistics.median(times["HF pipeline, default"])
    print(f"\n{args.n} tweets, mean {tokens:.1f} tokens; matmul peak fp32 {peak_fp32:.0f} GFLOP/s, "
          f"bf16 {peak_bf16:.0f} GFLOP/s; {flops / 1e9:.2f} GFLOP per tweet\n")
    print("| path | sentences/s | vs pipeline default | argmax agreement with fp32 | share of bf16 peak | CPU |")
    print("|---|---|---|---|---|---|")
    rates = {}
    for name in variants:
        rate = args.n / statistics.median(times[name])
        rates[name] = rate
        agree = float((outputs[name] == ref).mean())
        print(f"| {name} | {rate:.0f} | {rate / base:.1f}x | {agree:.2%} | {rate * flops / 1e9 / peak_bf16:.1%} | {cpu} |")

    tweet20 = next(t for t in texts if len(ours.tokenizer(t)["input_ids"]) == 22)  # 20 tokens + [CLS]/[SEP]
    p = lambda xs, q: float(np.percentile(xs, q))  # noqa: E731

    def latency(fn, reps: int) -> list[float]:
        fn(0)  # warm-up (builds the bf16 serving copy on the first call)
        out = []
        for i in range(reps):
            t = time.perf_counter()
            fn(i)
            out.append((time.perf_counter() - t) * 1000)
        return out

    one = lambda i: ours.predict([texts[i % len(texts)]])  # noqa: E731
    lat_p = latency(one, args.latency_reps)
    before = scorer.scored, scorer.rescored
    lat_q = latency(lambda i: q8.predict([texts[i % len(texts)]]), args.latency_reps)
    single_guarded = (scorer.rescored - before[1]) / max(scorer.scored - before[0], 1)
    reps = max(5, args.latency_reps // 5)
    lat_e = latency(lambda i: explain.integrated_gradients(ours, tweet20), reps)
    lat_e50 = latency(lambda i: explain.integrated_gradients(ours, tweet20, n_steps=50), reps)
    lat_g = latency(lambda i: explain.gradient_x_input(ours, tweet20), reps)
    print(f"\npredict (one tweet), {ours.amp_path}: p50 {p(lat_p, 50):.1f} ms, p95 {p(lat_p, 95):.1f} ms")
    print(f"predict (one tweet), int8 graph: p50 {p(lat_q, 50):.1f} ms, p95 {p(lat_q, 95):.1f} ms "
          f"({single_guarded:.0%} of them re-scored in fp32 under the guard)")
    print(f"explain (IG, {explain.IG_STEPS} steps, 20-token tweet): p50 {p(lat_e, 50):.0f} ms, p95 {p(lat_e, 95):.0f} ms")
    print(f"explain (IG, 50 steps): p50 {p(lat_e50, 50):.0f} ms; Gradient x Input: p50 {p(lat_g, 50):.0f} ms")
    corr = []
    for t in texts[:: max(1, len(texts) // 30)][:30]:
        r50 = explain.integrated_gradients(ours, t, n_steps=50, exact=True)
        a = explain.integrated_gradients(ours, t, target=r50.target)
        corr.append(float(np.corrcoef(a.scores, r50.scores)[0, 1]))
    print(f"IG {explain.IG_STEPS} steps vs 50-step fp32 IG, correlation over {len(corr)} tweets: "
          f"mean {np.mean(corr):.4f}, min {np.min(corr):.4f}")

    # one busy process on another core (a neighbour): our thread policy vs every core for every call
    print(f"\nwith a busy neighbour process ({cpu_cores()} cores):")
    print("| path | predict p50 ms | predict p95 ms |\n|---|---|---|")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)

        def every_core(i: int) -> None:
            with every_core_always():
                one(i)

        neighbour = {}
        for name, fn in ((f"ours (1 thread below {PARALLEL_MIN_TOKENS} tokens)", one),
                         (f"ours, every call on {ours.max_threads} threads", every_core),
                         (f"HF pipeline, {torch.get_num_threads()} threads",
                          lambda i: pipe(texts[i % len(texts)], truncation=True))):
            xs = latency(fn, args.latency_reps * 2)
            neighbour[name] = xs
            print(f"| {name} | {p(xs, 50):.1f} | {p(xs, 95):.1f} |")
    finally:
        hog.kill()
    busy = next(iter(neighbour.values()))

    t = time.perf_counter()
    ours.predict_proba(all_texts, batch_size=128)
    rescore_s = time.perf_counter() - t
    print(f"\nre-scoring all {len(all_texts):,} bundled tweets (ours, batch 128): {rescore_s:.1f} s")

    best = max((k for k in rates if k.startswith("ours") and "int8" not in k), key=rates.get)
    print(f"\nspeedup_vs_pipeline={rates[best] / base:.2f} ours_per_s={rates[best]:.0f} "
          f"pipeline_per_s={base:.0f} agreement={(outputs[best] == ref).mean():.4f} "
          f"predict_p50_ms={p(lat_p, 50):.1f} predict_p95_ms={p(lat_p, 95):.1f} "
          f"explain_p50_ms={p(lat_e, 50):.0f} neighbour_predict_p95_ms={p(busy, 95):.1f} "
          f"rescore_all_s={rescore_s:.1f} int8_per_s={rates[q8name]:.0f} "
          f"int8_agreement={(outputs[q8name] == ref).mean():.4f} int8_predict_p50_ms={p(lat_q, 50):.1f} "
          f"explain50_p50_ms={p(lat_e50, 50):.0f} gxi_p50_ms={p(lat_g, 50):.0f} ig_corr_min={np.min(corr):.4f} "
          f"int8_vs_pipeline={rates[q8name] / base:.2f} int8_guard={scorer.margin_guard:.3g} cpu={cpu!r}")


if __name__ == "__main__":
    main()
