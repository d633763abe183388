"""Wiring module-level handlers to Gradio: `bind` fixes a handler's leading arguments (the tab's
actions object) and shows Gradio, its API page and gradio_client the parameters that are left.

A tab's handlers are plain functions, `handler(actions, *ui_values)`, so a test calls them with a
stand-in for the actions and no browser. Gradio reads an event's inputs, an API endpoint's
parameter names, defaults and types, and its description from the function it is given: a
lambda or functools.partial would hide them (partial's docstring would become the endpoint's).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable


def bind(fn: Callable, *first: object, **defaults: object) -> Callable:
    """`fn` with its first `len(first)` arguments fixed to `first`. The result's signature (what
    Gradio inspects) lists the remaining parameters, with `defaults` replacing their defaults
    (for a default known only when the tab is built, such as the model's number of layers);
    its docstring and type hints are `fn`'s."""
    sig = inspect.signature(fn)
    rest = list(sig.parameters.values())[len(first):]
    unknown = set(defaults) - {p.name for p in rest}
    if unknown:
        raise TypeError(f"{fn.__name__} has no parameter {sorted(unknown)} to give a default")
    rest = [p.replace(default=defaults[p.name]) if p.name in defaults else p for p in rest]
    public = sig.replace(parameters=rest)

    @functools.wraps(fn)
    def bound(*args: object, **kwargs: object) -> object:
        call = public.bind(*args, **kwargs)
        call.apply_defaults()  # a client may leave out a parameter that has a default
        return fn(*first, *call.args, **call.kwargs)

    bound.__signature__ = public  # type: ignore[attr-defined]
    # a new dict: functools.wraps shares fn's, and fn keeps its own hints
    bound.__annotations__ = {k: v for k, v in getattr(fn, "__annotations__", {}).items()
                             if k in public.parameters or k == "return"}
    return bound
