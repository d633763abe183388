"""The Predict tab's token views: the tokenization table, the attributions (Gradient x Input first,
then Integrated Gradients) and the attention map of one layer and head.

Each view is a panel function that makes its components and module-level handlers (values in,
values out, testable without a browser); `wire` connects them to a classification. The work is in
bertdemo.actions.predict.PredictActions.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.predict import PredictActions
from bertdemo.model import views
from bertdemo.model.explain import TOKEN_COLUMNS
from bertdemo.ui import plots
from bertdemo.ui.binding import bind
from bertdemo.ui.common import api_slider, guarded

METHOD_NAMES = {"gradient_x_input": "Gradient × Input", "integrated_gradients": "Integrated Gradients"}


class TokenPanels(NamedTuple):
    """The components of the three token views."""

    pad: gr.Slider
    table: gr.Dataframe
    target: gr.Radio
    merge: gr.Checkbox
    attributions: gr.HighlightedText
    raw: gr.JSON
    method: gr.Markdown  # which method produced the attributions on screen
    layer: gr.Slider
    head: gr.Slider
    heat: gr.Plot
    attention_caption: gr.Markdown

    def outputs(self) -> list:
        """What a classification fills in (and an error or Clear empties)."""
        return [self.table, self.attributions, self.raw, self.method, self.heat, self.attention_caption]


class Explained(NamedTuple):
    highlighted: list[tuple[str, float | None]]  # gr.HighlightedText's (piece, score) pairs
    raw: dict  # ExplainResult.as_api(): the method, its steps, every token's score


class AttentionView(NamedTuple):
    plot: Any  # a matplotlib Figure
    caption: str  # the layer and head drawn


# ------------------------------------------------------------------------- handlers
@guarded
def tokens(actions: PredictActions, text: str, padded_length: float) -> pd.DataFrame:
    """The WordPiece tokenization of a text: one row per position (token, id, special, attention
    mask, segment, word); `padded_length` > 0 pads with [PAD] to that length (mask 0)."""
    return actions.tokens(text, padded_length)


@guarded
def explain(actions: PredictActions, text: str, target_class: str, merge_wordpieces: bool) -> Explained:
    """Integrated Gradients of a text for `target_class` ("predicted" or a label): how much each
    token pushed the model towards it; with `merge_wordpieces`, per word instead of per piece."""
    r = actions.explain(text, target_class, merge_wordpieces)
    return Explained(r.highlighted, r.as_api())


@guarded
def quick_explain(actions: PredictActions, text: str, target_class: str, merge_wordpieces: bool) -> Explained:
    """Gradient x Input: the instant first view that `explain` then replaces."""
    r = actions.explain(text, target_class, merge_wordpieces, quick=True)
    return Explained(r.highlighted, r.as_api())


def method_caption(raw: dict | None) -> str:
    """Which method produced the attributions on screen, read from their raw JSON."""
    if not raw or raw.get("method") not in METHOD_NAMES:
        return ""
    towards = f" towards **{raw['target']}**" if raw.get("target") else ""
    if raw["method"] == "gradient_x_input":
        return (f"Showing **Gradient × Input**{towards}: the instant first view (one backward pass); "
                "Integrated Gradients replaces it when it is ready.")
    delta = raw.get("convergence_delta")
    detail = f", convergence delta {delta:.3g}" if isinstance(delta, (int, float)) else ""
    return f"Showing **Integrated Gradients**{towards} ({raw.get('steps')} steps{detail})."


@guarded
def attention(actions: PredictActions, text: str, layer: float, head: float) -> AttentionView:
    m = actions.attention(text, int(layer), int(head) or None)
    title = f"layer {m.layer}, " + (f"head {m.head}" if m.head else "mean over heads")
    return AttentionView(plots.attention_heatmap(m.tokens, m.weights, title), f"Attention of {title}.")


def cleared() -> tuple:
    """Empty token views, in the order of TokenPanels.outputs()."""
    return None, None, None, "", None, ""


def slider_bounds(actions: PredictActions) -> tuple[dict, dict]:
    """The layer and head sliders' maxima from the serving model (on page load)."""
    try:
        clf = actions.model()
    except Exception:  # noqa: BLE001 - no model yet: keep the defaults
        return gr.update(), gr.update()
    return gr.update(maximum=views.num_layers(clf)), gr.update(maximum=views.num_heads(clf))


