"""The Map tab at scale in Debian chromium: 150,000 synthetic examples (rows written in one bulk
insert, random 16-D embeddings as the active version's index, no model) behind the real Map tab
(ui/corpus_map.py) in an in-process Gradio app. The map must draw (a non-blank canvas, several
colours) in under 3 s from the click, from a payload under 3 MB, show the exact totals, and a box
over all of it must select every example, not only the points drawn.
The Map tab on a trained app, with bulk labels and the queue, is in test_annotate.py."""

from __future__ import annotations

import re
import time

import pytest

from bertdemo.actions.bulk import BulkLabels
from bertdemo.actions.corpus_map import CorpusMap
from bertdemo.config import Settings
from bertdemo.services import Services
from bertdemo.ui import corpus_map
from tests.support import LABELS, FixedIndex, free_port, synthetic_corpus

N = 150_000


@pytest.fixture(scope="module")
def map_app(tmp_path_factory):
    """The Map tab alone, served in this process on N synthetic examples; (url, CorpusMap)."""
    import gradio as gr

    services = Services.create(Settings(serving="bf16", data_dir=tmp_path_factory.mktemp("map") / "rt",
                                        bootstrap=False))
    cmap = CorpusMap(services, FixedIndex(synthetic_corpus(services, N)))
    cmap.layout()  # the projection is computed once per version, before anyone draws (as a warm cache)
    with gr.Blocks() as demo:
        corpus_map.build(corpus_map.MapHandlers(cmap, BulkLabels(services, lambda: None)), LABELS)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", cmap
    finally:
        demo.close()
        services.engine.dispose()


def test_a_map_of_150k_points_draws_in_chromium_in_under_3_s(browser, map_app):
    from playwright.sync_api import expect

    url, cmap = map_app
    ctx = browser.new_context(viewport={"width": 1300, "height": 1100})
    try:
        page = ctx.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Map").click()
        canvas = page.locator("#map-canvas canvas")
        expect(canvas).to_be_visible(timeout=30_000)
        start = time.perf_counter()
        page.locator("#map-draw").click()
        page.wait_for_function("() => document.querySelector('#map-canvas canvas').dataset.total > 0",
                               timeout=30_000)
        took = time.perf_counter() - start  # server, transfer, decoding and drawing: what a person waits
        data = canvas.evaluate("c => ({...c.dataset})")
        assert int(data["total"]) == N and int(data["drawn"]) == cmap.max_points == 50_000
        assert int(data["bytes"]) < 3_000_000, data
        assert took < 3.0, f"the map took {took:.2f} s to draw ({data['drawMs']} ms of it in the page)"
        # non-blank: many coloured pixels, of several colours (the shaded cells and points)
        painted = canvas.evaluate("""c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, seen = new Set();
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) { n++; seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]); }
            return [n, seen.size];
        }""")
        assert painted[0] > 20_000 and painted[1] >= 4, painted
        # exact totals, not the sample's
        view = cmap.view("label")
        legend = page.locator("#map-canvas .map-legend")
        for (name, _c), count in zip(view.legend, view.counts):
            expect(legend).to_contain_text(f"{name} ({count:,})")
        expect(legend).to_contain_text(f"{N:,} examples; 50,000 drawn")
        expect(page.locator("#map-message")).to_contain_text(f"{N:,} examples (50,000 drawn")
        assert 500 < view.counts[LABELS.index("neutral")] < 2_500  # the rare colour ...
        assert int((view.keys == LABELS.index("neutral")).sum()) > 300  # ... well represented among the points

        # a box over the whole canvas selects every example, not only the 50,000 drawn
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + 1, box["y"] + 1)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=20)
        page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] - 1, steps=20)
        page.mouse.up()
        selected = page.locator("#map-selected")
        expect(selected).to_contain_text("examples selected", timeout=30_000)
        n = int(re.search(r"([\d,]+)\s+examples selected", selected.inner_text()).group(1).replace(",", ""))
        assert n == N
    finally:
        ctx.close()
