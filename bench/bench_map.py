"""The Map tab at corpus sizes: synthetic examples (half unlabelled, 1 % of a rare label, written in
one bulk insert: tests.support.synthetic_corpus) with clustered 384-D unit embeddings written as an
active version's embeddings file and random stored scores (no model), on SQLite or PostgreSQL.

Prints per size and backend:
- the re-scoring follow-up's "mapping" phase (training/follow_up.lay_out: fit on 50k rows, project
  and store the coordinates per chunk): its time and the RSS (and private RssAnon) it adds;
- the first draw (layout + view + JSON, server time) of a version whose coordinates are stored, and
  of one whose are not (re-scored before migration 0012: the map lays it out from the embeddings,
  then stores it in the background, whose time is printed too), and a redraw;
- a box over half the map and a lasso (a triangle): time and count, checked exact against a test
  over every point's coordinates;
- with --browser, the time from pressing "Draw the map" to the canvas drawn in chromium (median of
  --repeats; the in-page decode + draw share separately), on the stored coordinates.

    flock /tmp/bertdemo-pytest.lock nice -n 5 .venv/bin/python bench/bench_map.py --sizes 300000
    flock /tmp/bertdemo-pytest.lock nice -n 5 .venv/bin/python bench/bench_map.py --sizes 300000 \\
        --db postgresql+psycopg://bertdemo:bertdemo@127.0.0.1:5432/bertdemo_test   # in a private schema
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from benchlib import cpu_model, free_port
from matplotlib.path import Path as Polygon
from sqlalchemy.orm import Session

from bertdemo.actions.bulk import BulkLabels
from bertdemo.actions.corpus_map import CorpusMap
from bertdemo.config import Settings
from bertdemo.db import keysets, map_coords, versions
from bertdemo.model import vectors
from bertdemo.services import Services
from bertdemo.training import follow_up
from bertdemo.ui import corpus_map
from tests.support import postgres_schema, synthetic_corpus, wait_for

LABELS = ("negative", "neutral", "positive")


class FromFile:
    """What CorpusMap asks of SimilarExamples (its `index()`): the version's embeddings file, mapped."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def index(self):
        return vectors.load(self.path)


class Memory:
    """Peak VmRSS and RssAnon of this process above where they were at the start, sampled every 10 ms."""

    def __init__(self) -> None:
        self.start = self._read()
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _read() -> dict[str, float]:
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0]) / 1024
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for k, v in self._read().items():
                self.peak[k] = max(self.peak[k], v)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def added(self) -> str:
        return f"+{self.peak['VmRSS'] - self.start['VmRSS']:.0f} MB RSS (+{self.peak['RssAnon'] - self.start['RssAnon']:.0f} MB anon)"


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def draw(cmap: CorpusMap) -> str:
    return json.dumps(cmap.view("label").as_json(), separators=(",", ":"))


def seed(services: Services, n: int, dim: int) -> tuple[int, Path]:
    """The corpus, an active version v1 with random scores of every example, its embeddings file."""
    index = synthetic_corpus(services, n, dim)
    with Session(services.engine) as s, s.begin():
        vid = versions.add_version(s, name="v1", path="models/v1", base_model="synthetic", is_active=True).id
    rng = np.random.default_rng(2)
    for a in range(0, n, 20_000):
        ids = index.ids[a:a + 20_000]
        with Session(services.engine) as s, s.begin():
            versions.save_scores(s, vid, ids.tolist(), rng.dirichlet([1.0, 1.0, 1.0], size=len(ids)), LABELS)
    path = services.registry.folder(services.registry.active_version()) / vectors.VECTORS_FILE
    with vectors.Writer(path, index.ids, dim) as w:
        for a in range(0, n, vectors.CHUNK_ROWS):
            w.add(index.vectors[a:a + vectors.CHUNK_ROWS])
    return vid, path


def complete(services: Services, vid: int) -> bool:
    with Session(services.engine) as s:
        return map_coords.complete(s, vid)


