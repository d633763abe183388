"""Map tab: layout, wiring and its handlers (MapHandlers; its map_selection, label_examples and
undo_bulk_label are also API endpoints); the work is in bertdemo.actions.corpus_map (points,
selection) and bertdemo.actions.bulk (preview, apply, undo).

The map is a gr.HTML canvas drawn by MAP_JS from what the server sends (JSON in the component's
value: at most BERTDEMO_MAP_POINTS points as typed arrays, density cells for the rest, exact
totals per colour): drag a box, or hold Shift and draw a lasso; the region, in map coordinates,
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
          ".map-legend span { margin-right: 1em; } .map-legend .map-total { color: #555; }"
# The payload (actions/corpus_map.py, MapView.as_json) holds base64 typed arrays: Uint16 coordinates
# across `bounds`, Uint8 legend indexes, and density cells for the examples not sent. The frame
# (cells under points) is drawn once per payload to an offscreen canvas; while a box or lasso is
# dragged only that image is copied and the outline drawn over it, once per animation frame.
# Nothing passes one argument per point (Math.min(...xs) overflowed the stack from ~125k points).
MAP_JS = """
let v = null, legend = [], b = [0, 1, 0, 1], drag = null, frame = null, pending = false;
const W = 900, H = 520, P = 12, Q = 65535;
const canvas = () => element.querySelector('canvas.map-canvas');
const toData = (px, py) => [b[0] + (px - P) / (W - 2 * P) * (b[1] - b[0]), b[2] + (H - P - py) / (H - 2 * P) * (b[3] - b[2])];
const colourOf = (k) => (legend[k] || ['', '#999'])[1];
const fmt = (n) => Number(n).toLocaleString('en-US');
function bytes(s) {
  const t = atob(s || ''), a = new Uint8Array(t.length);
  for (let i = 0; i < t.length; i++) a[i] = t.charCodeAt(i);
  return a.buffer;
}
function render() {
  const off = document.createElement('canvas'); off.width = W; off.height = H;
  frame = off;
  if (!v) return;
  const ctx = off.getContext('2d');
  const g = v.grid, cw = (W - 2 * P) / g, ch = (H - 2 * P) / g;
  const cell = new Uint16Array(bytes(v.cells.cell)), cc = new Uint8Array(bytes(v.cells.c)), cn = new Uint32Array(bytes(v.cells.n));
  let top = 1;
  for (let i = 0; i < cn.length; i++) if (cn[i] > top) top = cn[i];
  const lt = Math.log1p(top);
  for (let i = 0; i < cell.length; i++) {
    const col = cell[i] % g, row = (cell[i] - col) / g;
    ctx.globalAlpha = 0.1 + 0.45 * Math.log1p(cn[i]) / lt;
    ctx.fillStyle = colourOf(cc[i]);
    ctx.fillRect(P + col * cw, H - P - (row + 1) * ch, cw, ch);
  }
  ctx.globalAlpha = 1;
  const x = new Uint16Array(bytes(v.x)), y = new Uint16Array(bytes(v.y)), c = new Uint8Array(bytes(v.c));
  const sx = (W - 2 * P) / Q, sy = (H - 2 * P) / Q;
  let last = -1;
  for (let i = 0; i < x.length; i++) {
    if (c[i] !== last) { last = c[i]; ctx.fillStyle = colourOf(last); }
    ctx.fillRect(P + x[i] * sx - 1.5, H - P - y[i] * sy - 1.5, 3, 3);
  }
}
function draw() {
  const c = canvas(); if (!c) return;
  const ctx = c.getContext('2d');
  ctx.clearRect(0, 0, W, H);
  if (frame) ctx.drawImage(frame, 0, 0);
  if (drag && drag.path.length > 1) {
    ctx.strokeStyle = '#000'; ctx.lineWidth = 1; ctx.setLineDash([4, 3]); ctx.beginPath();
    if (drag.lasso) { drag.path.forEach(([x, y], i) => i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)); ctx.closePath(); }
    else { const [a, z] = [drag.path[0], drag.path[drag.path.length - 1]]; ctx.rect(a[0], a[1], z[0] - a[0], z[1] - a[1]); }
    ctx.stroke(); ctx.setLineDash([]);
  }
}
function showLegend() {
  const lg = element.querySelector('.map-legend');
  if (!lg) return;
  lg.textContent = '';
  legend.forEach(([name, colour], i) => {
    const s = document.createElement('span');
    s.style.color = colour; s.textContent = '\\u25A0 ' + name + ' (' + fmt(v.counts[i]) + ')';
    lg.appendChild(s);
  });
  if (v) {
    const s = document.createElement('span');
    s.className = 'map-total';
    s.textContent = fmt(v.total) + ' examples; ' + fmt(v.drawn) + ' drawn' + (v.total > v.drawn ? ', the rest as shaded cells' : '');
    lg.appendChild(s);
  }
}
function load() {
  const t0 = performance.now();
  try { v = JSON.parse(props.value || 'null'); } catch (e) { v = null; }
  if (!v || v.format !== 2) v = null;
  legend = v ? v.legend : [];
  b = v ? v.bounds : [0, 1, 0, 1];
  render();
  showLegend();
  draw();
  const c = canvas();
  if (c) Object.assign(c.dataset, { total: v ? v.total : 0, drawn: v ? v.drawn : 0,
                                    bytes: (props.value || '').length, drawMs: (performance.now() - t0).toFixed(1) });
}
const pos = (e) => { const r = canvas().getBoundingClientRect(); return [(e.clientX - r.left) * W / r.width, (e.clientY - r.top) * H / r.height]; };
const later = () => { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } };
element.addEventListener('mousedown', (e) => {
  if (!e.target.classList.contains('map-canvas')) return;
  e.preventDefault();
  drag = { lasso: e.shiftKey, path: [pos(e)] };
});
window.addEventListener('mousemove', (e) => {
  if (!drag) return;
  const p = pos(e);
  if (drag.lasso) drag.path.push(p); else drag.path = [drag.path[0], p];
  later();
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
        """(the map's payload as JSON for the canvas, a line saying how many and of which version)."""
        view = self.corpus.view(colour_by)
        drawn = "all drawn" if view.drawn == view.total else f"{view.drawn:,} drawn, the rest as shaded cells"
        return (json.dumps(view.as_json(), separators=(",", ":")),
                f"{view.total:,} examples ({drawn}), embeddings of {view.version}.")

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
        gr.Markdown("Every example as a point, placed by the serving model's sentence embeddings (PCA to 2-D); "
                    "past a set number (BERTDEMO_MAP_POINTS, 50,000 by default) a sample of every colour is drawn as "
                    "points and the rest "
                    "as shaded cells, and the counts and selections still cover every example. "
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
