"""Map tab: layout, wiring and its handlers (MapHandlers; its map_selection, label_examples and
undo_bulk_label are also API endpoints); the work is in bertdemo.actions.corpus_map (points,
selection) and bertdemo.actions.bulk (preview, apply, undo).

The map is a gr.HTML canvas drawn by MAP_JS from the points the server sends (JSON in the
component's value): drag a box, or hold Shift and draw a lasso; the region, in map coordinates,
comes back as the `select` event's data. Example texts are never put into the page as HTML.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.bulk import MAX_BULK, SAMPLE_COLUMNS, BulkLabels, BulkPreview
from bertdemo.actions.corpus_map import CorpusMap
from bertdemo.errors import BadInput
from bertdemo.ui.common import ADMIN_ONLY, guarded, user_of

MAP_TEMPLATE = '<div class="map-wrap"><canvas class="map-canvas" width="900" height="520"></canvas>' \
               '<div class="map-legend"></div></div>'
MAP_CSS = ".map-canvas { width: 100%; max-width: 900px; border: 1px solid #ddd; cursor: crosshair; } " \
          ".map-legend span { margin-right: 1em; }"
MAP_JS = """
let pts = [], legend = [], b = [0, 1, 0, 1], drag = null;
const W = 900, H = 520, P = 12;
const canvas = () => element.querySelector('canvas.map-canvas');
const toPx = (x, y) => [P + (x - b[0]) / (b[1] - b[0]) * (W - 2 * P), H - P - (y - b[2]) / (b[3] - b[2]) * (H - 2 * P)];
const toData = (px, py) => [b[0] + (px - P) / (W - 2 * P) * (b[1] - b[0]), b[2] + (H - P - py) / (H - 2 * P) * (b[3] - b[2])];
function draw() {
  const c = canvas(); if (!c) return;
  const ctx = c.getContext('2d');
  ctx.clearRect(0, 0, W, H);
  for (const p of pts) {
    const [px, py] = toPx(p[0], p[1]);
    ctx.fillStyle = (legend[p[2]] || ['', '#999'])[1];
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  }
  if (drag && drag.path.length > 1) {
    ctx.strokeStyle = '#000'; ctx.lineWidth = 1; ctx.setLineDash([4, 3]); ctx.beginPath();
    if (drag.lasso) { drag.path.forEach(([x, y], i) => i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)); ctx.closePath(); }
    else { const [a, z] = [drag.path[0], drag.path[drag.path.length - 1]]; ctx.rect(a[0], a[1], z[0] - a[0], z[1] - a[1]); }
    ctx.stroke(); ctx.setLineDash([]);
  }
}
function load() {
  let v = {};
  try { v = JSON.parse(props.value || '{}'); } catch (e) { v = {}; }
  pts = v.points || []; legend = v.legend || [];
  if (pts.length) {
    const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
    b = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    if (b[1] === b[0]) b[1] = b[0] + 1;
    if (b[3] === b[2]) b[3] = b[2] + 1;
  }
  const lg = element.querySelector('.map-legend');
  if (lg) {
    lg.textContent = '';
    const counts = legend.map((_, i) => pts.filter(p => p[2] === i).length);
    legend.forEach(([name, colour], i) => {
      const s = document.createElement('span');
      s.style.color = colour; s.textContent = '\\u25A0 ' + name + ' (' + counts[i] + ')';
      lg.appendChild(s);
    });
  }
  draw();
}
const pos = (e) => { const r = canvas().getBoundingClientRect(); return [(e.clientX - r.left) * W / r.width, (e.clientY - r.top) * H / r.height]; };
element.addEventListener('mousedown', (e) => {
  if (!e.target.classList.contains('map-canvas')) return;
  e.preventDefault();
  drag = { lasso: e.shiftKey, path: [pos(e)] };
});
window.addEventListener('mousemove', (e) => {
  if (!drag) return;
  const p = pos(e);
  if (drag.lasso) drag.path.push(p); else drag.path = [drag.path[0], p];
  draw();
});
window.addEventListener('mouseup', () => {
  if (!drag) return;
  const d = drag; drag = null; draw();
  if (d.path.length < 2) return;
  let region;
  if (d.lasso) region = { lasso: d.path.filter((_, i) => i % Math.ceil(d.path.length / 500) === 0).map(([x, y]) => toData(x, y)) };
  else { const [a, z] = [toData(...d.path[0]), toData(...d.path[d.path.length - 1])]; region = { box: [a[0], a[1], z[0], z[1]] }; }
  trigger('select', { region: region });
});
watch('value', load);
load();
"""


SAMPLE_WIDTHS = ["8%", "12%", "12%", "68%"]  # shares of the panel: the short columns narrow, the text wraps


class Selected(NamedTuple):
    """A region selected on the map (the outputs, in order)."""

    ids: list[int]
    message: str
    preview: BulkPreview | None  # cleared: a new selection needs a new preview
    sample: pd.DataFrame  # SAMPLE_COLUMNS


class Previewed(NamedTuple):
    preview: BulkPreview
    message: str
    sample: pd.DataFrame


class MapHandlers:
    def __init__(self, corpus: CorpusMap, bulk: BulkLabels) -> None:
        self.corpus = corpus
        self.bulk = bulk

    @guarded
    def draw_map(self, colour_by: str) -> tuple[str, str]:
        """(the points as JSON for the canvas, a line saying how many and of which version)."""
        view = self.corpus.view(colour_by)
        return json.dumps(view.as_json()), f"{len(view.points):,} examples, embeddings of {view.version}."

    @guarded
    def select_region(self, evt: gr.EventData) -> Selected:
        return self.selected((evt._data or {}).get("region"))

    def selected(self, region: object) -> Selected:
        ids = self.corpus.select(region)
        return Selected(ids, f"**{len(ids):,}** examples selected.", None, pd.DataFrame(columns=SAMPLE_COLUMNS))

    @guarded
    def send_selection_to_queue(self, ids: list, request: gr.Request) -> str:
        if not ids:
            raise BadInput("The selection is empty: drag a box on the map first.")
        n = self.corpus.keep_selection(ids, user_of(request))
        return f"Your *Map selection (yours)* queue in the Label view now holds these {n:,} examples."

    @guarded
    def preview_map_label(self, ids: list, label: str | None) -> Previewed:
        if not label:
            raise BadInput("Choose the label to give the selection first.")
        p = self.bulk.preview(ids, label)
        return Previewed(p, p.summary() + " Press **Apply to all** to label them.", p.sample)

    @guarded
    def apply_map_label(self, preview: BulkPreview | None, request: gr.Request) -> tuple[None, str | None, str]:
        """(the preview, used up; the batch, for its undo; a summary)."""
        if preview is None:
            raise BadInput("Preview the bulk label first (nothing was changed).")
        result = self.bulk.apply(preview, user_of(request))
        return None, result.batch, result.summary()

    @guarded
    def undo_map_label(self, batch: str | None, request: gr.Request) -> tuple[None, str]:
        if not batch:
            raise BadInput("No bulk label of yours to undo in this session.")
        return None, self.bulk.undo(batch, user_of(request)).summary()

    # ---------------------------------------------------------------- API
    @guarded
    def map_selection(self, region: dict, request: gr.Request = None) -> list[int]:  # type: ignore[assignment]
        """The example ids inside a region of the map ({"box": [x0, y0, x1, y1]} or {"lasso": [[x, y],
        ...]}), which also become your "Map selection (yours)" queue."""
        ids = self.corpus.select(region)
        self.corpus.keep_selection(ids, user_of(request))
        return ids

    @guarded
    def label_examples(self, example_ids: list[int], label: str, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Give every example of `example_ids` (at most 100,000) one label, as one batch that
        /undo_bulk_label takes back in one step; rows already labelled so are left alone (admins only)."""
        return self.bulk.apply(self.bulk.preview(example_ids, label), user_of(request)).as_api()

    @guarded
    def undo_bulk_label(self, batch: str, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Take back a bulk label (its `batch` id): rows changed since are left as they are (admins only)."""
        return self.bulk.undo(batch, user_of(request)).as_api()


def build(handlers: MapHandlers, labels: tuple[str, ...]) -> None:
    """The Map tab, wired."""
    private = {"api_visibility": "private"}
    with gr.Tab("Map"):
        gr.Markdown("Every example as a point, placed by the serving model's sentence embeddings (PCA to 2-D). "
                    "**Drag** a box, or hold **Shift** and draw a lasso, to select a region; then send it to "
                    "your *Map selection* queue (Label view), or label it all at once (admins; a preview first, "
                    f"one undo for the whole batch; at most {MAX_BULK:,} examples).")
        with gr.Row():
            colour = gr.Radio([("people's label", "label"), ("model's prediction", "prediction"),
                               ("model vs. label", "disagreement")], value="label", label="Colour by",
                              elem_id="map-colour")
            draw_btn = gr.Button("Draw the map", elem_id="map-draw")
        canvas = gr.HTML("", html_template=MAP_TEMPLATE, css_template=MAP_CSS, js_on_load=MAP_JS,
                         elem_id="map-canvas")
        chosen = gr.State([])  # ids of the selected region
        preview_state = gr.State(None)
        batch_state = gr.State(None)
        selected = gr.Markdown("Nothing selected yet.", elem_id="map-selected")
        with gr.Row():
            to_queue = gr.Button("Send to my queue", elem_id="map-to-queue")
            label = gr.Radio(list(labels), label="Label the selection", elem_id="map-label")
            preview_btn = gr.Button("Preview", elem_id="map-preview")
            apply_btn = gr.Button("Apply to all", variant="primary", elem_id="map-apply", elem_classes=ADMIN_ONLY)
            undo_btn = gr.Button("Undo that bulk label", elem_id="map-undo")
        message = gr.Markdown(elem_id="map-message")
        sample = gr.Dataframe(label="Preview (first rows)", headers=SAMPLE_COLUMNS, column_widths=SAMPLE_WIDTHS,
                              wrap=True, interactive=False, elem_id="map-sample")

    gr.on([draw_btn.click, colour.input], handlers.draw_map, [colour], [canvas, message], **private)
    canvas.select(handlers.select_region, None, [chosen, selected, preview_state, sample], **private)
    to_queue.click(handlers.send_selection_to_queue, [chosen], [message], **private)
    preview_btn.click(handlers.preview_map_label, [chosen, label], [preview_state, message, sample], **private)
    apply_btn.click(handlers.apply_map_label, [preview_state], [preview_state, batch_state, message], **private)
    undo_btn.click(handlers.undo_map_label, [batch_state], [batch_state, message], **private)


def register_api(handlers: MapHandlers) -> None:
    """The map's and bulk labels' endpoints (after the last tab of the row: an endpoint ends a row of tabs)."""
    gr.api(handlers.map_selection, api_name="map_selection")
    gr.api(handlers.label_examples, api_name="label_examples")
    gr.api(handlers.undo_bulk_label, api_name="undo_bulk_label")
