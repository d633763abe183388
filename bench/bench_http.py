"""One prediction over HTTP: where the time goes, and what a batch call saves.

    python bench/bench_http.py --data-dir DIR [--n 300]

Copies DIR (a data dir with a trained, active version) and launches `app.py` on the copy (no
accounts), waits until the serving path is decided (int8 built and gated, or PyTorch), then
times, interleaved, on bundled tweets:

- the function in this process (`PredictActions.predict` on the same data dir and serving path);
- `POST /gradio_api/run/predict` over one kept-alive HTTP connection (what an integration does),
  without and with a `session_hash` in the body: without one, Gradio builds a new session's state
  for every request (`SessionState.__init__` -> every component's config: 86% of the request in a
  py-spy profile of this app);
- the same through `gradio_client` (a new HTTP client per call, as the library does);
- `/predict_batch` with 32 texts per call, per text;
- `/training_status` with a session_hash, the cheapest endpoint we have, for Gradio's floor.

Prints p50/p95 per path, the app's CPU per call, then one line of name=value pairs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from benchlib import client, cpu_seconds, free_port, launch, percentiles, stop

from bertdemo.actions.predict import PredictActions
from bertdemo.config import BUNDLED_DATASET, Settings
from bertdemo.datasets import load_bundled
from bertdemo.services import Services


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, type=Path, help="a data dir with an active version (copied)")
    ap.add_argument("--n", type=int, default=300, help="calls per path")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-http-")) / "runtime"
    shutil.copytree(args.data_dir, work, ignore=shutil.ignore_patterns("*.log"))
    texts = [r.text for r in load_bundled(BUNDLED_DATASET, 2000)][: args.n]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = launch(work, port, BERTDEMO_BOOTSTRAP="0")
    try:
        deadline = time.time() + 300
        while True:  # until the app answers and the serving path is decided
            try:
                st = httpx.post(f"{url}/gradio_api/run/training_status", json={"data": []}, timeout=10).json()
                note = st["data"][0].get("serving", "")
                if note and "being built" not in note:
                    break
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit("app.py did not get ready; see " + str(work / "app.log"))
            time.sleep(2)
        print(f"serving: {note}\n")

        settings = Settings.from_env().with_(data_dir=work, bootstrap=False)
        actions = PredictActions(Services.create(settings))
        actions.services.registry.ensure_servable()
        info = actions.services.registry.active_version()
        actions.services.registry.prepare_serving(info, actions.services.registry.active())  # cached: opens it

        keep = httpx.Client(base_url=url, timeout=30)
        gc = client(url, None)
        batch = texts[:32]
        paths = {
            "function, in-process": lambda t: actions.predict(t),
            "HTTP POST /gradio_api/run/predict, kept-alive connection":
                lambda t: keep.post("/gradio_api/run/predict", json={"data": [t]}).raise_for_status(),
            "same, with a session_hash": lambda t: keep.post(
                "/gradio_api/run/predict", json={"data": [t], "session_hash": "bench"}).raise_for_status(),
            "gradio_client .predict(api_name='/predict')": lambda t: gc.predict(t, api_name="/predict"),
            "HTTP /training_status with a session_hash (Gradio's floor)": lambda t: keep.post(
                "/gradio_api/run/training_status", json={"data": [], "session_hash": "bench"}).raise_for_status(),
        }
        times: dict[str, list[float]] = {k: [] for k in paths}
        cpu: dict[str, float] = dict.fromkeys(paths, 0.0)
        for name, fn in paths.items():  # warm-up
            fn(texts[0])
        for i, t in enumerate(texts):  # interleaved
            for name, fn in paths.items():
                c0 = cpu_seconds(proc.pid)
                s = time.perf_counter()
                fn(t)
                times[name].append(time.perf_counter() - s)
                cpu[name] += cpu_seconds(proc.pid) - c0
        batch_times = []
        c0 = cpu_seconds(proc.pid)
        for _ in range(max(5, args.n // 32)):
            s = time.perf_counter()
            keep.post("/gradio_api/run/predict_batch", json={"data": [batch], "session_hash": "bench"}).raise_for_status()
            batch_times.append(time.perf_counter() - s)
        batch_cpu = (cpu_seconds(proc.pid) - c0) / len(batch_times) / len(batch)
    finally:
        stop(proc)
        shutil.rmtree(work.parent, ignore_errors=True)

    print(f"{args.n} calls per path, interleaved\n")
    print("| path | p50 ms | p95 ms | app CPU per call ms |\n|---|---|---|---|")
    for name in paths:
        p50, p95, _ = percentiles(times[name])
        per = cpu[name] / len(times[name]) * 1000 if "in-process" not in name else float("nan")
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {per:.1f} |")
    per_text = statistics.median(batch_times) / len(batch) * 1000
    print(f"| HTTP /predict_batch, 32 texts per call, per text | {per_text:.2f} | | {batch_cpu * 1000:.2f} |")
    p50 = [percentiles(times[k])[0] for k in paths]  # in the order of `paths`
    print(f"\nfunction_p50_ms={p50[0]:.1f} http_p50_ms={p50[1]:.1f} http_session_p50_ms={p50[2]:.1f} "
          f"gradio_client_p50_ms={p50[3]:.1f} floor_p50_ms={p50[4]:.1f} batch_per_text_ms={per_text:.2f}")


if __name__ == "__main__":
    main()
