"""clean_text(): the ONE text preprocessing, used by prediction, import, training and embeddings.

The tweet cleaning of the seed tutorial (unescape HTML entities, drop @mentions and links,
collapse whitespace) plus what real input needs: Unicode NFKC normalisation, control and
invisible format characters removed, and a hard length cap with a clear message.
"""

from __future__ import annotations

import html
import re
import unicodedata

DEFAULT_MAX_CHARS = 2000

MENTION_RE = re.compile(r"(?<!\w)@\w+")
URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
WHITESPACE_RE = re.compile(r"\s+")
# Zero-width joiner and variation selectors build emoji sequences: keep them.
KEEP_FORMAT = {"\u200d", "\ufe0e", "\ufe0f"}


class TextError(ValueError):
    """A text that cannot be classified; the message is meant for the user."""


class EmptyTextError(TextError):
    pass


class TextTooLongError(TextError):
    pass


def _drop_invisible(text: str) -> str:
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc":  # control characters (incl. \n, \t): they separate words
            out.append(" ")
        elif cat in ("Cf", "Co", "Cs", "Cn") and ch not in KEEP_FORMAT:
            continue  # zero-width spaces, bidi marks, private use, lone surrogates, unassigned
        else:
            out.append(ch)
    return "".join(out)


def clean_text(text: object, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Return the cleaned text, or raise TextError saying why it cannot be used.

    The cap applies to the raw input, so a huge paste is refused before any work is done.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if not text.strip():
        raise EmptyTextError("The text is empty: type or paste something to classify.")
    if len(text) > max_chars:
        raise TextTooLongError(
            f"The text is {len(text):,} characters long; the limit is {max_chars:,}. "
            "Shorten it or split it into several texts."
        )
    text = html.unescape(html.unescape(text))  # tweets are often escaped twice (&amp;amp;)
    text = unicodedata.normalize("NFKC", text)
    text = _drop_invisible(text)
    text = URL_RE.sub(" ", text)
    text = MENTION_RE.sub(" ", text)
    text = WHITESPACE_RE.sub(" ", text).strip()
    if not text:
        raise EmptyTextError(
            "Nothing is left to classify once links, @mentions and invisible characters are removed."
        )
    return text


def try_clean(text: object, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str | None, str | None]:
    """(cleaned, None) or (None, reason): for batch paths that report per-row problems."""
    try:
        return clean_text(text, max_chars), None
    except TextError as exc:
        return None, str(exc)