def selections(cmap: CorpusMap) -> dict:
    """A box over the left half and a triangle, timed, their counts checked against every point."""
    lay = cmap.layout()
    x0, x1, y0, y1 = lay.bounds
    xy = lay.xy.astype(np.float64)
    box = [x0, y0, (x0 + x1) / 2, y1]
    got, box_s = timed(cmap.select, {"box": box})
    want = int(((xy[:, 0] >= x0) & (xy[:, 0] <= box[2]) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)).sum())
    (ax, bx), (ay, by) = np.quantile(xy[:, 0], [0.1, 0.9]), np.quantile(xy[:, 1], [0.1, 0.9])
    tri = [[ax, ay], [bx, ay], [(ax + bx) / 2, by]]  # over the middle of the points, wherever they cluster
    lasso, lasso_s = timed(cmap.select, {"lasso": tri})
    lasso_want = int(Polygon(np.array(tri)).contains_points(xy).sum())
    return {"box_s": box_s, "box": len(got), "box_exact": len(got) == want, "lasso_s": lasso_s,
            "lasso": len(lasso), "lasso_exact": len(lasso) == lasso_want}


def measure(n: int, dim: int, url: str | None, repeats: int, browser: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        services = Services.create(Settings(serving="bf16", data_dir=Path(tmp) / "rt", bootstrap=False, db_url=url))
        vid, path = seed(services, n, dim)
        r: dict = {"points": n, "backend": services.engine.dialect.name}
        # a version re-scored before 0012: the map lays itself out, then stores it in the background
        fallback = CorpusMap(services, FromFile(path))
        payload, r["fallback_first_s"] = timed(draw, fallback)
        _, r["background_store_s"] = timed(wait_for, lambda: complete(services, vid), 600, 0.05, "the stored map")
        wait_for(lambda: services.jobs.activity() == "", 60, 0.05, "the background store's end")
        # the re-scoring's follow-up: the mapping phase again (every row rewritten), timed, its memory
        with Memory() as mem:
            _, r["mapping_s"] = timed(follow_up.lay_out, services.engine, path, vid)
        r["mapping_mem"] = mem.added()
        stored = CorpusMap(services, FromFile(path))
        payload, r["stored_first_s"] = timed(draw, stored)
        assert stored.layout().version_id == vid, "the map did not read its stored coordinates"
        r["redraw_s"] = statistics.median(timed(draw, stored)[1] for _ in range(repeats))
        r["payload_bytes"], r["drawn"] = len(payload), json.loads(payload)["drawn"]
        r |= selections(stored)
        if browser:
            waits, page_ms = browser_draws(stored, repeats)
            r["draw_s"], r["page_ms"] = statistics.median(waits), statistics.median(page_ms)
        with Session(services.engine) as s:
            assert len(keysets.scored_ids(s, vid)) == n
        services.engine.dispose()
    return r


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="27000,150000,300000", help="corpus sizes, comma-separated")
    ap.add_argument("--dim", type=int, default=384, help="embedding width (the packaged MiniLM's is 384)")
    ap.add_argument("--repeats", type=int, default=3, help="redraws (and browser draws) per size: the median")
    ap.add_argument("--db", default="", help="a PostgreSQL URL (a private schema is made and dropped); else SQLite")
    ap.add_argument("--browser", action="store_true", help="also time the draw in chromium")
    args = ap.parse_args()
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}")
    print("| points | db | mapping phase s, memory | first draw stored s | first draw not stored s (then stored in "
          "the background s) | redraw s | payload bytes (drawn) | box s (count) | lasso s (count) | chromium s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        with (postgres_schema(args.db) if args.db else contextlib.nullcontext(None)) as url:
            r = measure(n, args.dim, url, args.repeats, args.browser)
        exact = "exact" if r["box_exact"] and r["lasso_exact"] else "NOT EXACT"
        chromium = f"{r['draw_s']:.2f} ({r['page_ms']:.0f} ms in page)" if "draw_s" in r else "-"
        print(f"| {n:,} | {r['backend']} | {r['mapping_s']:.2f}, {r['mapping_mem']} | {r['stored_first_s']:.2f} | "
              f"{r['fallback_first_s']:.2f} ({r['background_store_s']:.1f}) | {r['redraw_s']:.2f} | "
              f"{r['payload_bytes']:,} ({r['drawn']:,}) | {r['box_s'] * 1000:.0f} ms ({r['box']:,}) | "
              f"{r['lasso_s'] * 1000:.0f} ms ({r['lasso']:,}) {exact} | {chromium} |", flush=True)


if __name__ == "__main__":
    main()
