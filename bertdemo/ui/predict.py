"""Predict tab: layout and wiring only; the work is in bertdemo.actions.predict.PredictActions."""

from __future__ import annotations

import gradio as gr

from bertdemo.actions.predict import PredictActions
from bertdemo.ui import plots
from bertdemo.ui.common import api_file, api_slider, guarded, md_text, uploaded, warn

EXAMPLES = [
    "Jim Henson was a puppeteer",
    "@united lost my bag twice this month and nobody at the desk could tell me anything. Never again.",
    "@JetBlue what time does the first flight to Boston leave tomorrow?",
    "@SouthwestAir thank you for the upgrade, the crew was fantastic!",
]


def build(actions: PredictActions) -> None:
    clf_labels = list(actions.settings.labels)
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence or paste a tweet…",
                              elem_id="predict-text")
            with gr.Row():
                go = gr.Button("Classify", variant="primary", elem_id="predict-button")
                gr.ClearButton([text], value="Clear")
            gr.Examples(EXAMPLES, inputs=[text], label="Examples")
        with gr.Column(scale=2):
            label = gr.Label(num_top_classes=len(clf_labels), label="Sentiment", elem_id="predict-label")
            info = gr.Markdown(elem_id="predict-info")

    with gr.Tab("Tokens"):
        gr.Markdown("How BERT sees the text: WordPiece tokens and their vocabulary ids, the special "
                    "`[CLS]` (first) and `[SEP]` (last) tokens, and the attention mask (1 = real token, "
                    "0 = `[PAD]`, ignored). Choose a padded length to see `[PAD]` positions.")
        pad = api_slider(0, 128, value=0, step=1, label="Padded length (0 = no padding)")
        table = gr.Dataframe(label="Tokenization", interactive=False, elem_id="token-table", wrap=True)
    with gr.Tab("Attributions"):
        gr.Markdown("How much each token pushed the model towards the chosen class: Gradient × Input "
                    "first (instant), then Integrated Gradients (captum, 16 steps on the embedding layer) "
                    "replaces it. Red (positive) = towards it, purple (negative) = away from it.")
        with gr.Row():
            target = gr.Radio(["predicted", *clf_labels], value="predicted", label="Class to explain")
            merge = gr.Checkbox(value=True, label="Merge WordPieces into words")
        attributions = gr.HighlightedText(label="Attributions", show_legend=True, elem_id="attributions",
                                          combine_adjacent=False)
        with gr.Accordion("Raw attributions (JSON)", open=False):
            raw = gr.JSON(label="Attributions")
    with gr.Tab("Attention"):
        gr.Markdown("Attention weights of one layer: each row is a token, each column what it attends to. "
                    "Head 0 shows the mean over all heads.")
        with gr.Row():
            layer = gr.Slider(1, 12, value=1, step=1, label="Layer")
            head = gr.Slider(0, 12, value=0, step=1, label="Head (0 = mean over heads)")
        heat = gr.Plot(label="Attention", elem_id="attention-plot")
    with gr.Tab("Batch (CSV)"):
        gr.Markdown(f"Upload a CSV with a `text` column (UTF-8, up to {actions.settings.max_upload_mb:.0f} MB). "
                    "You get it back with `predicted_label`, one probability column per class and an "
                    "`error` column for rows that could not be classified.")
        upload = api_file(label="CSV to classify", file_types=[".csv"], elem_id="csv-upload")
        csv_go = gr.Button("Classify CSV", elem_id="csv-button")
        result = gr.File(label="Predictions", elem_id="csv-result")
        summary = gr.Markdown()

    # ---------------------------------------------------------------- callbacks
    @guarded
    def predict(t: str) -> dict[str, float]:
        r = actions.predict(t)
        warn(r.warnings)
        return r.confidences

    @guarded
    def predict_api(text: str) -> dict:
        """Sentiment of one text: {"label": ..., "confidences": [{"label": ..., "confidence": ...}, ...]}."""
        return actions.predict(text).as_label()

    @guarded
    def predict_batch(texts: list[str]) -> list[dict]:
        """Sentiment of up to 256 texts in one call: a list with one {"label", "confidences"} per
        text, in order. One bad text refuses the whole call, saying which."""
        return [r.as_label() for r in actions.predict_batch(texts)]

    @guarded
    def describe(t: str) -> str:
        r = actions.predict(t)
        return f"Model version **{r.version}** saw the cleaned text:\n\n> {md_text(r.cleaned)}"

    @guarded
    def tokens(text: str, padded_length: float):
        """The WordPiece tokenization of a text: one row per position (token, id, special, attention
        mask, segment, word); `padded_length` > 0 pads with [PAD] to that length (mask 0)."""
        return actions.tokens(text, padded_length)

    @guarded
    def explain(text: str, target_class: str, merge_wordpieces: bool):
        """Integrated Gradients of a text for `target_class` ("predicted" or a label): how much each
        token pushed the model towards it; with `merge_wordpieces`, per word instead of per piece."""
        r = actions.explain(text, target_class, merge_wordpieces)
        return r.highlighted, r.as_api()

    @guarded
    def quick_explain(text: str, target_class: str, merge_wordpieces: bool):
        r = actions.explain(text, target_class, merge_wordpieces, quick=True)
        return r.highlighted, r.as_api()

    @guarded
    def attention(t: str, lay: float, hd: float):
        m = actions.attention(t, int(lay), int(hd) or None)
        title = f"layer {m.layer}, " + (f"head {m.head}" if m.head else "mean over heads")
        return plots.attention_heatmap(m.tokens, m.weights, title)

    @guarded
    def predict_csv(csv_file: str | None):
        """Classify every row of an uploaded CSV with a `text` column; returns the CSV with
        predicted_label, p_<label> and error columns, and a summary."""
        r = actions.predict_csv(uploaded(csv_file))
        warn(r.warnings)
        return r.path, r.summary()

    def sync_sliders():
        try:
            clf = actions.model()
        except Exception:  # noqa: BLE001 - no model yet: keep the defaults
            return gr.update(), gr.update()
        return gr.update(maximum=clf.num_layers), gr.update(maximum=clf.num_heads)

    trigger = [go.click, text.submit]
    ev = gr.on(trigger, predict, [text], [label], api_name="classify", api_visibility="private")
    ev.then(describe, [text], [info], api_visibility="private")
    ev.success(tokens, [text, pad], [table], api_name="tokenize")
    ev.success(quick_explain, [text, target, merge], [attributions, raw], api_visibility="private",
               show_progress="hidden").success(explain, [text, target, merge], [attributions, raw], api_name="explain")
    ev.success(attention, [text, layer, head], [heat], api_visibility="private")
    pad.release(tokens, [text, pad], [table], api_visibility="private")
    gr.on([target.change, merge.change], quick_explain, [text, target, merge], [attributions, raw],
          api_visibility="private", trigger_mode="always_last", show_progress="hidden").success(
        explain, [text, target, merge], [attributions, raw], api_visibility="private")
    gr.on([layer.release, head.release], attention, [text, layer, head], [heat], api_visibility="private")
    csv_go.click(predict_csv, [upload], [result, summary], api_name="predict_csv")
    # The HTTP API's predict skips the queue (like the label endpoints): through the queue (join +
    # event stream) a call cost several times its model time in server CPU, and under mixed load
    # predictions waited seconds (bench/README.md, bench_load).
    # The page's Classify stays queued: its warnings (gr.Warning) travel on the queue's stream.
    gr.api(predict_api, api_name="predict", queue=False, concurrency_limit=None)
    gr.api(predict_batch, api_name="predict_batch", queue=False, concurrency_limit=None)
    return sync_sliders, (layer, head)
