import os
import re
import time

import numpy as np
import pandas as pd
import pytest

from bertdemo.config import BUNDLED_DATASET
from bertdemo.datasets import (CSVError, csv_safe, download_path, load_bundled, read_csv, stratified_split,
                               write_csv)

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


def test_bundled_texts_show_what_their_authors_typed():
    # the data build unescapes Twitter's HTML entities once: "&amp;" shows as "&" in every view
    df = pd.read_csv(BUNDLED_DATASET, keep_default_na=False).set_index("id")
    assert df.loc["0ca9277f91e4", "text"] == ("@VirginAmerica hi! i'm so excited about your $99 LGA->DAL deal- but "
                                             "i've been trying 2 book since last week & the page never loads. thx!")
    airline = df["text"]
    general = pd.read_csv(BUNDLED_DATASET.with_name("general_tweets.csv"), keep_default_na=False)["text"]
    assert airline.str.contains("&amp;|&lt;|&gt;|&quot;").sum() == 0
    # one general tweet had "&amp;" typed (escaped twice in the source): unescaping once keeps it
    assert general.str.contains("&amp;|&lt;|&gt;").sum() == 1


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


# ------------------------------------------------------------------------- the general tweets (issue 13)
GENERAL_COUNTS = {"negative": 1837, "neutral": 8208, "positive": 3290}


def test_bundled_general_dataset_matches_its_data_card():
    from bertdemo.config import GENERAL_DATASET

    df = pd.read_csv(GENERAL_DATASET, keep_default_na=False, dtype={"id": str})
    assert len(df) == 13_335 and df["label"].value_counts().to_dict() == GENERAL_COUNTS
    assert set(df["topic"]) == {"self_driving_cars", "coachella_2015", "apple", "claritin"}
    assert df["id"].is_unique and not df["text"].str.contains("[\x00-\x1f\x7f-\x9f]").any()
    card = (GENERAL_DATASET.parent / "general_tweets.md").read_text()
    assert "13,335" in card and "CC BY-NC-SA 4.0" in card and "Deflategate" in card
    airline_ids = set(pd.read_csv(BUNDLED_DATASET, dtype={"id": str}, keep_default_na=False)["id"])
    assert not airline_ids & set(df["id"])  # distinct ids: the import tells the two apart


@pytest.fixture
def tiny_general(tmp_path):
    from bertdemo.config import GENERAL_DATASET

    df = pd.read_csv(GENERAL_DATASET, dtype={"id": str}, keep_default_na=False)
    path = tmp_path / "general.csv"
    df.groupby("label", group_keys=False).sample(n=20, random_state=0).to_csv(path, index=False)
    return path


def test_both_bundled_datasets_import_once_each_with_their_dataset_stored(tmp_path, tiny_general):
    from sqlalchemy.orm import Session

    from bertdemo.actions.annotate import AnnotateAdapters
    from bertdemo.config import Settings
    from bertdemo.db import examples
    from bertdemo.services import Services

    airline = tmp_path / "airline.csv"
    pd.read_csv(BUNDLED_DATASET, dtype={"id": str}, keep_default_na=False).head(50).to_csv(airline, index=False)
    settings = Settings(serving="bf16", data_dir=tmp_path / "rt", dataset_path=airline, general_dataset_path=tiny_general,
                        bootstrap=False)
    services = Services.create(settings)
    first = services.ensure_dataset()
    assert first.added >= 105 and services.ensure_dataset().added == 0  # idempotent
    with Session(services.engine) as s:
        assert examples.dataset_names(s) == ["airline", "general"]
        rows = examples.queue_ids(s, "search", None, "a", dataset="general")
        kinds = examples.datasets_of(s, rows)
        metas = [examples.get(s, i).meta for i in rows[:5]]
    assert rows and set(kinds.values()) == {"general"}
    assert all("topic" in m for m in metas)
    acts = AnnotateAdapters.create(services)
    table = acts.labelling.table("any", dataset="general", limit=1000)
    assert len(table) == sum(1 for d in kinds.values() if d == "general") or len(table) >= len(rows)
    assert set(acts.transfer.export_frame()["dataset"]) == {"airline", "general"}
    with pytest.raises(Exception, match="The dataset must be one of"):
        acts.labelling.table("any", dataset="sports")
    # only the airline set when the setting says so
    only = Services.create(settings.with_(data_dir=tmp_path / "rt2", datasets=("airline",)))
    only.ensure_dataset()
    with Session(only.engine) as s:
        assert examples.dataset_names(s) == ["airline"]


def test_the_split_holds_out_each_dataset_in_its_own_proportion():
    y = np.array([0, 1, 2] * 200)
    groups = ["airline"] * 450 + ["general"] * 150
    tr, va = stratified_split(y, 0.1, 0, groups)
    assert len(va) == 60 and sum(1 for i in va if groups[i] == "general") == 15
    assert not set(tr) & set(va)


def test_download_files_are_removed_once_served_and_old(tmp_path):
    first = download_path("bertdemo-labels.csv", root=tmp_path)
    first.write_text("id,label\n")
    second = download_path("bertdemo-labels.csv", root=tmp_path)  # the same name, its own folder
    assert first.parent != second.parent and first.parent.parent == second.parent.parent == tmp_path
    assert first.exists()  # younger than keep_s: a download may still be in flight
    old = time.time() - 3600
    os.utime(first.parent, (old, old))
    third = download_path("predictions.csv", root=tmp_path)
    assert not first.parent.exists() and second.parent.exists() and third.parent.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([second.parent.name, third.parent.name])


def test_exports_and_batch_predictions_are_written_under_the_downloads_folder():
    import inspect

    from bertdemo.actions import predict, transfer
    for module in (predict, transfer):  # never a tempfile.mkdtemp of their own, which nothing removes
        source = inspect.getsource(module)
        assert "download_path(" in source and "mkdtemp" not in source, module.__name__
