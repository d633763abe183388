"""The one set of input checks, with one message style: every number, id, list and search text
that comes from a form or an API argument is checked here and refused with BadInput.

Messages name the input, say what it takes, and quote what came (cut to 60 characters):
"The layer must be a whole number from 0 (input embeddings) to 6, got 7."
"""

from __future__ import annotations

import math

from bertdemo.errors import BadInput, NotFound

MAX_ID = 2**63 - 1  # the database's integer range
MAX_EXCLUDE = 100_000  # ids an API caller may ask next_item to skip
MAX_SEARCH_CHARS = 500


def short(value: object, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters, for quoting a bad value in a message."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


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


def range_text(low: float, high: float, *, whole: bool = False, low_open: bool = False, note: str = "") -> str:
    """'a whole number from 0 (no padding) to 128', 'a number above 0 and up to 0.5'."""
    kind = "a whole number" if whole else "a number"
    start = f"above {_fmt(low)} and up to" if low_open else f"from {_fmt(low)}{f' ({note})' if note else ''} to"
    return f"{kind} {start} {_fmt(high)}"


def number(value: object, name: str, low: float, high: float, *, whole: bool = False, low_open: bool = False,
           note: str = "") -> float:
    """`value` as a float within the bounds (see number_in), or BadInput naming `name`; `note`
    explains the low end ("no padding")."""
    x = number_in(value, low, high, whole=whole, low_open=low_open)
    if x is None:
        raise BadInput(f"{name} must be {range_text(low, high, whole=whole, low_open=low_open, note=note)}, "
                       f"got {short(value)}.")
    return x


def whole(value: object, name: str) -> int:
    """A whole number from an API argument (1, 1.0, "1"), or BadInput."""
    if isinstance(value, bool) or value is None:
        raise BadInput(f"{name} must be a whole number, got {short(value)}.")
    try:
        x = float(value) if not isinstance(value, int) else value  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{name} must be a whole number, got {short(value)}.") from None
    if isinstance(x, float) and not x.is_integer():
        raise BadInput(f"{name} must be a whole number, got {short(value)}.")
    return int(x)


def example_id(value: object) -> int:
    """An example id as the database holds it: BadInput for anything that cannot be one, NotFound
    for a whole number outside the database's range (no example can have it; the database would
    not even take it as a parameter)."""
    n = whole(value, "The example id")
    if not 1 <= n <= MAX_ID:
        raise NotFound(f"No example with id {n}.")
    return n


def row_version(value: object) -> int | None:
    """The version of a row the caller saw (None: do not check)."""
    if value is None:
        return None
    n = whole(value, "The version")
    if not 0 <= n <= MAX_ID:
        raise BadInput(f"The version must be the 'version' that next_item returned (a whole number from 0), "
                       f"got {n}.")
    return n


def id_list(value: object, name: str = "exclude", limit: int = MAX_EXCLUDE) -> list[int]:
    """A list of whole numbers (None = none), at most `limit` of them."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise BadInput(f"{name} must be a list of example ids, got {short(value)}.")
    ids = list(value)  # type: ignore[call-overload]
    if len(ids) > limit:
        raise BadInput(f"{name} lists {len(ids):,} ids; the limit is {limit:,}.")
    return [whole(i, f"Every id in {name}") for i in ids]


def text(value: object, name: str, limit: int) -> str:
    """Text a person typed: a str, encodable as UTF-8, at most `limit` characters."""
    if not isinstance(value, str):
        raise BadInput(f"{name} must be text, got {short(value)}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{name} contains characters that are not text (lone UTF-16 surrogates).") from None
    if len(value) > limit:
        raise BadInput(f"{name} is {len(value):,} characters long; the limit is {limit:,}.")
    return value


def search_text(value: object) -> str:
    """A search string: text, encodable, at most MAX_SEARCH_CHARS characters ("" for None)."""
    return "" if value is None else text(value, "The search", MAX_SEARCH_CHARS)


def choice(value: object, name: str, options: tuple | list) -> str:
    """One of `options`, or BadInput listing them."""
    if not isinstance(value, str) or value not in options:
        raise BadInput(f"{name} must be one of {list(options)}, got {short(value)}.")
    return value


def flag(value: object, name: str) -> bool:
    """A yes/no input: True, False or None (False); 1 and 0 too, since they equal True and False.
    Anything else is BadInput: a string "false" must never mean yes."""
    if value not in (True, False, None):
        raise BadInput(f"{name} must be true or false, got {short(value)}.")
    return bool(value)
