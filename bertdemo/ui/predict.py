"""Predict tab: the text box and its label, the Batch (CSV) panel and the HTTP API's predict
endpoints; the token views (tokens, attributions, attention) are ui/predict_tokens.py.

Handlers are module-level functions (values in, values out, testable without a browser) that
`build` wires; the work is in bertdemo.actions.predict.PredictActions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import gradio as gr

from bertdemo.actions.predict import PredictActions
from bertdemo.ui import predict_tokens
from bertdemo.ui.binding import bind
from bertdemo.ui.common import api_file, guarded, md_text, uploaded, warn

EXAMPLES = [
    "Jim Henson was a puppeteer",
    "@united lost my bag twice this month and nobody at the desk could tell me anything. Never again.",
    "@JetBlue what time does the first flight to Boston leave tomorrow?",
    "@SouthwestAir thank you for the upgrade, the crew was fantastic!",
]


class Classified(NamedTuple):
    confidences: dict[str, float]  # gr.Label's value: label -> probability
    info: str  # the version and the cleaned text it saw (Markdown)


class CsvOutput(NamedTuple):
    path: str  # the CSV with the predictions
    summary: str


class PageLoad(NamedTuple):
    """What the app runs when a page opens (ui/demo.py): the handler and its output components."""

    handler: Callable
    outputs: tuple


# ------------------------------------------------------------------------- handlers
@guarded
def classify(actions: PredictActions, text: str) -> Classified:
    """The label and the note on what the model saw, from one prediction."""
    r = actions.predict(text)
    warn(r.warnings)
    return Classified(r.confidences, f"Model version **{r.version}** saw the cleaned text:\n\n> {md_text(r.cleaned)}")


def cleared() -> tuple:
    """An empty label and note, then empty token views (predict_tokens.cleared): after an error
    nothing on screen still describes an earlier text."""
    return (None, "", *predict_tokens.cleared())


@guarded
def predict_api(actions: PredictActions, text: str) -> dict:
    """Sentiment of one text: {"label": ..., "confidences": [{"label": ..., "confidence": ...}, ...]}."""
    return actions.predict(text).as_label()


@guarded
def predict_batch(actions: PredictActions, texts: list[str]) -> list[dict]:
    """Sentiment of up to 256 texts in one call: a list with one {"label", "confidences"} per
    text, in order. One bad text refuses the whole call, saying which."""
    return [r.as_label() for r in actions.predict_batch(texts)]


@guarded
def predict_csv(actions: PredictActions, csv_file: str | None) -> CsvOutput:
    """Classify every row of an uploaded CSV with a `text` column; returns the CSV with
    predicted_label, p_<label> and error columns, and a summary."""
    r = actions.predict_csv(uploaded(csv_file))
    warn(r.warnings)
    return CsvOutput(r.path, r.summary())


# ------------------------------------------------------------------------- panels
def text_panel(labels: list[str]) -> tuple[gr.Textbox, gr.Button, gr.ClearButton, gr.Label, gr.Markdown]:
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence or paste a tweet…",
                              elem_id="predict-text")
            with gr.Row():
                go = gr.Button("Classify", variant="primary", elem_id="predict-button")
                clear = gr.ClearButton([text], value="Clear")
            gr.Examples(EXAMPLES, inputs=[text], label="Examples")
        with gr.Column(scale=2):
            label = gr.Label(num_top_classes=len(labels), label="Sentiment", elem_id="predict-label")
            info = gr.Markdown(elem_id="predict-info")
    return text, go, clear, label, info


def csv_panel(actions: PredictActions) -> None:
    gr.Markdown(f"Upload a CSV with a `text` column (UTF-8, up to {actions.settings.max_upload_mb:.0f} MB). "
                "You get it back with `predicted_label`, one probability column per class and an "
                "`error` column for rows that could not be classified.")
    upload = api_file(label="CSV to classify", file_types=[".csv"], elem_id="csv-upload")
    go = gr.Button("Classify CSV", elem_id="csv-button")
    result = gr.File(label="Predictions", elem_id="csv-result")
    summary = gr.Markdown()
    go.click(bind(predict_csv, actions), [upload], [result, summary], api_name="predict_csv")


def build(actions: PredictActions) -> PageLoad:
    labels = list(actions.settings.labels)
    text, go, clear, label, info = text_panel(labels)
    views = predict_tokens.token_panels(labels)
    with gr.Tab("Batch (CSV)"):
        csv_panel(actions)

    shown = [label, info, *views.outputs()]
    clear.add(shown)  # Clear empties the label, the note and the views with the text
    classified = gr.on([go.click, text.submit], bind(classify, actions), [text], [label, info],
                       api_name="classify", api_visibility="private")
    classified.failure(cleared, None, shown, api_visibility="private", queue=False)
    predict_tokens.wire(actions, classified, text, views)
    # The HTTP API's predict skips the queue (like the label endpoints): through the queue (join +
    # event stream) a call cost several times its model time in server CPU, and under mixed load
    # predictions waited seconds (bench/README.md, bench_load).
    # The page's Classify stays queued: its warnings (gr.Warning) travel on the queue's stream.
    gr.api(bind(predict_api, actions), api_name="predict", queue=False, concurrency_limit=None)
    gr.api(bind(predict_batch, actions), api_name="predict_batch", queue=False, concurrency_limit=None)
    return PageLoad(bind(predict_tokens.slider_bounds, actions), (views.layer, views.head))
