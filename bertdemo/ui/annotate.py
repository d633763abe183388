"""Annotate tab: composes its views, each a module with its own layout, wiring and handlers:
Label (annotate_label, with the side panels of similar), Table (annotate_table), Import / export
(annotate_io), Map (corpus_map), Team (team) and the API-only endpoints (annotate_api). The work
is in bertdemo.actions.annotate.AnnotateAdapters, built once by ui/demo.py."""

from __future__ import annotations

import gradio as gr

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.predict import PredictActions
from bertdemo.ui import annotate_api, annotate_io, annotate_label, annotate_table, corpus_map, similar, team


def build(adapters: AnnotateAdapters, predict: PredictActions, tab: gr.Tab | None = None) -> gr.Dropdown:
    """The tab's views in the current gr.Tab; returns the queue selector (the page's load sets it)."""
    labels, datasets = adapters.labels, adapters.datasets
    with gr.Tab("Label"):
        view = annotate_label.layout(labels, datasets)
        panels = similar.SimilarHandlers(adapters.similar, adapters.bulk, adapters.notes, adapters.labelling)
        similar.build(panels, labels, view.current, view.history)
        annotate_label.shortcuts(labels)
    with gr.Tab("Table"):
        annotate_table.build(adapters.labelling, labels, datasets)
    with gr.Tab("Import / export"):
        annotate_io.build(adapters.transfer, labels)
    map_handlers = corpus_map.MapHandlers(adapters.map, adapters.bulk)
    corpus_map.build(map_handlers, labels)
    team.build(adapters)  # last: its gr.api endpoints end the row of tabs
    corpus_map.register_api(map_handlers)
    annotate_label.wire(view, annotate_label.LabelHandlers(adapters.labelling, predict), labels, tab)
    annotate_api.register(adapters.labelling)
    adapters.watch.start()  # the suspicious labels ranked when a version serves (at start, after activations)
    return view.queue
