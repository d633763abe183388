"""The bundled dataset, CSV reading with validation, and the stratified train/validation split."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bertdemo.store import NewExample
from bertdemo.text import try_clean

MAX_ROWS = 200_000


class CSVError(ValueError):
    """A CSV the app cannot use; the message says why, for the user."""


@dataclass(frozen=True)
class CSVTable:
    frame: pd.DataFrame  # every column as str; `text_column` names the text
    text_column: str
    encoding: str
    warnings: list[str] = field(default_factory=list)


def read_csv(path: str | os.PathLike, max_bytes: int, required: str = "text") -> CSVTable:
    """Read an uploaded CSV defensively: size cap, encoding, parse errors, the `text` column."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise CSVError(f"The file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
                       "Split it into smaller files.")
    raw = path.read_bytes()
    if not raw.strip():
        raise CSVError("The file is empty: it needs a header row with a 'text' column and at least one row.")
    if b"\x00" in raw[:4096]:
        raise CSVError("This does not look like a CSV file (it contains binary data).")
    warnings: list[str] = []
    try:
        content, encoding = raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        try:
            content, encoding = raw.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            raise CSVError(f"The file is not UTF-8 (undecodable byte 0x{raw[exc.start]:02x} at position "
                           f"{exc.start}). Save it as 'CSV UTF-8' and upload it again.") from None
        warnings.append(f"The file is not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start}); "
                        "it was read as Windows-1252. Check the accented characters in the result.")
    try:
        frame = pd.read_csv(io.StringIO(content), dtype=str, keep_default_na=False, na_filter=False,
                            on_bad_lines="error", engine="python", quoting=csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise CSVError(f"The file is not valid CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise CSVError("The file is empty: it needs a header row with a 'text' column.") from None
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if required not in columns:
        found = ", ".join(repr(str(c)) for c in frame.columns[:10]) or "none"
        raise CSVError(f"The CSV needs a '{required}' column; found columns: {found}.")
    if len(frame) == 0:
        raise CSVError("The CSV has a header but no rows.")
    if len(frame) > MAX_ROWS:
        raise CSVError(f"The CSV has {len(frame):,} rows; the limit is {MAX_ROWS:,}.")
    return CSVTable(frame=frame, text_column=columns[required], encoding=encoding, warnings=warnings)


def load_bundled(path: Path, max_chars: int) -> list[NewExample]:
    """The airline tweets as cleaned, labelled rows (tweets that clean to nothing are skipped)."""
    df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    rows = []
    for rec in df.itertuples(index=False):
        cleaned, _err = try_clean(rec.text, max_chars)
        if cleaned is None:
            continue
        rows.append(NewExample(text=cleaned, raw_text=rec.text, label=rec.label, external_id=rec.id,
                               meta={"airline": rec.airline, "label_confidence": float(rec.label_confidence)}))
    return rows


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), stratified by label."""
    idx = np.arange(len(labels))
    n_val = max(int(round(len(labels) * val_fraction)), len(set(labels)))
    train, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=np.asarray(labels))
    return np.sort(train), np.sort(val)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """Escape a cell that a spreadsheet would run as a formula (CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """UTF-8 CSV (with BOM, so spreadsheets detect the encoding), formula-safe."""
    safe = frame.copy()
    for col in safe.columns:
        if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
            safe[col] = safe[col].map(csv_safe)
    safe.to_csv(path, index=False, encoding="utf-8-sig")
