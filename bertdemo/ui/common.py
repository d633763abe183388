"""Glue shared by the tabs: UserError -> gr.Error (guarded), warnings -> gr.Warning, user text shown
literally, and API inputs that answer a malformed value with a message."""

from __future__ import annotations

import functools
import html
import logging
import re
from collections.abc import Callable, Iterable

import gradio as gr
from gradio.data_classes import FileData
from pydantic import ConfigDict, ValidationError

from bertdemo.auth import guest_name  # re-exported: the tests name guests with it
from bertdemo.errors import BadInput, UserError
from bertdemo.validate import short

log = logging.getLogger(__name__)


MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")


def md_text(text: object) -> str:
    """User text for a gr.Markdown: shown literally, never as HTML, a link, emphasis or a list
    (HTML characters become entities, Markdown punctuation is backslash-escaped)."""
    return MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(")


def safe_markdown(text: str) -> str:
    """Markdown an admin wrote (the guidelines), rendered without any HTML of its own: every `<`
    becomes `&lt;`, so a <form>, <input>, <img> or <script> shows as text (Gradio's sanitizer keeps
    forms and remote images), and a Markdown image becomes a link, so no remote image loads (and
    tells its server who is reading). Headings, lists, emphasis, tables and links still render."""
    return MD_IMAGE.sub(r"[image: \1](", text.replace("<", "&lt;"))


def plain(message: str) -> str:
    """A message for a toast (gr.Error, gr.Warning), which Gradio renders as HTML: characters
    that would make markup (a text echoed in a message) are shown as themselves."""
    return html.escape(message, quote=False)


def guarded(fn: Callable) -> Callable:
    """The one place that turns errors into gr.Error: a UserError shows its message; anything else
    is a bug, logged with its traceback and shown as an internal error (never as if it were the
    person's mistake, never a silent crash)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as exc:
            raise gr.Error(plain(str(exc)), print_exception=False) from exc
        except Exception as exc:  # noqa: BLE001 - the UI must answer every request
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Internal error ({type(exc).__name__}); the details are in the server log.") from exc

    return wrapper


GUEST_COOKIE = "bertdemo_guest"
GUEST_KEY = re.compile(r"[A-Za-z0-9-]{16,64}")
# run in every page's <head> (launch_options): a random id per browser, kept a year, so a guest is
# the same person across reloads; SameSite=None on https, where a Space runs inside an iframe
GUEST_COOKIE_JS = f"""<script>
(() => {{
  if (document.cookie.split("; ").some((c) => c.startsWith("{GUEST_COOKIE}="))) return;
  const id = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now());
  const site = location.protocol === "https:" ? "SameSite=None; Secure" : "SameSite=Lax";
  document.cookie = "{GUEST_COOKIE}=" + id + "; path=/; max-age=31536000; " + site;
}})();
</script>"""


ADMIN_ONLY = ["admin-only"]  # elem_classes of what only admins may use: ui/demo.py hides it from the others


def guest_key(request: gr.Request | None) -> str | None:
    """The secret that makes a guest one person: their browser's GUEST_COOKIE or, for an API client
    that keeps no cookie, its gradio_client session (session_hash). None when there is neither."""
    if request is None:
        return None
    raw = getattr(request, "request", None)
    cookie = raw.cookies.get(GUEST_COOKIE) if raw is not None and hasattr(raw, "cookies") else None
    if cookie and GUEST_KEY.fullmatch(cookie):
        return cookie
    session = getattr(request, "session_hash", None)
    return session if isinstance(session, str) and session else None


def user_of(request: gr.Request | None) -> str | None:
    """The person behind a request, the one place the UI reads it (the actions decide what they may
    do): the signed-in name; without accounts a guest (auth.guest_name of guest_key), one per
    browser or, for an API client, one per gradio_client session. So two tabs, two people on a
    shared link, or 20 API clients are different annotators."""
    if request is None:
        return None
    name = getattr(request, "username", None)
    if name:
        return name
    key = guest_key(request)
    return guest_name(key) if key else None


def uploaded(path: str | None) -> str:
    """The path of the file the person chose, or a gr.Error asking for one."""
    if not path:
        raise BadInput("Choose a CSV file first.")
    return path


def warn(messages: Iterable[str]) -> None:
    for m in messages:
        gr.Warning(plain(m))


# ------------------------------------------------------------------------- API-safe inputs
# Gradio checks and converts an input's value before our callback (and `guarded`) runs. A value
# the browser never sends but an API caller can (None or text for a slider, text for a number, a
# path string instead of handle_file(path)) fails there with a bare TypeError or pydantic error,
# which the client sees as "The upstream Gradio app has raised an exception". The functions below
# make the usual Gradio components and wrap that one step of the instance, so such a value gets a
# gr.Error naming the input and what it takes. (Instances, not subclasses: Gradio writes a .pyi
# stub next to the module of every Component subclass, at import, which fails on a read-only
# install. These inputs are never outputs, so Gradio never rebuilds them from their class.)
def _label(component: gr.components.Component) -> str:
    return str(getattr(component, "label", None) or type(component).__name__)


def _range(component) -> str:  # noqa: ANN001
    lo, hi = getattr(component, "minimum", None), getattr(component, "maximum", None)
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" of at least {lo:g}"
    return f" of at most {hi:g}" if hi is not None else ""


def _numeric_input(component, required: bool):  # noqa: ANN001, ANN202
    """Wrap `component.preprocess`: a number (None too unless `required`) or a gr.Error."""
    preprocess = component.preprocess

    def checked(payload):  # noqa: ANN001, ANN202
        expected = f"expected a number{_range(component)}"
        if (payload is None and required) or (payload is not None and (
                isinstance(payload, bool) or not isinstance(payload, (int, float)))):
            raise gr.Error(f"{_label(component)}: {expected}, got {short(payload)}.", print_exception=False)
        try:
            return preprocess(payload)
        except gr.Error as exc:  # Gradio's own bounds check: say which input
            raise gr.Error(f"{_label(component)}: {exc.message}", print_exception=False) from None
        except Exception:  # noqa: BLE001 - whatever Gradio raised, the caller sent a wrong value
            raise gr.Error(f"{_label(component)}: {expected}, got {short(payload)}.",
                           print_exception=False) from None

    component.preprocess = checked
    return component


def api_slider(*args, **kwargs) -> gr.Slider:  # noqa: ANN002, ANN003
    """gr.Slider whose API value must be a number within its range."""
    return _numeric_input(gr.Slider(*args, **kwargs), required=True)


def api_number(*args, **kwargs) -> gr.Number:  # noqa: ANN002, ANN003
    """gr.Number whose API value must be a number (or None) within its range."""
    return _numeric_input(gr.Number(*args, **kwargs), required=False)


class _UploadData(FileData):
    __doc__ = FileData.__doc__  # the API schema (view_api, gradio_client's uploads) stays FileData's
    model_config = ConfigDict(title="FileData")

    @classmethod
    def model_validate(cls, obj, *args, **kwargs):  # noqa: ANN001, ANN206
        """FileData, or a gr.Error saying how to send a file (for a plain string or number)."""
        try:
            return FileData.model_validate(obj, *args, **kwargs)
        except ValidationError:
            raise gr.Error(f"Expected an uploaded file (with gradio_client: handle_file(path)), got {short(obj)}.",
                           print_exception=False) from None


def api_file(*args, **kwargs) -> gr.File:  # noqa: ANN002, ANN003
    """gr.File (one file) whose API value must be an upload."""
    component = gr.File(*args, **kwargs)
    if component.data_model is FileData:
        component.data_model = _UploadData
    return component