# ------------------------------------------------------------------------- panels
def tokens_panel() -> tuple[gr.Slider, gr.Dataframe]:
    gr.Markdown("How BERT sees the text: WordPiece tokens and their vocabulary ids, the special "
                "`[CLS]` (first) and `[SEP]` (last) tokens, and the attention mask (1 = real token, "
                "0 = `[PAD]`, ignored). Choose a padded length to see `[PAD]` positions.")
    pad = api_slider(0, 128, value=0, step=1, label="Padded length (0 = no padding)")
    table = gr.Dataframe(headers=list(TOKEN_COLUMNS), label="Tokenization", interactive=False,
                         elem_id="token-table", wrap=True)
    return pad, table


def attributions_panel(labels: list[str]) -> tuple[gr.Radio, gr.Checkbox, gr.HighlightedText, gr.JSON, gr.Markdown]:
    gr.Markdown("How much each token pushed the model towards the chosen class: Gradient × Input "
                "first (instant), then Integrated Gradients (captum, 16 steps on the embedding layer) "
                "replaces it. Red (positive) = towards it, purple (negative) = away from it.")
    with gr.Row():
        target = gr.Radio(["predicted", *labels], value="predicted", label="Class to explain")
        merge = gr.Checkbox(value=True, label="Merge WordPieces into words")
    method = gr.Markdown(elem_id="attributions-method")
    attributions = gr.HighlightedText(label="Attributions", show_legend=True, elem_id="attributions",
                                      combine_adjacent=False)
    with gr.Accordion("Raw attributions (JSON)", open=False):
        raw = gr.JSON(label="Attributions")
    return target, merge, attributions, raw, method


def attention_panel() -> tuple[gr.Slider, gr.Slider, gr.Plot, gr.Markdown]:
    gr.Markdown("Attention weights of one layer: each row is a token, each column what it attends to. "
                "Head 0 shows the mean over all heads.")
    with gr.Row():
        layer = gr.Slider(1, 12, value=1, step=1, label="Layer", elem_id="attention-layer")
        head = gr.Slider(0, 12, value=0, step=1, label="Head (0 = mean over heads)", elem_id="attention-head")
    caption = gr.Markdown(elem_id="attention-caption")
    heat = gr.Plot(label="Attention", elem_id="attention-plot")
    return layer, head, heat, caption


def token_panels(labels: list[str]) -> TokenPanels:
    """The Tokens, Attributions and Attention tabs."""
    with gr.Tab("Tokens"):
        pad, table = tokens_panel()
    with gr.Tab("Attributions"):
        target, merge, attributions, raw, method = attributions_panel(labels)
    with gr.Tab("Attention"):
        layer, head, heat, caption = attention_panel()
    return TokenPanels(pad, table, target, merge, attributions, raw, method, layer, head, heat, caption)


# ------------------------------------------------------------------------- wiring
def wire(actions: PredictActions, classified: gr.events.Dependency, text: gr.Textbox, p: TokenPanels) -> None:
    """Fill the views after each classification, and redraw one when its own controls change."""
    explain_in = [text, p.target, p.merge]
    classified.success(bind(tokens, actions), [text, p.pad], [p.table], api_name="tokenize")
    quick = classified.success(bind(quick_explain, actions), explain_in, [p.attributions, p.raw],
                               api_visibility="private", show_progress="hidden")
    _refine(actions, quick, explain_in, p, api_name="explain")
    classified.success(bind(attention, actions), [text, p.layer, p.head], [p.heat, p.attention_caption],
                       api_visibility="private")
    p.pad.release(bind(tokens, actions), [text, p.pad], [p.table], api_visibility="private")
    again = gr.on([p.target.change, p.merge.change], bind(quick_explain, actions), explain_in,
                  [p.attributions, p.raw], api_visibility="private", trigger_mode="always_last",
                  show_progress="hidden")
    _refine(actions, again, explain_in, p, api_name=None)
    # A slider's number box fires `input` as it is typed (Gradio's Slider has no submit event, and
    # its `release` comes only on blur), so typing a layer and pressing Enter redraws; a drag fires
    # `input` on every step. always_last: while one drawing runs, only the newest value waits, and
    # it is drawn last, so the plot always ends on the value the slider shows.
    gr.on([p.layer.input, p.layer.release, p.head.input, p.head.release], bind(attention, actions),
          [text, p.layer, p.head], [p.heat, p.attention_caption], api_visibility="private",
          trigger_mode="always_last", show_progress="hidden")


def _refine(actions: PredictActions, quick: gr.events.Dependency, explain_in: list, p: TokenPanels,
            api_name: str | None) -> None:
    """After the instant view: its caption, then Integrated Gradients and the caption that says so."""
    quick.success(method_caption, [p.raw], [p.method], api_visibility="private", queue=False)
    visibility = {"api_name": api_name} if api_name else {"api_visibility": "private"}
    quick.success(bind(explain, actions), explain_in, [p.attributions, p.raw], **visibility).success(
        method_caption, [p.raw], [p.method], api_visibility="private", queue=False)
