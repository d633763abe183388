"""Numbers from form and API values: the one check behind every "a whole number from 0 to N"
message (padded length, layer, training options). Callers word the message and pick the
exception; this module only says whether a value is usable."""

from __future__ import annotations

import math


def number_in(value: object, low: float, high: float, *, whole: bool = False, low_open: bool = False) -> float | None:
    """`value` (a number, or text holding one) as a finite float in [low, high] ((low, high] with
    `low_open`), whole if `whole`; None when it is not one. A bool is no number here (JSON true
    is not 1 padded position)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(x) or (whole and not x.is_integer()):
        return None
    if (x <= low if low_open else x < low) or x > high:
        return None
    return x


def short(value: object, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters, for quoting a bad value in a message."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."
