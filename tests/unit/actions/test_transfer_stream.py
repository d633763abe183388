"""The streamed import and export (actions/transfer.py, db/bulk_io.py, datasets.stream_csv) on
SQLite and PostgreSQL (the `db_url` fixture): chunks, all-or-nothing on a bad row, duplicates
across chunks, the row cap setting, and an export byte-identical to the old in-memory one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions import transfer as transfer_mod
from bertdemo.actions.notes import Notes
from bertdemo.actions.transfer import ImportExport
from bertdemo.config import Settings
from bertdemo.datasets import CSVError, read_csv, stream_csv
from bertdemo.db import bulk_io, examples
from bertdemo.db.examples import NewExample
from bertdemo.db.models import Example, LabelEvent
from bertdemo.errors import Forbidden
from bertdemo.services import Services
from tests.support import old_export
from tests.unit.actions.test_annotate import write as write_file

LABELS = ("negative", "neutral", "positive")


@pytest.fixture
def services(db_url, tmp_path):
    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False, db_url=db_url,
                                        max_import_rows=50))
    yield services
    services.engine.dispose()


@pytest.fixture
def io(services) -> ImportExport:
    return ImportExport(services, Notes(services), chunk_rows=7)  # most files below span several chunks


def write(tmp_path, rows, header=("text", "label"), name="in.csv"):
    return write_file(tmp_path, name, rows, header)  # test_annotate's CSV writer, rows first here


def stored(engine):
    with Session(engine) as s:
        rows = s.execute(select(Example.text, Example.label, Example.version, Example.dataset, Example.updated_by)
                         .order_by(Example.id)).all()
        events = s.execute(select(LabelEvent.example_id, LabelEvent.label, LabelEvent.source, LabelEvent.version)
                           .order_by(LabelEvent.id)).all()
    return [tuple(r) for r in rows], [tuple(e) for e in events]


def test_a_file_of_several_chunks_imports_in_file_order_with_its_history(services, io, tmp_path):
    rows = [(f"tweet number {i}", LABELS[i % 3] if i % 2 else "") for i in range(30)]
    done = io.import_csv(write(tmp_path, rows), None)
    assert (done.added, done.skipped) == (30, 0)
    got, events = stored(services.engine)
    assert got == [(t, lab or None, 1 if lab else 0, "import", "local" if lab else None) for t, lab in rows]
    with Session(services.engine) as s:
        ids = list(s.scalars(select(Example.id).order_by(Example.id)))
    assert events == [(ids[i], lab, "import", 1) for i, (_t, lab) in enumerate(rows) if lab]


def test_duplicates_across_chunks_and_against_stored_rows(services, io, tmp_path):
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, [NewExample("stored before", "stored before", "neutral")], "dataset", "d", LABELS)
    rows = [(f"row {i}", "") for i in range(20)]
    rows[15] = ("ROW 2", "positive")  # repeats row 3 (chunk 1) in chunk 3: the same cleaned text, any case
    rows[9] = ("Stored before", "")
    p = io.preview_import(write(tmp_path, rows))
    reasons = dict(zip(p.skipped["row"], p.skipped["reason"]))
    assert reasons == {16: bulk_io.REPEATED, 10: bulk_io.STORED}
    assert (p.n_add, p.n_skipped) == (18, {"duplicate": 2}) and len(p.add) == 18
    assert "18 rows to add, 2 to skip. Skipped: 2 duplicate." == p.summary()
    assert stored(services.engine)[0] == [("stored before", "neutral", 1, None, "d")]  # the preview wrote nothing
    done = io.import_csv(write(tmp_path, rows), None)
    assert (done.added, done.skipped) == (18, 2)
    with pytest.raises(CSVError, match="Nothing to import: 0 rows to add, 20 to skip"):
        io.import_csv(write(tmp_path, rows), None)


def test_unknown_labels_and_bad_texts_are_skipped_with_their_reason(services, io, tmp_path):
    rows = [(f"ok {i}", "Positive") for i in range(10)] + [("fine", "great"), ("   ", ""), ("last", "negative")]
    done = io.import_csv(write(tmp_path, rows), None)
    assert (done.added, done.skipped) == (11, 2)
    reasons = dict(zip(done.preview.skipped["row"], done.preview.skipped["reason"]))
    assert reasons[11] == "unknown label: 'great' (expected one of negative, neutral, positive)"
    assert reasons[12].startswith("bad text: ")
    assert done.preview.n_skipped == {"bad text": 1, "unknown label": 1}


def test_a_malformed_row_in_a_late_chunk_imports_nothing_and_names_its_line(services, io, tmp_path):
    path = tmp_path / "late.csv"
    body = "".join(f"row {i},positive\n" for i in range(40))
    path.write_text("text,label\n" + body + "one,two,three\n" + "after,neutral\n")
    for call in (io.preview_import, lambda p: io.import_csv(p, None)):
        with pytest.raises(CSVError, match=r"not valid CSV: Expected 2 fields in line 42, saw 3"):
            call(str(path))
    assert stored(services.engine) == ([], [])
    assert io.import_csv(write(tmp_path, [("afterwards", "")]), None).added == 1  # no staging table left behind


def test_the_row_cap_is_a_setting_and_refuses_the_whole_file(services, io, tmp_path):
    with pytest.raises(CSVError, match=r"The CSV has more than 50 rows; the limit is 50 \(BERTDEMO_MAX_IMPORT_ROWS\)"):
        io.import_csv(write(tmp_path, [(f"r{i}", "") for i in range(51)]), None)
    assert stored(services.engine) == ([], [])
    assert io.import_csv(write(tmp_path, [(f"r{i}", "") for i in range(50)]), None).added == 50
    assert io.limits() == "up to 500 MB and 50 rows (BERTDEMO_MAX_IMPORT_MB, BERTDEMO_MAX_IMPORT_ROWS)"


def test_only_admins_import_when_accounts_exist(services, io, tmp_path):
    auth.add_user(services.engine, "ann", "password1", "annotator")
    with pytest.raises(Forbidden):
        io.import_csv(write(tmp_path, [("x", "")]), "ann")


def test_the_preview_lists_the_first_rows_and_counts_them_all(services, io, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer_mod, "PREVIEW_ROWS", 5)
    p = io.preview_import(write(tmp_path, [(f"t{i}", "bad") for i in range(12)] + [(f"u{i}", "") for i in range(9)]))
    assert list(p.skipped["row"]) == [1, 2, 3, 4, 5] and list(p.add["row"]) == [13, 14, 15, 16, 17]
    assert p.summary() == ("9 rows to add, 12 to skip. Skipped: 12 unknown label. "
                           "The tables list the first 5 of each.")


def test_the_streamed_export_is_byte_identical_to_the_old_one(services, io, tmp_path, monkeypatch):
    monkeypatch.setattr(bulk_io, "EXPORT_BATCH", 4)  # several batches
    rows = [(f"=cmd {i}" if i % 5 == 0 else f"line\r\nbreak, \"quoted\" {i}", LABELS[i % 3] if i % 2 else "")
            for i in range(13)]
    io.import_csv(write(tmp_path, rows), None)
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, [NewExample("bundled", "@x bundled", "neutral", external_id="42",
                                                dataset="airline")], "dataset", "dataset", LABELS)
        first = s.scalar(select(func.min(Example.id)))
        examples.set_label(s, first, "negative", "ann", "annotator", LABELS)
    io._notes.comment(first, "=sum(1) looks wrong", None)
    streamed = io.export_csv(None)
    old = tmp_path / "old.csv"
    old_export(io, old)
    assert Path(streamed).read_bytes() == old.read_bytes()
    df = pd.read_csv(streamed, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert len(df) == 14 and list(df["changes"][:2]) == ["1", "1"] and df["comments"].iloc[0].endswith(": =sum(1) looks wrong")


def test_an_empty_export_is_the_header(services, io, tmp_path):
    old = tmp_path / "old.csv"
    old_export(io, old)
    assert Path(io.export_csv(None)).read_bytes() == old.read_bytes()


@pytest.mark.parametrize("content", [
    "text\ncaf\xe9 cr\xe8me " + "x" * 40 + "\n",  # cp1252, the odd byte past the first block
    "\ufefftext\n" + "y" * 30 + "\u00e9\n",  # UTF-8 with BOM, a two-byte character across blocks
])
def test_the_encoding_pass_reads_blocks_as_the_whole_file_would(tmp_path, monkeypatch, content):
    p = tmp_path / "enc.csv"
    p.write_bytes(content.encode("cp1252" if "\ufeff" not in content else "utf-8"))
    whole = read_csv(p, 2**20)
    monkeypatch.setattr("bertdemo.datasets.BLOCK_BYTES", 3)
    small = stream_csv(p, 2**20, chunk_rows=1)
    assert (small.encoding, small.warnings) == (whole.encoding, whole.warnings)
    assert list(pd.concat(list(small.chunks))["text"]) == list(whole.frame["text"])


def test_on_sqlite_the_rows_go_in_by_chunks_and_a_save_gets_in_between(services, tmp_path, monkeypatch):
    """SQLite has one write lock: the import writes `write_rows` rows per transaction, so a label save
    from another connection between two chunks is not kept waiting for the whole file; the result is
    the same as one transaction's (file order, history rows). PostgreSQL writes it in one."""
    from bertdemo.db import bulk_io

    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, [NewExample("stored before", "stored before")], "dataset", "d", LABELS)
    io = ImportExport(services, Notes(services), chunk_rows=7, write_rows=4)
    rows = [(f"tweet number {i}", LABELS[i % 3] if i % 2 else "") for i in range(10)]
    real_add, real_lock, chunks, saved = bulk_io.add_staged, examples.lock, [], []

    def add(s, *args, **kwargs):
        chunks.append(kwargs.get("rows"))
        return real_add(s, *args, **kwargs)

    def lock(s, ids):
        if len(chunks) == 1:  # another person saves a label after the first chunk's commit, before the second
            with Session(services.engine) as other, other.begin():
                saved.append(examples.set_label(other, 1, "neutral", "bob", "annotator", LABELS).version)
        return real_lock(s, ids)

    monkeypatch.setattr(bulk_io, "add_staged", add)
    monkeypatch.setattr(examples, "lock", lock)
    services.engine.dialect.name == "sqlite" or pytest.skip("chunked only on SQLite")
    done = io.import_csv(write(tmp_path, rows), None)
    assert done.added == 10 and chunks == [(1, 4), (5, 8), (9, 10)] and saved == [1]
    got, events = stored(services.engine)
    assert [t for t, *_ in got] == ["stored before"] + [t for t, _lab in rows]
    assert len(events) == 1 + sum(1 for _t, lab in rows if lab)  # bob's, then one per labelled row
