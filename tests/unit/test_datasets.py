import re

import numpy as np
import pandas as pd
import pytest

from bertdemo.config import BUNDLED_DATASET
from bertdemo.datasets import CSVError, csv_safe, load_bundled, read_csv, stratified_split, write_csv

MB = 2**20


def write(tmp_path, content: bytes | str, name="in.csv"):
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def test_bundled_dataset_is_the_airline_set():
    df = pd.read_csv(BUNDLED_DATASET, keep_default_na=False)
    assert len(df) == 14_638
    assert df["label"].value_counts().to_dict() == {"negative": 9176, "neutral": 3099, "positive": 2363}
    assert not df["text"].str.contains("[\x80-\x9f]").any()  # no mojibake left
    assert df["id"].is_unique


def test_load_bundled_cleans_every_text():
    rows = load_bundled(BUNDLED_DATASET, 2000)
    assert len(rows) > 14_500
    assert all("@" not in r.text.split()[0] for r in rows[:200])  # the leading @airline is gone
    assert {r.label for r in rows} == {"negative", "neutral", "positive"}


def test_read_csv_ok_with_bom_and_case_insensitive_column(tmp_path):
    t = read_csv(write(tmp_path, "\ufeffID,Text\n1,hello\n2,\"a, b\"\n"), MB)
    assert t.text_column == "Text" and list(t.frame["Text"]) == ["hello", "a, b"] and t.warnings == []


def test_read_csv_refuses_missing_text_column(tmp_path):
    with pytest.raises(CSVError, match=r"needs a 'text' column; found columns: 'tweet', 'label'"):
        read_csv(write(tmp_path, "tweet,label\nx,positive\n"), MB)


@pytest.mark.parametrize("content, fragment", [
    ("", "empty"), ("   \n", "empty"), ("text\n", "header but no rows"),
    (b"\x00\x01\x02binary", "binary"), ('text,label\n"unterminated,x\n', "not valid CSV"),
])
def test_read_csv_bad_files(tmp_path, content, fragment):
    with pytest.raises(CSVError, match=fragment):
        read_csv(write(tmp_path, content), MB)


def test_non_utf8_is_read_as_cp1252_with_a_warning(tmp_path):
    t = read_csv(write(tmp_path, "text\ncaf\xe9 cr\xe8me\n".encode("cp1252")), MB)
    assert t.frame["text"][0] == "café crème" and t.encoding == "cp1252"
    assert "not UTF-8" in t.warnings[0]


def test_size_cap(tmp_path):
    p = write(tmp_path, "text\n" + "x" * 2 * MB)
    with pytest.raises(CSVError, match=r"The file is 2.0 MB; the limit is 1 MB"):
        read_csv(p, MB)


def test_stratified_split_keeps_proportions():
    y = np.array([0] * 80 + [1] * 15 + [2] * 5)
    tr, va = stratified_split(y, 0.2, seed=0)
    assert len(va) == 20 and set(tr).isdisjoint(va) and len(tr) + len(va) == 100
    assert np.bincount(y[va]).tolist() == [16, 3, 1]


def test_csv_safe_escapes_formulas(tmp_path):
    assert csv_safe("=1+1") == "'=1+1" and csv_safe("@SUM(A1)") == "'@SUM(A1)"
    assert csv_safe("-2") == "'-2" and csv_safe("fine") == "fine" and csv_safe(3) == 3
    out = tmp_path / "o.csv"
    write_csv(pd.DataFrame({"text": ["=HYPERLINK(\"x\")", "ok"]}), out)
    assert pd.read_csv(out, encoding="utf-8-sig")["text"].tolist() == ["'=HYPERLINK(\"x\")", "ok"]


def test_write_csv_escapes_headers_and_every_formula_prefix(tmp_path):
    out = tmp_path / "o.csv"
    cells = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "fine", "a=b"]
    write_csv(pd.DataFrame({"=HYPERLINK(\"http://x\")": cells, "'=HYPERLINK(\"http://x\")": cells, "n": range(8)}), out)
    df = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(df.columns) == ["'=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\").1", "n"]
    assert list(df.iloc[:, 0]) == ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "fine", "a=b"]
    assert list(df["n"]) == [str(i) for i in range(8)]  # numbers are left alone
    write_csv(pd.DataFrame({"text": ["one\rtwo", "three\nfour", "five"]}), out)  # a lone \r stays in its cell
    assert pd.read_csv(out, encoding="utf-8-sig")["text"].tolist() == ["one\rtwo", "three\nfour", "five"]


def test_rows_with_missing_fields_read_as_empty_not_nan(tmp_path):
    t = read_csv(write(tmp_path, "text,label\nonly text\n,positive\n"), MB)
    assert t.frame.to_dict("records") == [{"text": "only text", "label": ""}, {"text": "", "label": "positive"}]


def test_a_row_with_an_extra_field_is_an_error_not_a_shifted_row(tmp_path):
    # pandas used to read the extra first field as the index: text 'positive', label 'extra'
    with pytest.raises(CSVError, match="Expected 2 fields in line 2, saw 3"):
        read_csv(write(tmp_path, "text,label\nsome text,positive,extra\n"), MB)
    t = read_csv(write(tmp_path, "text,text,,label\na,b,c,positive\n"), MB)
    assert list(t.frame.columns) == ["text", "text.1", "Unnamed: 2", "label"] and t.frame["text"][0] == "a"


def test_old_mac_line_ends_and_utf16(tmp_path):
    assert list(read_csv(write(tmp_path, "text\rone\rtwo\r"), MB).frame["text"]) == ["one", "two"]
    t = read_csv(write(tmp_path, "text,label\ncafé,positive\n".encode("utf-16")), MB)
    assert (t.encoding, list(t.frame["text"])) == ("utf-16", ["café"])


@pytest.mark.parametrize("content, fragment", [
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "zip file (an Excel .xlsx workbook?)"),
    (b"text\n" + b"x" * 5000 + b"\x00\n", "binary data: NUL bytes"),  # past the first 4 kB too
    ("text;label\nhello;positive\n", "seems to use another separator"),
    ("text\n" + "a" * 200_000 + "\n", "longer than 131,072 characters"),
    (",".join(f"c{i}" for i in range(10_000)) + "\n" + "x," * 9_999 + "x\n", "'c9' and 9,990 more"),
])
def test_read_csv_explains_what_is_wrong(tmp_path, content, fragment):
    with pytest.raises(CSVError, match=re.escape(fragment)):
        read_csv(write(tmp_path, content), MB)
