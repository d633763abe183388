"""Glue shared by the tabs: library errors -> gr.Error, warnings -> gr.Warning."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable

import gradio as gr

from bertdemo.actions import USER_ERRORS

log = logging.getLogger(__name__)


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
            raise gr.Error(str(exc), print_exception=False) from exc
        except Exception as exc:  # noqa: BLE001 - the UI must answer every request
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Internal error ({type(exc).__name__}); the details are in the server log.") from exc

    return wrapper


def warn(messages: Iterable[str]) -> None:
    for m in messages:
        gr.Warning(m)
