"""clean_text(): the ONE text preprocessing, used by prediction, import, training and embeddings.

The tweet cleaning of the seed tutorial (unescape HTML entities, drop @mentions and links,
collapse whitespace) plus what real input needs: Unicode NFKC normalisation, control and
invisible format characters removed, and a hard length cap with a clear message.
"""

from __future__ import annotations

import html
import re
import unicodedata

from bertdemo.errors import BadInput

DEFAULT_MAX_CHARS = 2000

MENTION_RE = re.compile(r"(?<!\w)@\w+(?:@\w+)*")  # @a@b is two glued mentions
URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
WHITESPACE_RE = re.compile(r"\s+")
# Zero-width joiner and variation selectors build emoji sequences: keep them.
KEEP_FORMAT = {"\u200d", "\ufe0e", "\ufe0f"}


class TextError(BadInput):
    """A text that cannot be classified; the message says why."""


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


MAX_PASSES = 50  # cleaning repeats until nothing changes; inputs needing more are refused


class TooEncodedError(TextError):
    pass


def _pass(text: str) -> str:
    """One round of the cleaning steps."""
    prev = None
    while prev != text:  # every unescape that changes something shortens the text
        prev, text = text, html.unescape(text)
    text = _drop_invisible(text)
    text = unicodedata.normalize("NFKC", text)
    text = URL_RE.sub(" ", text)
    text = MENTION_RE.sub(" ", text)
    return WHITESPACE_RE.sub(" ", text).strip()


def clean_text(text: object, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Return the cleaned text, or raise TextError saying why it cannot be used.

    The cap applies to the raw input, so a huge paste is refused before any work is done, and
    again to the result (Unicode normalisation can lengthen a text). The steps repeat until the
    text no longer changes, so cleaning is idempotent: `clean_text(clean_text(x)) == clean_text(x)`
    (a text escaped several times, `&amp;amp;lt;`, an entity or mention split by an invisible
    character, or a mention glued to another, `@a@b`, comes out fully cleaned).
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
    for _ in range(MAX_PASSES):
        cleaned = _pass(text)
        if cleaned == text:
            break
        text = cleaned
    else:
        raise TooEncodedError("The text is escaped or encoded too many times over to be cleaned.")
    if all(ch in KEEP_FORMAT or ch.isspace() for ch in text):  # only joiners / variation selectors
        raise EmptyTextError(
            "Nothing is left to classify once links, @mentions and invisible characters are removed."
        )
    if len(text) > max_chars:
        raise TextTooLongError(
            f"Once normalised the text is {len(text):,} characters long; the limit is {max_chars:,}. "
            "Shorten it or split it into several texts."
        )
    return text


def try_clean(text: object, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str | None, str | None]:
    """(cleaned, None) or (None, reason): for batch paths that report per-row problems."""
    try:
        return clean_text(text, max_chars), None
    except TextError as exc:
        return None, str(exc)
