"""Property-based tests (hypothesis): the one text cleaning and the CSV import path hold their
promises for arbitrary input, not only for the examples we thought of.

Settings are CI-sized (about 150 examples each, no deadline, no example database on disk), so the
module runs in a few seconds; `HYPOTHESIS_PROFILE=thorough` runs ten times more examples.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bertdemo.text import KEEP_FORMAT, MENTION_RE, URL_RE, TextError, clean_text

# this module's settings, not a global profile: other modules keep hypothesis' defaults
PROPS = settings(max_examples=1500 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 150, deadline=None,
                 database=None, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

LABELS = ("negative", "neutral", "positive")

# ---------------------------------------------------------------------------- text cleaning
# the pieces real tweets (and attacks) are made of, so the generator reaches the interesting
# branches far more often than uniformly random code points would
PIECES = st.sampled_from([
    "@united", "@a@b", "@", "http://t.co/x", "https://", "www.", "www.x.com/a?b=1", "&amp;", "&amp;amp;",
    "&lt;", "&gt;", "&#64;", "&#x40;", "&#0;", "&#x1b;", "&#xD800;", "&#x200b;", "&", ";", "＆ｌｔ；", "＠ｕｎｉｔｅｄ",
    "\u200b", "\u200d", "\ufe0f", "\u202e", "\u2066", "\ufeff", "\x00", "\x1b", "\t", "\n", "\r\n", "\u2028",
    "\u00a0", "\u3000", " ", "  ", "e\u0301", "\u0301", "ﷺ", "㍻", "ﬁ", "👍🏽", "👨\u200d👩\u200d👧", "\ud800",
    "\udfff", "\U0010ffff", "\ue000", "<img src=x onerror=alert(1)>", "'; DROP TABLE examples;--", "=1+1",
    "bob@example.com", "good", "BAD", "flight", "#tag", "ÇA", "שלום", "مرحبا", "中文",
])
TEXTS = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=30).map("".join),
)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _check_output(out: str, cap: int) -> None:
    assert out and out == out.strip()  # no leading/trailing whitespace, not empty
    assert "  " not in out and not re.search(r"\s\s", out)  # whitespace collapsed
    assert not CONTROL.search(out)  # no control characters
    assert all(unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn") for ch in out)
    assert all(unicodedata.category(ch) != "Cf" or ch in KEEP_FORMAT for ch in out)
    assert any(ch not in KEEP_FORMAT and not ch.isspace() for ch in out)  # something visible
    assert not URL_RE.search(out) and not MENTION_RE.search(out)
    assert len(out) <= cap
    assert unicodedata.normalize("NFKC", out) == out


@PROPS
@given(TEXTS, st.integers(min_value=1, max_value=400))
@example("@a@b", 2000)  # a mention glued to another: the second used to survive
@example("&amp;amp;lt;b&amp;amp;gt;", 2000)  # escaped three times: used to come out as &lt;b&gt;
@example("＆ｌｔ；", 2000)  # NFKC makes an entity out of fullwidth characters
@example("&l\u200bt;", 2000)  # an invisible character splits an entity
@example("e\u200b\u0301", 2000)  # an invisible character kept NFKC from composing é
@example("ﷺ" * 120, 2000)  # NFKC turns 120 characters into 2,160
@example("\u200d\ufe0f", 2000)  # only a joiner and a variation selector: nothing to classify
def test_clean_text_output_is_clean_and_idempotent(raw, cap):
    try:
        out = clean_text(raw, cap)
    except TextError:
        return  # refusing with a message is allowed; any other exception fails the test
    _check_output(out, cap)
    assert clean_text(out, cap) == out  # idempotent


@PROPS
@given(st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=50),
                 st.lists(st.text(max_size=5), max_size=3)))
def test_clean_text_takes_any_value(value):
    try:
        out = clean_text(value)
    except TextError:
        return
    _check_output(out, 2000)


@PROPS
@given(st.text(min_size=1, max_size=50).filter(lambda t: t.strip()))
def test_length_cap_is_on_the_raw_text(text):
    with pytest.raises(TextError):
        clean_text(text * 100, len(text) * 100 - 1)


# ---------------------------------------------------------------------------- CSV import
@pytest.fixture(scope="module")
def importer(tmp_path_factory):
    """ImportExport (the Annotate adapters' import) on one database for the whole module (no model: import needs none), with
    a size cap small enough that the generator reaches it now and then."""
    from bertdemo.actions.annotate import AnnotateAdapters
    from bertdemo.config import Settings
    from bertdemo.services import Services

    services = Services.create(Settings(serving="bf16", data_dir=tmp_path_factory.mktemp("props") / "rt", bootstrap=False,
                                        max_upload_mb=0.02, max_import_mb=0.02))
    return AnnotateAdapters.create(services).transfer, tmp_path_factory.mktemp("csv")


CELLS = st.one_of(
    PIECES, st.sampled_from(["", " ", ",", '"', '""', "\n", "\r", "\r\n", "a,b", 'say "hi"', "nan", "None",
                             *LABELS, "POSITIVE", " neutral ", "great", "text", "label"]),
    st.text(max_size=20), TEXTS,
)
HEADERS = st.lists(st.sampled_from(["text", "Text", " TEXT ", "label", "Label", "id", "tweet", "", "text",
                                    "=cmd", "label "]), min_size=1, max_size=4)


@st.composite
def csv_files(draw) -> bytes:
    """Mostly CSV-shaped bytes: a header (usually with a text column) and rows (usually as wide
    as the header) written by the csv module (well quoted) or joined by hand (anything goes), in
    one of several encodings; sometimes plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    header = draw(HEADERS)
    if draw(st.integers(0, 4)) and not any(h.strip().lower() == "text" for h in header):
        header.insert(draw(st.integers(0, len(header))), "text")
    width = st.just(len(header)) if draw(st.integers(0, 4)) else st.integers(max(len(header) - 1, 0), len(header) + 1)
    rows = draw(st.lists(width.flatmap(lambda n: st.lists(CELLS, min_size=n, max_size=n)),
                         min_size=1 if draw(st.integers(0, 9)) else 0, max_size=12))
    if draw(st.integers(0, 9)):  # NUL bytes make the whole file refused: only now and then
        rows = [[c.replace("\x00", "") for c in r] for r in rows]
    if draw(st.integers(0, 3)):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
        w.writerow(header)
        w.writerows(rows)
        content = buf.getvalue()
    else:
        sep = draw(st.sampled_from([",", ",", ";", "\t"]))
        content = "\n".join(sep.join(r) for r in [header, *rows]) + draw(st.sampled_from(["", "\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "cp1252", "utf-16", "latin-1"]))
    return content.encode(encoding, errors="surrogatepass" if encoding.startswith("utf") else "replace")


@PROPS
@given(st.binary(max_size=2000))
def test_read_csv_takes_any_bytes(tmp_path_factory, data):
    from bertdemo.datasets import CSVError, read_csv

    path = tmp_path_factory.getbasetemp() / "any.csv"
    path.write_bytes(data)
    try:
        table = read_csv(path, 2**20)
    except CSVError as exc:
        assert str(exc)
        return
    assert table.text_column in table.frame.columns and len(table.frame) >= 1
    assert all(isinstance(v, str) for v in table.frame.to_numpy().ravel())


@PROPS
@given(csv_files())
@example(b"text,label\nsome text,positive,extra\n")  # used to shift the columns: text 'positive'
@example(b"label,text\npositive\n")  # a missing field used to be read as the text 'nan'
@example("text\rold mac\r".encode())
def test_import_preview_counts_and_idempotence(importer, data):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from bertdemo.datasets import CSVError, read_csv
    from bertdemo.db import examples
    from bertdemo.db.models import Example, LabelEvent

    acts, folder = importer
    path = folder / "in.csv"
    path.write_bytes(data)
    cap = int(acts.settings.max_upload_mb * 2**20)
    try:
        preview = acts.preview_import(str(path))
    except CSVError as exc:
        assert str(exc)
        event(f"refused: {str(exc)[:28]}")
        with pytest.raises(CSVError):  # the import refuses it the same way, writing nothing
            acts.import_csv(str(path), None)
        return
    rows = len(read_csv(path, cap).frame)
    event("previewed: nothing to add" if preview.add.empty else "previewed: rows to add")
    assert len(preview.add) + len(preview.skipped) == rows
    assert sorted([*preview.add["row"], *preview.skipped["row"]]) == list(range(1, rows + 1))
    assert set(preview.add["label"].dropna()) <= set(LABELS)
    with Session(acts.engine) as s:
        before = examples.count_examples(s)
    if preview.add.empty:
        with pytest.raises(CSVError, match="Nothing to import"):
            acts.import_csv(str(path), None)
    else:
        done = acts.import_csv(str(path), None)
        assert done.added == len(preview.add) and done.added + done.skipped == rows
    with Session(acts.engine) as s:
        assert examples.count_examples(s) == before + len(preview.add)
        assert set(s.scalars(select(Example.label).distinct())) <= {None, *LABELS}
        assert set(s.scalars(select(LabelEvent.label).distinct())) <= {None, *LABELS}
    # importing the same file again adds nothing
    again = acts.preview_import(str(path))
    assert again.add.empty and len(again.skipped) == rows
    with pytest.raises(CSVError, match="Nothing to import"):
        acts.import_csv(str(path), None)
    with Session(acts.engine) as s:
        assert examples.count_examples(s) == before + len(preview.add)
