"""Import and export of examples (the Annotate tab's Import / export view): CSV in with a preview
of what would be added and skipped, every example out with its label, history count, dataset and
comments. Both stream: the CSV is read in chunks into a staging table (db/bulk_io.py) and the export
is written batch by batch, so memory does not grow with the file or the table. An import is all or
nothing for a bad file: a malformed row anywhere refuses the whole file before anything is written;
the rows are then added in one transaction (PostgreSQL) or in chunks (SQLite: its one write lock
is released between them, see import_csv). No Gradio here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.notes import Notes
from bertdemo.datasets import CHUNK_ROWS, CSVError, download_path, stream_csv, write_csv_rows
from bertdemo.db import bulk_io, examples
from bertdemo.db.bulk_io import StagedRow
from bertdemo.db.models import now, text_key
from bertdemo.services import Services
from bertdemo.text import try_clean

PREVIEW_ROWS = 1_000  # rows each preview table lists (the counts cover the whole file)
WRITE_ROWS = 10_000  # rows per write transaction of an import on SQLite (~1 s of its write lock each)
EXPORT_COLUMNS = ["id", "external_id", "text", "cleaned", "label", "annotator", "updated_at_utc", "changes",
                  "source", "dataset", "comments"]


@dataclass(frozen=True)
class ImportPreview:
    add: pd.DataFrame  # row, text, cleaned, label of the first PREVIEW_ROWS rows that would be added
    skipped: pd.DataFrame  # row (1-based, header = 0), text, reason: the first PREVIEW_ROWS skipped
    warnings: list[str] = field(default_factory=list)
    n_add: int = 0  # rows that would be added, in all
    n_skipped: dict[str, int] = field(default_factory=dict)  # rows skipped, in all, by kind (most first)

    @property
    def skipped_total(self) -> int:
        return sum(self.n_skipped.values())

    def summary(self) -> str:
        s = f"{self.n_add:,} rows to add, {self.skipped_total:,} to skip."
        if self.n_skipped:
            s += " Skipped: " + ", ".join(f"{n:,} {kind}" for kind, n in self.n_skipped.items()) + "."
        if self.n_add > len(self.add) or self.skipped_total > len(self.skipped):
            s += f" The tables list the first {PREVIEW_ROWS:,} of each."
        return s


@dataclass(frozen=True)
class ImportDone:
    added: int
    skipped: int
    preview: ImportPreview

    def summary(self) -> str:
        return f"Added {self.added:,} examples; skipped {self.skipped:,}."


class ImportExport:
    """The import / export adapter: preview and import a CSV, export every example (with `notes`'
    comments)."""

    def __init__(self, services: Services, notes: Notes, chunk_rows: int = CHUNK_ROWS,
                 write_rows: int = WRITE_ROWS) -> None:
        self.settings = services.settings
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self._notes = notes
        self.chunk_rows = chunk_rows
        self.write_rows = write_rows

    def limits(self) -> str:
        """The import limits, for the UI."""
        return (f"up to {self.settings.max_import_mb:,.0f} MB and {self.settings.max_import_rows:,} rows "
                "(BERTDEMO_MAX_IMPORT_MB, BERTDEMO_MAX_IMPORT_ROWS)")

    def preview_import(self, path: str) -> ImportPreview:
        """What importing this CSV would add and skip (duplicates by cleaned text, unknown labels,
        texts that cannot be cleaned). Writes nothing."""
        with Session(self.engine) as s:
            try:
                return self._stage(s, path)
            finally:
                s.rollback()
                bulk_io.drop_stage(s)
                s.commit()

    def import_csv(self, path: str, username: str | None) -> ImportDone:
        """Add the rows preview_import accepts (admins only). The whole file is read and checked
        before anything is written: a malformed row anywhere refuses it all. PostgreSQL adds the rows
        in one transaction (other writers are not blocked by it). SQLite has one write lock for the
        whole database: the rows go in transactions of `write_rows` (~1 s each), so label saves go
        on between them; one transaction held the lock 17.5 s for 300k rows, ~60 s with the text
        search triggers, past the 30 s busy timeout, and saves failed. A crash halfway leaves the
        first chunks in; importing the same file again adds the rest (the others are duplicates)."""
        who = auth.require_role(self.engine, username, "admin")
        # one connection throughout: the staging table is TEMPORARY, it lives on this connection only
        with self.engine.connect() as conn, Session(bind=conn) as s:
            try:
                if conn.dialect.name != "sqlite":
                    with s.begin():
                        preview = self._stage(s, path, lock=True)
                        _refuse_empty(preview)
                        added = bulk_io.add_staged(s, "import", who, now())
                else:
                    with s.begin():
                        preview = self._stage(s, path)
                        _refuse_empty(preview)
                        ranges = bulk_io.write_ranges(s, self.write_rows)
                    stamp, added = now(), 0
                    for rows in ranges:
                        with s.begin():
                            examples.lock(s, [])  # the write lock first: what it reads is what it writes over
                            added += bulk_io.add_staged(s, "import", who, stamp, rows=rows)
            finally:  # SQLite keeps a temporary table created outside a transaction: never leave it
                with s.begin():
                    bulk_io.drop_stage(s)
        return ImportDone(added, preview.skipped_total + preview.n_add - added, preview)

    def _stage(self, s: Session, path: str, lock: bool = False) -> ImportPreview:
        """Read the CSV chunk by chunk into the staging table (each row cleaned, or marked skipped
        with its reason), then classify the duplicates in SQL. `lock`: take the database's write
        lock (SQLite) before reading the stored keys, so the INSERT that follows cannot fail on a
        stale snapshot."""
        stream = stream_csv(path, int(self.settings.max_import_mb * 2**20), max_rows=self.settings.max_import_rows,
                            chunk_rows=self.chunk_rows, rows_setting="BERTDEMO_MAX_IMPORT_ROWS")
        bulk_io.create_stage(s)
        for chunk in stream.chunks:
            labels = chunk[stream.label_column] if stream.label_column is not None else [""] * len(chunk)
            bulk_io.stage(s, [self._row(n, raw, lab) for n, raw, lab in zip(chunk.index, chunk[stream.text_column],
                                                                             labels)])
        if lock:
            examples.lock(s, [])
        counts = bulk_io.classify_stage(s)
        add = pd.DataFrame(bulk_io.staged_rows(s, True, PREVIEW_ROWS), columns=["row", "text", "cleaned", "label"])
        skipped = pd.DataFrame(bulk_io.staged_rows(s, False, PREVIEW_ROWS), columns=["row", "text", "reason"])
        return ImportPreview(add, skipped, list(stream.warnings), counts.add, counts.skipped)

    def _row(self, n: int, raw: str, label: str) -> StagedRow:
        """One CSV row as staged: cleaned and keyed, or skipped for its text or its label."""
        label = str(label).strip().lower()
        cleaned, problem = try_clean(raw, self.settings.max_chars)
        if cleaned is None:
            return StagedRow(int(n), raw, kind="bad text", reason=f"bad text: {problem}")
        if label and label not in self.labels:
            return StagedRow(int(n), raw, kind="unknown label",
                             reason=f"unknown label: {label!r} (expected one of {', '.join(self.labels)})")
        return StagedRow(int(n), raw, cleaned, text_key(cleaned), label or None)

    def _export_batches(self, s: Session) -> Iterator[list[tuple]]:
        """The export's rows (EXPORT_COLUMNS), a batch at a time."""
        notes = self._notes.for_export()
        for part in bulk_io.export_batches(s):
            yield [(i, ext or "", raw, cleaned, lab or "", who or "",
                    at.isoformat(sep=" ", timespec="seconds") if at else "", n, src, ds or "", notes.get(i, ""))
                   for i, ext, raw, cleaned, lab, who, at, n, src, ds in part]

    def export_frame(self) -> pd.DataFrame:
        """The export as one DataFrame, held whole: for tests and small tables (export_csv streams)."""
        with Session(self.engine) as s:
            return pd.DataFrame([r for part in self._export_batches(s) for r in part], columns=EXPORT_COLUMNS)

    def export_csv(self, username: str | None) -> str:
        """Every example with its current label, annotator and number of changes; formula-safe.
        Written batch by batch as the rows are read (db.bulk_io.export_batches), never held whole."""
        auth.current_user(self.engine, username)  # Forbidden when accounts exist and nobody signed in
        dest = download_path("bertdemo-labels.csv")
        with Session(self.engine) as s:
            write_csv_rows(EXPORT_COLUMNS, self._export_batches(s), dest)
        return str(dest)


def _refuse_empty(preview: ImportPreview) -> None:
    if preview.n_add == 0:
        raise CSVError("Nothing to import: " + preview.summary())
