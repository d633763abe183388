"""Embeddings tab: panels (the inputs, the plots, the corpus neighbours) and the module-level
handlers `build` wires (values in, values out, testable without a browser); the work is in
bertdemo.actions.embeddings (EmbeddingActions)."""

from __future__ import annotations

import html
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from bertdemo.actions.embeddings import ACTIVE_MODEL, MODEL_CHOICES, EmbeddingActions
from bertdemo.actions.presets import DEFAULT_PRESET, PRESETS
from bertdemo.errors import BadInput
from bertdemo.model.embeddings import Neighbours, WordComparison
from bertdemo.ui import plots
from bertdemo.ui.binding import bind
from bertdemo.ui.common import guarded, md_text, warn

INTRO = (
    "A static word vector (word2vec, GloVe, or BERT's own input-embedding table) gives **one vector "
    "per word**: *bat* the animal and *bat* the cricket bat are the same point. BERT's hidden states "
    "are **contextual**: every layer mixes in the rest of the sentence, so the same word gets a "
    "different vector in each sentence. Type sentences (one per line) that use a word in different "
    "senses and see how similar its occurrences are, layer by layer, on the model the app serves."
)
NEIGHBOUR_COLUMNS = ["similarity", "label", "occurrence", "text"]
STATIC_NOTE = (
    "**Static input embedding**: the row of the word-embedding matrix for this token. It is the same "
    "row in every sentence, so every similarity here is **1.0 whatever the context: that is the "
    "point**. Layer 0 already differs slightly, because it adds position embeddings and a layer norm."
)


def summary_markdown(c: WordComparison) -> str:
    """What the user should read off the plots, in words."""
    lines = [(f"**{len(c.occurrences)} occurrences** of *{md_text(c.word)}* in "
              f"{len({o.sentence_index for o in c.occurrences})} sentence(s), model: {c.model_name}, "
              f"layer {c.layer} of {c.num_layers} (0 = input embeddings).")]
    if c.pooled:
        lines.append(f"*{md_text(c.word)}* is split into {len(c.pieces)} WordPieces "
                     f"({html.escape(' '.join(c.pieces), quote=False)}): "
                     "its vector is the **mean** of theirs.")
    best = c.best_layer()
    if best is not None:
        same, diff = c.sense_means(best)
        margin = c.margin(best)
        clean = ("every occurrence is closer to all of its own sense than to any other sense"
                 if margin > 0 else "but some occurrence is still closer to another sense")
        lines.append(f"**Best layer for telling the senses apart: layer {best}**: same-sense pairs "
                     f"{same:.3f} on average vs different-sense pairs {diff:.3f} ({clean}; margin "
                     f"{margin:+.3f}). The static embedding gives 1.000 for both.")
        if c.layer != best:
            now = c.sense_means(c.layer)
            lines.append(f"At the chosen layer {c.layer}: same-sense {now[0]:.3f} vs different-sense {now[1]:.3f}.")
    if c.skipped:
        lines.append("**Skipped lines:**\n" + "\n".join(
            f"- line {s.line_number}: {md_text(s.reason)}: “{md_text(s.text[:80])}”" for s in c.skipped))
    lines.append("Occurrences: " + "; ".join(f"**{o.label}** = occurrence {o.nth} in line {o.line_number}"
                                               for o in c.occurrences[:20])
                 + (" …" if len(c.occurrences) > 20 else ""))
    return "\n\n".join(lines)


def neighbours_markdown(n: Neighbours) -> str:
    cv = n.corpus
    text = (f"The {len(n.items)} stored occurrences of the word most similar to **{n.query.label}** at "
            f"layer {n.layer}, out of {len(cv.example_ids)} occurrences in {cv.searched} stored examples.")
    if cv.capped:
        text += (f" **Capped:** {cv.matching} stored examples contain the text; only the first "
                 f"{cv.searched} were read.")
    if not n.items:
        text += " No stored example uses this word."
    return text


def model_layers(actions: EmbeddingActions) -> int:
    """Encoder layers of the configured model, read from its config (no weights loaded)."""
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(actions.services.settings.model_source).num_hidden_layers)
    except (OSError, ValueError, AttributeError):
        return 12  # compare() checks the real bound and says so



class Drawn(NamedTuple):
    """A comparison as the tab shows it."""

    summary: str  # Markdown: summary_markdown
    heatmap: Any  # matplotlib Figures, from bertdemo.ui.plots
    static: Any
    projection: Any
    lines: Any
    occurrence: dict  # gr.update of the occurrence dropdown: the comparison's labels, the first chosen


class Preset(NamedTuple):
    sentences: Any  # str, or gr.update() (unchanged) for an unknown preset
    word: Any
    explanation: Any


class NeighbourTable(NamedTuple):
    info: str  # Markdown: neighbours_markdown
    table: pd.DataFrame  # NEIGHBOUR_COLUMNS


# ------------------------------------------------------------------------- handlers
@guarded
def draw(actions: EmbeddingActions, sentences: str, word: str, layer: float, model: str) -> Drawn:
    """Compare `word` across `sentences` and draw it; notes and skipped lines become warnings."""
    c = actions.compare(sentences, word, int(layer), model)
    warn(c.notes)
    if c.skipped:
        gr.Warning(f"{len(c.skipped)} line(s) skipped: "
                   + ", ".join(f"line {x.line_number}" for x in c.skipped[:10]))
    return Drawn(summary_markdown(c), plots.similarity_heatmap(c), plots.similarity_heatmap(c, static=True),
                 plots.projection(c), plots.layer_lines(c), gr.update(choices=c.labels, value=c.labels[0]))


def load_preset(name: str) -> Preset:
    p = PRESETS.get(name)
    if p is None:
        return Preset(gr.update(), gr.update(), gr.update())
    return Preset(p.text, p.word, p.explanation)


