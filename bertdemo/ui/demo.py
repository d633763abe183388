"""The Gradio app: one Blocks with a tab per view. Layout and wiring only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import gradio as gr
from sqlalchemy.engine import Engine
from starlette.middleware import Middleware

from bertdemo import auth
from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.actions.embeddings import EmbeddingActions
from bertdemo.actions.predict import PredictActions
from bertdemo.actions.train import TrainingActions
from bertdemo.services import Services
from bertdemo.ui import annotate, predict, shared_link
from bertdemo.ui import embeddings as embeddings_tab
from bertdemo.ui import train as train_tab
from bertdemo.ui.binding import bind
from bertdemo.ui.common import ADMIN_ONLY, GUEST_COOKIE_JS, md_text, user_of
from bertdemo.ui.limits import MAX_BODY_BYTES, BodyLimit
from bertdemo.ui.sessions import GoneAccounts

TITLE = "bertdemo: see, correct and retrain a BERT sentiment classifier"


def status_line(services: Services) -> str:
    st = services.jobs.status()
    info = services.registry.active_version()
    if st.running:  # the phase with its own count: "re-scoring 12,800 / 27,166 examples (47%), ..."
        line = f"**Training run #{st.run_id}**: {st.phase_text() or f'{st.fraction:.0%}'}. {st.message}"
        if info is not None and info.quick:  # the first start's stand-in answers while the fine-tune runs
            f1 = f", validation macro-F1 {info.macro_f1:.3f}" if info.macro_f1 is not None else ""
            line += f" Serving **{info.name}** ({info.kind_text}{f1}) meanwhile."
        return line
    problem = services.registry.problem  # the active version's files could not be loaded at start
    warning = f" **Warning:** {md_text(problem)}" if problem else ""
    if services.registry.nothing_servable:
        return warning.strip()
    if info is None:
        if st.state == "failed":
            return f"**Warning:** the last training run failed: {st.message}"
        return warning.strip() or "**No model version is active yet.**"
    f1 = f", validation macro-F1 {info.macro_f1:.3f}" if info.macro_f1 is not None else ""
    per = info.metrics.get("per_dataset") or {}
    if len(per) > 1:
        f1 += " (" + " · ".join(f"{name} {m['macro_f1']:.3f}" for name, m in per.items()) + ")"
    if info.metrics.get("ece") is not None:
        f1 += f", calibration error {info.metrics['ece']:.3f}"
    busy = services.jobs.activity()  # after an activation: the int8 build and re-scoring, PyTorch serving meanwhile
    busy = f" In the background: {busy} (PyTorch serves meanwhile)." if busy else ""
    kind = f" ({info.kind_text})" if info.kind_text else ""
    return f"Serving model **{info.name}**{kind}{f1}.{busy}{warning}"


def gradio_auth(engine: Engine) -> Callable[[str, str], Awaitable[bool]] | None:
    """The `auth=` for Gradio's launch(): a checker when accounts exist, None (no sign-in: guests,
    auth.py) otherwise. Users added later take effect after a restart.

    The checker is a coroutine function, so Gradio awaits it and the check (scrypt, ~50 ms, and
    the database) runs in a worker thread instead of blocking the event loop. A locked-out name
    gets HTTP 400, as wrong credentials do, with the reason as `detail` and a Retry-After header:
    Gradio's sign-in page only reacts to 400 (it shows "Incorrect credentials") and silently
    ignores any other status, such as 429."""
    if not auth.has_users(engine):
        return None
    from fastapi import HTTPException  # the web layer's exception; imported only when serving

    async def check(name: str, password: str) -> bool:
        try:
            return await asyncio.to_thread(auth.check_sign_in, engine, name, password)
        except auth.SignInLocked as exc:
            raise HTTPException(status_code=400, detail=str(exc),
                                headers={"Retry-After": str(exc.retry_after_s)}) from None

    return check


def launch_options(services: Services) -> dict:
    """The keyword arguments of `demo.launch()` that bertdemo sets (app.py and `bertdemo serve`)."""
    return {
        # Gradio refuses uploads over this itself; the app's own, smaller caps (BERTDEMO_MAX_UPLOAD_MB,
        # BERTDEMO_MAX_IMPORT_MB) answer first with a clearer message
        "max_file_size": f"{max(100, 2 * max(services.settings.max_upload_mb, services.settings.max_import_mb)):.0f}mb",
        # sign-in only when accounts exist (`bertdemo users add NAME`); else guests (auth.py)
        "auth": gradio_auth(services.engine),
        "auth_message": f"bertdemo: sign in to annotate. {auth.SIGNIN_NOTICE}",
        # Gradio's /monitoring dashboard would let any visitor make the server print its access key
        "enable_monitoring": False,
        # without accounts each browser is its own guest (ui/common.user_of): the cookie it keeps
        "head": GUEST_COOKIE_JS,
        # a JSON body over 10 MB is refused (413) before it is read whole; uploads: max_file_size
        # and the sessions of a deleted account end (ui/sessions.py)
        "app_kwargs": {"middleware": [Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES),
                                      Middleware(GoneAccounts, engine=services.engine)]},
    }


def build_demo(services: Services) -> gr.Blocks:
    # delete_cache: the files Gradio copied to answer downloads (exports, batch predictions) and
    # uploads are removed hourly once an hour old, instead of piling up until a restart
    with gr.Blocks(title="bertdemo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {TITLE}")
        # on a shared link without accounts guests are annotators; the admin password makes one admin
        auth.configure_guests(services.engine, services.settings.shared_link, services.settings.admin_password)
        signin = shared_link.panel(services.engine)
        if auth.has_users(services.engine):  # Gradio's own route ends the session (accounts added later: a restart)
            gr.HTML('<a href="logout" id="sign-out">Sign out</a>', elem_id="sign-out-link")
        status = gr.Markdown(status_line(services), elem_id="status-line")
        timer = gr.Timer(2.0)
        timer.tick(lambda: status_line(services), None, [status], api_visibility="private", show_progress="hidden")
        with gr.Tab("Predict", id="predict"):
            sync, sliders = predict.build(PredictActions(services))
        with gr.Tab("Annotate", id="annotate") as annotate_tab:
            annotate_adapters = AnnotateAdapters.create(services)
            queue = annotate.build(annotate_adapters, PredictActions(services), annotate_tab)
        with gr.Tab("Train", id="train"):
            train_tab.build(TrainingActions(services))
        with gr.Tab("Embeddings", id="embeddings") as embeddings_ui:
            embeddings_tab.build(EmbeddingActions(services), embeddings_ui)
        demo.load(sync, None, list(sliders), api_visibility="private")
        demo.load(annotate_adapters.labelling.default_queue, None, [queue], api_visibility="private")
        admin_only = [b for b in demo.blocks.values() if ADMIN_ONLY[0] in (getattr(b, "elem_classes", None) or [])]
        demo.load(bind(role_view, services.engine, len(admin_only)), None, admin_only,
                  api_visibility="private")
        if signin is not None:
            signin.wire(services.engine, admin_only)
    demo.queue(default_concurrency_limit=4)
    return demo


def role_view(engine: Engine, n: int, request: gr.Request) -> list:
    """On each page load: what only admins may use (elem_classes ADMIN_ONLY) is shown to admins
    only, so an annotator never finds a button that answers "Only admins may do this". Each
    endpoint still checks the role itself; this only shapes the page."""
    admin = auth.role_of(engine, user_of(request)) == "admin"  # everyone is on a loopback-only app without accounts
    return [gr.update(visible=admin)] * n
