"""The Gradio app: one Blocks with a tab per view. Layout and wiring only."""

from __future__ import annotations

import gradio as gr

from bertdemo.actions import PredictActions
from bertdemo.jobs import Services
from bertdemo.training_actions import TrainingActions
from bertdemo.ui import train as train_tab
from bertdemo.annotate import AnnotateActions
from bertdemo.ui import annotate, predict
from bertdemo.context import EmbeddingActions
from bertdemo.ui import embeddings as embeddings_tab

TITLE = "bertdemo: see, correct and retrain a BERT sentiment classifier"


def status_line(services: Services) -> str:
    st = services.jobs.status()
    if st.running:
        eta = st.eta_s()
        left = f", about {eta / 60:.1f} min left" if eta else ""
        return (f"**Training run #{st.run_id}**: {st.fraction:.0%}{left}. {st.message}")
    info = services.registry.active_version()
    if info is None:
        if st.state == "failed":
            return f"**Warning:** the last training run failed: {st.message}"
        return "**No model version is active yet.**"
    f1 = f", validation macro-F1 {info.macro_f1:.3f}" if info.macro_f1 is not None else ""
    return f"Serving model **{info.name}**{f1}."


def build_demo(services: Services) -> gr.Blocks:
    with gr.Blocks(title="bertdemo") as demo:
        gr.Markdown(f"# {TITLE}")
        status = gr.Markdown(status_line(services), elem_id="status-line")
        timer = gr.Timer(2.0)
        timer.tick(lambda: status_line(services), None, [status], api_visibility="private", show_progress="hidden")
        with gr.Tab("Predict", id="predict"):
            sync, sliders = predict.build(PredictActions(services))
        with gr.Tab("Annotate", id="annotate") as annotate_tab:
            annotate.build(AnnotateActions(services), PredictActions(services), annotate_tab)
        with gr.Tab("Train", id="train"):
            train_tab.build(TrainingActions(services))
        with gr.Tab("Embeddings", id="embeddings") as embeddings_ui:
            embeddings_tab.build(EmbeddingActions(services), embeddings_ui)
        demo.load(sync, None, list(sliders), api_visibility="private")
    return demo
