"""The Embeddings tab's handlers (bertdemo.ui.embeddings) called as plain functions on the packaged
MiniLM BERT (the base encoder: no training needed), and the per-layer plot's legend. No server,
no browser."""

from __future__ import annotations

import inspect

import gradio as gr
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from bertdemo.actions import embeddings as embedding_actions
from bertdemo.actions.presets import PRESETS
from bertdemo.ui import embeddings

BASE = embedding_actions.BASE_MODEL
BAT = PRESETS["bat"]


@pytest.fixture
def actions(services) -> embedding_actions.EmbeddingActions:
    services.ensure_dataset()
    return embedding_actions.EmbeddingActions(services, embedding_actions.CorpusIndex(max_examples=40))


def test_draw_gives_the_summary_the_four_plots_and_the_occurrences(actions):
    d = embeddings.draw(actions, BAT.text, "bat", 2, BASE)
    assert d.summary.startswith("**4 occurrences** of *bat* in 3 sentence(s), model: base encoder, layer 2 of 6")
    assert d.occurrence == gr.update(choices=["S1.1", "S1.2", "S2.1", "S3.1"], value="S1.1")
    assert [f.axes[0].get_title(loc="right") for f in (d.heatmap, d.static, d.projection)] == [
        "'bat', layer 2", "'bat', static embedding", "'bat', layer 2"]
    with pytest.raises(gr.Error, match="The word is empty"):
        embeddings.draw(actions, BAT.text, "", 2, BASE)


def test_the_per_layer_legend_is_readable_and_outside_the_axes(actions):
    lines = embeddings.draw(actions, BAT.text, "bat", 2, BASE).lines
    ax = lines.axes[0]
    legend = ax.get_legend()
    assert {t.get_fontsize() for t in legend.get_texts()} == {10.0}  # the tick labels' size
    assert len(legend.get_texts()) == 6 + 1 + 1  # 4 occurrences: 6 pairs, the best layer, the static line
    canvas = FigureCanvasAgg(lines)  # the figure is made without pyplot: give it a canvas to measure on
    canvas.draw()
    renderer = canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 > ax.get_window_extent(renderer).x1  # right of the axes
    assert legend.get_window_extent(renderer).x1 <= lines.bbox.x1 + 1  # and still inside the figure


def test_load_preset_fills_the_fields_or_leaves_them(actions):
    apple = PRESETS["apple"]
    assert embeddings.load_preset("apple") == (apple.text, apple.word, apple.explanation)
    assert embeddings.load_preset("nothing") == (gr.update(), gr.update(), gr.update())


def test_find_neighbours_needs_an_occurrence_and_gives_the_table(actions):
    with pytest.raises(gr.Error, match="Compare first, then choose an occurrence"):
        embeddings.find_neighbours(actions, BAT.text, "bat", 2, BASE, "", 5)
    text = "My flight was delayed again.\nThe flight crew was lovely."
    n = embeddings.find_neighbours(actions, text, "flight", 4, BASE, "S1.1", 3)
    assert list(n.table.columns) == embeddings.NEIGHBOUR_COLUMNS and len(n.table) == 3
    assert n.info.startswith("The 3 stored occurrences of the word most similar to **S1.1** at layer 4, out of ")
    assert n.table["similarity"].tolist() == sorted(n.table["similarity"], reverse=True)
    assert isinstance(n.table, pd.DataFrame)


def test_compare_word_api_defaults_to_the_last_layer(actions, monkeypatch):
    from bertdemo.ui.binding import bind

    monkeypatch.setattr(actions, "model", lambda choice=None: ("base", actions.services.registry.base()))
    api = bind(embeddings.compare_word, actions, layer=6)
    assert list(inspect.signature(api).parameters) == ["sentences", "word", "layer"]
    out = api(BAT.text, "bat")
    assert (out["layer"], out["num_layers"]) == (6, 6)
    assert api(BAT.text, "bat", 2)["layer"] == 2
