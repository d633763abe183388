"""The Map tab at corpus sizes: synthetic examples (half unlabelled, 1 % of a rare label, written in
one bulk insert: tests.support.synthetic_corpus) with clustered 384-D unit embeddings as the active
version's index (no model), the real Map tab (ui/corpus_map.py) served in this process, drawn in Debian chromium.

Prints per size: the points sent and the payload's bytes, the first layout (PCA of the
embeddings, once per version), the server's time for a redraw (view + JSON), a box selection
over half the map, and the time from pressing "Draw the map" to the canvas drawn in chromium
(median of --repeats; the in-page decode + draw share separately).

    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/bench_map.py [--sizes 27000,150000,300000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import free_port  # noqa: E402

from bertdemo.actions.bulk import BulkLabels
from bertdemo.actions.corpus_map import CorpusMap
from bertdemo.config import Settings
from bertdemo.services import Services
from bertdemo.ui import corpus_map
from tests.support import FixedIndex, synthetic_corpus  # noqa: E402

LABELS = ("negative", "neutral", "positive")


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def browser_draws(cmap: CorpusMap, repeats: int) -> tuple[list[float], list[float]]:
    """(seconds from the click to the canvas drawn, ms of decode + draw in the page) per repeat."""
    import gradio as gr
    from playwright.sync_api import sync_playwright

    with gr.Blocks() as demo:
        corpus_map.build(corpus_map.MapHandlers(cmap, BulkLabels(cmap.services, lambda: None)), LABELS)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    waits, page_ms = [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Map").click()
            canvas = page.locator("#map-canvas canvas")
            canvas.wait_for(timeout=30_000)
            # the same payload twice is no change for the page: alternate the colourings
            buttons = [page.locator("#map-draw")] + [page.locator("#map-colour").get_by_text(name) for name in
                                                     ("model vs. label", "people's label")] * repeats
            for button in buttons[:repeats]:
                canvas.evaluate("c => { c.dataset.total = 0; }")
                start = time.perf_counter()
                button.click()
                page.wait_for_function("() => document.querySelector('#map-canvas canvas').dataset.total > 0",
                                       timeout=60_000)
                waits.append(time.perf_counter() - start)
                page_ms.append(float(canvas.evaluate("c => c.dataset.drawMs")))
            browser.close()
    finally:
        demo.close()
    return waits, page_ms


def measure(n: int, dim: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        services = Services.create(Settings(serving="bf16", data_dir=Path(tmp) / "rt", bootstrap=False))
        cmap = CorpusMap(services, FixedIndex(synthetic_corpus(services, n, dim)))
        lay, first = timed(cmap.layout)
        server = []
        for _ in range(repeats):
            payload, took = timed(lambda: json.dumps(cmap.view("label").as_json(), separators=(",", ":")))
            server.append(took)
        x0, x1, y0, y1 = lay.bounds
        chosen, select_s = timed(cmap.select, {"box": [x0, y0, (x0 + x1) / 2, y1]})
        waits, page_ms = browser_draws(cmap, repeats)
        services.engine.dispose()
    return {"points": n, "drawn": json.loads(payload)["drawn"], "payload_bytes": len(payload),
            "layout_s": first, "server_s": statistics.median(server), "select_s": select_s, "selected": len(chosen),
            "draw_s": statistics.median(waits), "page_ms": statistics.median(page_ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="27000,150000,300000", help="corpus sizes, comma-separated")
    ap.add_argument("--dim", type=int, default=384, help="embedding width (the packaged MiniLM's is 384)")
    ap.add_argument("--repeats", type=int, default=3, help="draws per size (the median is reported)")
    args = ap.parse_args()
    print("| points | drawn | payload bytes | first layout (PCA) s | server redraw s | box select s | "
          "click to drawn in chromium s | in-page decode + draw ms |")
    print("|---|---|---|---|---|---|---|---|")
    last = {}
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(n, args.dim, args.repeats)
        print(f"| {r['points']:,} | {r['drawn']:,} | {r['payload_bytes']:,} | {r['layout_s']:.2f} | {r['server_s']:.2f} "
              f"| {r['select_s'] * 1000:.0f} ms ({r['selected']:,}) | {r['draw_s']:.2f} | {r['page_ms']:.0f} |",
              flush=True)
        last = r
    print(f"map_payload_bytes={last['payload_bytes']} map_draw_s={last['draw_s']:.2f} map_server_s={last['server_s']:.2f}")


if __name__ == "__main__":
    main()
