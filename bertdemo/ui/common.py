"""Glue shared by the tabs: library errors -> gr.Error, warnings -> gr.Warning."""

from __future__ import annotations

import functools
import html
import logging
import re
from collections.abc import Callable, Iterable

import gradio as gr
from gradio.data_classes import FileData
from pydantic import ConfigDict, ValidationError

from bertdemo.actions import USER_ERRORS

log = logging.getLogger(__name__)


MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")


def md_text(text: object) -> str:
    """User text for a gr.Markdown: shown literally, never as HTML, a link, emphasis or a list
    (HTML characters become entities, Markdown punctuation is backslash-escaped)."""
    return MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


def plain(message: str) -> str:
    """A message for a toast (gr.Error, gr.Warning), which Gradio renders as HTML: characters
    that would make markup (a text echoed in a message) are shown as themselves."""
    return html.escape(message, quote=False)


def guarded(fn: Callable) -> Callable:
    """Turn the library's user-facing exceptions into a clear gr.Error; anything else is logged
    and reported as an internal error (never a silent crash)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as exc:
            raise gr.Error(plain(str(exc)), print_exception=False) from exc
        except Exception as exc:  # noqa: BLE001 - the UI must answer every request
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Internal error ({type(exc).__name__}); the details are in the server log.") from exc

    return wrapper


def warn(messages: Iterable[str]) -> None:
    for m in messages:
        gr.Warning(plain(m))


# ------------------------------------------------------------------------- API-safe inputs
# Gradio checks and converts an input's value before our callback (and `guarded`) runs. A value
# the browser never sends but an API caller can (None or text for a slider, text for a number, a
# path string instead of handle_file(path)) fails there with a bare TypeError or pydantic error,
# which the client sees as "The upstream Gradio app has raised an exception". These subclasses
# render exactly like the Gradio components (is_template: the frontend uses the parent's Svelte
# file) and turn such a value into a gr.Error naming the input and what it takes.
def _label(component: gr.components.Component) -> str:
    return str(getattr(component, "label", None) or type(component).__name__)


def _checked_preprocess(component, preprocess: Callable, payload, expected: str):  # noqa: ANN001
    try:
        return preprocess(payload)
    except gr.Error as exc:
        raise gr.Error(f"{_label(component)}: {exc.message}", print_exception=False) from None
    except Exception:  # noqa: BLE001 - whatever Gradio raised, the caller sent a wrong value
        raise gr.Error(f"{_label(component)}: {expected}, got {_short(payload)}.", print_exception=False) from None


def _short(value: object) -> str:
    r = repr(value)
    return r if len(r) <= 60 else r[:57] + "..."


def _range(component) -> str:  # noqa: ANN001
    lo, hi = getattr(component, "minimum", None), getattr(component, "maximum", None)
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}"
    if lo is not None:
        return f" of at least {lo:g}"
    return f" of at most {hi:g}" if hi is not None else ""


class Slider(gr.Slider):
    is_template = True

    def preprocess(self, payload):  # noqa: ANN001, ANN201
        if payload is None or isinstance(payload, bool) or not isinstance(payload, (int, float)):
            raise gr.Error(f"{_label(self)}: expected a number{_range(self)}, got {_short(payload)}.",
                           print_exception=False)
        return _checked_preprocess(self, super().preprocess, payload, f"expected a number{_range(self)}")


class Number(gr.Number):
    is_template = True

    def preprocess(self, payload):  # noqa: ANN001, ANN201
        if payload is not None and (isinstance(payload, bool) or not isinstance(payload, (int, float))):
            raise gr.Error(f"{_label(self)}: expected a number{_range(self)}, got {_short(payload)}.",
                           print_exception=False)
        return _checked_preprocess(self, super().preprocess, payload, f"expected a number{_range(self)}")


class _UploadData(FileData):
    """FileData whose validation failure (a plain string or number instead of an uploaded file)
    is a gr.Error saying how to send a file."""

    __doc__ = FileData.__doc__
    model_config = ConfigDict(title="FileData")

    @classmethod
    def model_validate(cls, obj, *args, **kwargs):  # noqa: ANN001, ANN206
        try:
            return FileData.model_validate(obj, *args, **kwargs)
        except ValidationError:
            raise gr.Error(f"Expected an uploaded file (with gradio_client: handle_file(path)), got {_short(obj)}.",
                           print_exception=False) from None


class File(gr.File):
    is_template = True

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if self.data_model is FileData:
            self.data_model = _UploadData