@guarded
def find_neighbours(actions: EmbeddingActions, sentences: str, word: str, layer: float, model: str,
                    occurrence: str, k: float,
                    progress: gr.Progress = gr.Progress()) -> NeighbourTable:  # noqa: B008 - Gradio's tracker
    """The nearest stored occurrences; a word not computed yet shows its progress (seconds of work)."""
    if not occurrence:
        raise BadInput("Compare first, then choose an occurrence.")

    def report(done: int, total: int, what: str) -> None:
        progress((done, total) if total else None, desc=what)

    n = actions.neighbours(actions.compare(sentences, word, int(layer), model), occurrence, int(k), model,
                           progress=report)
    rows = [(round(x.similarity, 4), x.label or "", f"#{x.nth}", x.text) for x in n.items]
    return NeighbourTable(neighbours_markdown(n), pd.DataFrame(rows, columns=NEIGHBOUR_COLUMNS))


@guarded
def compare_word(actions: EmbeddingActions, sentences: str, word: str, layer: int) -> dict:
    """The occurrences of `word` in `sentences` (one per line) and their cosine-similarity
    matrix at `layer`, on the active fine-tuned model."""
    return actions.compare(sentences, word, layer, ACTIVE_MODEL).to_json()


# ------------------------------------------------------------------------- panels
class Inputs(NamedTuple):
    preset: gr.Dropdown
    explanation: gr.Markdown
    sentences: gr.Textbox
    word: gr.Textbox
    layer: gr.Slider
    model: gr.Radio
    go: gr.Button


def inputs_panel(num_layers: int) -> Inputs:
    preset0 = PRESETS[DEFAULT_PRESET]
    gr.Markdown(INTRO)
    with gr.Row():
        preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="Preset", elem_id="emb-preset", scale=1)
        explanation = gr.Markdown(preset0.explanation, elem_id="emb-explanation")
    with gr.Row():
        with gr.Column(scale=3):
            sentences = gr.Textbox(preset0.text, lines=5, label="Sentences (one per line)", elem_id="emb-sentences")
        with gr.Column(scale=2):
            word = gr.Textbox(preset0.word, label="Word (case-insensitive)", elem_id="emb-word")
            layer = gr.Slider(0, num_layers, value=min(2, num_layers), step=1, label="Layer (0 = input embeddings)",
                              elem_id="emb-layer")
            model = gr.Radio(list(MODEL_CHOICES), value=ACTIVE_MODEL, label="Model", elem_id="emb-model")
            go = gr.Button("Compare", variant="primary", elem_id="emb-compare")
    return Inputs(preset, explanation, sentences, word, layer, model, go)


def plots_panel() -> list:
    """The summary and the four plots, in the order of Drawn (less the occurrence dropdown)."""
    summary = gr.Markdown(elem_id="emb-summary")
    with gr.Row():
        heat = gr.Plot(label="Contextual similarity", elem_id="emb-heatmap")
        with gr.Column():
            static = gr.Plot(label="Static input-embedding similarity", elem_id="emb-static")
            gr.Markdown(STATIC_NOTE)
    with gr.Row():
        pca = gr.Plot(label="PCA projection", elem_id="emb-pca")
        lines = gr.Plot(label="Similarity by layer", elem_id="emb-lines")
    return [summary, heat, static, pca, lines]


def neighbours_panel() -> tuple[gr.Dropdown, gr.Slider, gr.Button, gr.Markdown, gr.Dataframe]:
    with gr.Accordion("Corpus neighbours: the same word in the stored tweets", open=False):
        gr.Markdown("For one occurrence, the stored examples whose occurrence of the same word is most "
                    "similar at the chosen layer (computed for the chosen model and cached per model version: "
                    "the presets' words are ready as soon as a version serves; another word takes a few "
                    "seconds the first time, with its progress shown).")
        with gr.Row():
            occurrence = gr.Dropdown([], label="Occurrence", elem_id="emb-occurrence")
            k = gr.Slider(1, 30, value=10, step=1, label="k")
            find = gr.Button("Find neighbours", elem_id="emb-neighbours-button")
        info = gr.Markdown(elem_id="emb-neighbours-info")
        table = gr.Dataframe(headers=NEIGHBOUR_COLUMNS, interactive=False, wrap=True, elem_id="emb-neighbours")
    return occurrence, k, find, info, table


def build(actions: EmbeddingActions, tab: gr.Tab | None = None) -> None:
    num_layers = model_layers(actions)
    ui = inputs_panel(num_layers)
    shown = plots_panel()
    occurrence, k, find, neighbours_info, table = neighbours_panel()

    inputs = [ui.sentences, ui.word, ui.layer, ui.model]
    outputs = [*shown, occurrence]
    drawn = bind(draw, actions)
    # opening the tab draws the default preset; it is one listener with Compare and the rest, so a
    # Compare clicked while that first draw runs is drawn after it (always_last), not beneath it
    triggers = [ui.go.click, ui.word.submit, ui.layer.release, ui.model.change] + ([tab.select] if tab else [])
    gr.on(triggers, drawn, inputs, outputs, api_visibility="private", trigger_mode="always_last")
    ui.preset.input(load_preset, [ui.preset], [ui.sentences, ui.word, ui.explanation],
                    api_visibility="private").then(drawn, inputs, outputs, api_visibility="private")
    find.click(bind(find_neighbours, actions), [*inputs, occurrence, k], [neighbours_info, table],
               api_visibility="private")
    # the API's layer defaults to the last one, known only once the model's config is read
    gr.api(bind(compare_word, actions, layer=num_layers), api_name="compare_word")
    actions.watch.start()  # the presets' corpus vectors computed when a version serves (start, activations)
