"""Import and export of examples (the Annotate tab's Import / export view): CSV in with a preview
of what would be added and skipped, every example out with its label, history count, dataset and
comments. No Gradio here."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.notes import Notes
from bertdemo.datasets import CSVError, download_path, read_csv, write_csv
from bertdemo.db import examples
from bertdemo.db.examples import NewExample
from bertdemo.db.models import text_key
from bertdemo.services import Services
from bertdemo.text import try_clean


@dataclass(frozen=True)
class ImportPreview:
    add: pd.DataFrame  # text, label of the rows that would be added
    skipped: pd.DataFrame  # row (1-based, header = 0), text, reason
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{len(self.add):,} rows to add, {len(self.skipped):,} to skip."
        if len(self.skipped):
            reasons = self.skipped["reason"].str.split(":").str[0].value_counts()
            s += " Skipped: " + ", ".join(f"{n:,} {r}" for r, n in reasons.items()) + "."
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

    def __init__(self, services: Services, notes: Notes) -> None:
        self.settings = services.settings
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self._notes = notes

    def preview_import(self, path: str) -> ImportPreview:
        """What importing this CSV would add and skip (duplicates by cleaned text, unknown labels,
        texts that cannot be cleaned). Writes nothing."""
        table = read_csv(path, int(self.settings.max_upload_mb * 2**20))
        frame = table.frame
        label_col = {str(c).strip().lower(): c for c in frame.columns}.get("label")
        keys_seen: set[str] = set()
        add, skipped, keyed = [], [], []
        for n, raw in enumerate(frame[table.text_column], start=1):
            lab = str(frame[label_col].iloc[n - 1]).strip().lower() if label_col is not None else ""
            cleaned, problem = try_clean(raw, self.settings.max_chars)
            if cleaned is None:
                skipped.append((n, raw, f"bad text: {problem}"))
            elif lab and lab not in self.labels:
                skipped.append((n, raw, f"unknown label: {lab!r} (expected one of {', '.join(self.labels)})"))
            elif (key := text_key(cleaned)) in keys_seen:
                skipped.append((n, raw, "duplicate: repeated in this file"))
            else:
                keys_seen.add(key)
                keyed.append((n, raw, cleaned, lab or None, key))
        with Session(self.engine) as s:
            stored = examples.stored_keys(s, [k[4] for k in keyed])
        for n, raw, cleaned, lab, key in keyed:
            if key in stored:
                skipped.append((n, raw, "duplicate: already in the dataset"))
            else:
                add.append((n, raw, cleaned, lab))
        add_df = pd.DataFrame(add, columns=["row", "text", "cleaned", "label"])
        skip_df = pd.DataFrame(sorted(skipped), columns=["row", "text", "reason"])
        return ImportPreview(add_df, skip_df, list(table.warnings))

    def import_csv(self, path: str, username: str | None) -> ImportDone:
        """Add the rows preview_import accepts, as one transaction (admins only)."""
        who = auth.require_role(self.engine, username, "admin")
        preview = self.preview_import(path)
        if preview.add.empty:
            raise CSVError("Nothing to import: " + preview.summary())
        rows = [NewExample(text=c, raw_text=r, label=lab if isinstance(lab, str) else None)
                for r, c, lab in zip(preview.add["text"], preview.add["cleaned"], preview.add["label"])]
        with Session(self.engine) as s, s.begin():
            res = examples.import_examples(s, rows, "import", who, self.labels)
        return ImportDone(res.added, len(preview.skipped) + res.duplicates, preview)

    def export_frame(self) -> pd.DataFrame:
        with Session(self.engine) as s:
            rows = examples.export_rows(s)
            changes = examples.change_counts(s)
        notes = self._notes.for_export()
        return pd.DataFrame(
            [(i, ext or "", raw, cleaned, lab or "", who or "", at.isoformat(sep=" ", timespec="seconds") if at else "",
              changes.get(i, 0), src, ds or "", notes.get(i, ""))
             for i, ext, raw, cleaned, lab, who, at, src, ds in rows],
            columns=["id", "external_id", "text", "cleaned", "label", "annotator", "updated_at_utc", "changes",
                     "source", "dataset", "comments"])

    def export_csv(self, username: str | None) -> str:
        """Every example with its current label, annotator and number of changes; formula-safe."""
        auth.current_user(self.engine, username)  # Forbidden when accounts exist and nobody signed in
        dest = download_path("bertdemo-labels.csv")
        write_csv(self.export_frame(), dest)
        return str(dest)
