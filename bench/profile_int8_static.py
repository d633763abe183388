"""One tweet on the int8 graph: the dynamic-shape graph that serves against the same graph
reshaped to fixed lengths (each text padded to the next of --lengths), one text at a time on one
thread, as single predictions run. Prints argmax agreement and the largest logit difference between
the two, then p50/p90 per row (two passes) with the CPU model.

    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/profile_int8_static.py --model DATA_DIR/models/vN

The version needs its int8 graph (vN/int8/) and validation.csv (its validation split)."""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import cpu_model  # noqa: E402


def main() -> None:
    import openvino as ov
    from transformers import AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--lengths", default="32,64,128")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    tok = AutoTokenizer.from_pretrained(args.model)
    with (args.model / "validation.csv").open() as f:
        texts = [r["text"] for r in csv.DictReader(f)][:args.n]
    graph = str(args.model / "int8" / "model.int8.xml")
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
           "INFERENCE_NUM_THREADS": 1}
    dynamic = core.compile_model(core.read_model(graph), "CPU", cfg).create_infer_request()
    fixed = {}
    for n in lengths:
        m = core.read_model(graph)
        m.reshape({"input_ids": [1, n], "attention_mask": [1, n]})
        fixed[n] = core.compile_model(m, "CPU", cfg).create_infer_request()

    def enc(text: str, pad: int | None = None):
        e = tok(text, truncation=True, max_length=pad or lengths[-1], padding="max_length" if pad else False,
                return_tensors="np")
        return e["input_ids"].astype(np.int64), e["attention_mask"].astype(np.int64)

    plain = [enc(t) for t in texts]
    padded = []
    for (ids, _mask), t in zip(plain, texts):
        n = next((x for x in lengths if x >= ids.shape[1]), lengths[-1])
        padded.append((n, *enc(t, n)))

    def run_dynamic(i: int) -> np.ndarray:
        ids, mask = plain[i]
        dynamic.infer({"input_ids": ids, "attention_mask": mask})
        return dynamic.get_output_tensor(0).data.copy()

    def run_fixed(i: int, share: bool = False) -> np.ndarray:
        n, ids, mask = padded[i]
        fixed[n].infer({"input_ids": ids, "attention_mask": mask}, share_inputs=share)
        return fixed[n].get_output_tensor(0).data.copy()

    a = [run_dynamic(i) for i in range(len(texts))]
    b = [run_fixed(i) for i in range(len(texts))]
    agree = sum(int(x.argmax() == y.argmax()) for x, y in zip(a, b))
    print(f"argmax agreement {agree} / {len(texts)}, largest logit difference "
          f"{max(float(np.abs(x - y).max()) for x, y in zip(a, b)):.4f}")
    cpu = cpu_model()
    print("| pass | graph | p50 ms | p90 ms | CPU |\n|---|---|---|---|---|")
    for rep in range(2):
        for name, fn in (("dynamic shape", run_dynamic), ("fixed shapes", run_fixed),
                         ("fixed shapes, share_inputs", lambda i: run_fixed(i, True))):
            for i in range(30):
                fn(i)
            ms = []
            for i in range(len(texts)):
                t = time.perf_counter()
                fn(i)
                ms.append((time.perf_counter() - t) * 1000)
            print(f"| {rep + 1} | {name} | {statistics.median(ms):.2f} | {np.percentile(ms, 90):.2f} | {cpu} |")


if __name__ == "__main__":
    main()
