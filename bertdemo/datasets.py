"""The bundled dataset, CSV reading with validation, and the stratified train/validation split."""

from __future__ import annotations

import codecs
import csv
import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bertdemo.db.examples import NewExample
from bertdemo.errors import BadInput
from bertdemo.text import try_clean

MAX_ROWS = 200_000
ZIP_MAGIC = b"PK\x03\x04"  # .xlsx, .zip, .docx, ...


class CSVError(BadInput):
    """A CSV the app cannot use; the message says why."""


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
    warnings: list[str] = []
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
        try:
            content, encoding = raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise CSVError("The file starts like UTF-16 but is not valid UTF-16. Save it as 'CSV UTF-8' "
                           "and upload it again.") from None
        if "\x00" in content:
            raise CSVError("This does not look like a CSV file (it contains binary data).")
    else:
        if raw.startswith(ZIP_MAGIC):
            raise CSVError("This is a zip file (an Excel .xlsx workbook?), not CSV: in the spreadsheet, "
                           "save it as 'CSV UTF-8' and upload that.")
        if b"\x00" in raw:
            raise CSVError("This does not look like a CSV file (it contains binary data: NUL bytes).")
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
        # newline=None: \r\n and old-Mac \r line ends both read as \n. header=None: the header is
        # read as the first row, so a row with more fields than it is an error (with a header,
        # pandas would take the extra first field as the index and shift every column left)
        frame = pd.read_csv(io.StringIO(content, newline=None), dtype=str, keep_default_na=False, header=None,
                            na_filter=False, on_bad_lines="error", engine="python", quoting=csv.QUOTE_MINIMAL)
    except pd.errors.EmptyDataError:
        raise CSVError("The file is empty: it needs a header row with a 'text' column.") from None
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        if "field larger than field limit" in str(exc):
            raise CSVError(f"A cell of the file is longer than {csv.field_size_limit():,} characters, far more "
                           "than any text can be: remove or shorten it and upload the file again.") from None
        raise CSVError(f"The file is not valid CSV: {exc}") from None
    frame = frame.fillna("")  # a row with fewer fields than the header: the missing ones are empty
    frame, header = frame.iloc[1:].reset_index(drop=True), list(frame.iloc[0]) if len(frame) else []
    frame.columns = _unique_names(header)
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if required not in columns:
        found = ", ".join(repr(str(c)[:40]) for c in frame.columns[:10]) or "none"
        more = f" and {len(frame.columns) - 10:,} more" if len(frame.columns) > 10 else ""
        hint = ""
        if len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";\t|"):
            hint = " The columns must be separated by commas (this file seems to use another separator)."
        raise CSVError(f"The CSV needs a '{required}' column; found columns: {found}{more}.{hint}")
    if len(frame) == 0:
        raise CSVError("The CSV has a header but no rows.")
    if len(frame) > MAX_ROWS:
        raise CSVError(f"The CSV has {len(frame):,} rows; the limit is {MAX_ROWS:,}.")
    return CSVTable(frame=frame, text_column=columns[required], encoding=encoding, warnings=warnings)


def _unique_names(header: list[str]) -> list[str]:
    """Column names as pandas makes them: empty ones 'Unnamed: i', repeats 'name.1', 'name.2'."""
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(header):
        name = str(name) or f"Unnamed: {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


def load_bundled(path: Path, max_chars: int, dataset: str = "airline") -> list[NewExample]:
    """A bundled dataset (data/airline_tweets.csv or data/general_tweets.csv) as cleaned, labelled
    rows of `dataset` (tweets that clean to nothing are skipped). Its `airline` or `topic` column
    and the crowd's `label_confidence` (empty for some general tweets) go into the example's meta."""
    df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    rows = []
    for rec in df.to_dict(orient="records"):
        cleaned, _err = try_clean(rec["text"], max_chars)
        if cleaned is None:
            continue
        meta = {k: rec[k] for k in ("airline", "topic") if rec.get(k)}
        if str(rec.get("label_confidence", "")).strip():
            meta["label_confidence"] = float(rec["label_confidence"])
        rows.append(NewExample(text=cleaned, raw_text=rec["text"], label=rec["label"], external_id=rec["id"],
                               meta=meta, dataset=dataset))
    return rows


def stratified_split(labels: Sequence[int], val_fraction: float, seed: int,
                     groups: Sequence[str | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), stratified by label, and by (group, label) when `groups` (each
    example's dataset) are given and every such pair has at least two examples, so each dataset
    is held out in its own proportion and per-dataset scores can be read off the validation split."""
    idx = np.arange(len(labels))
    strata = np.asarray(labels)
    if groups is not None and len(set(groups)) > 1:
        pairs = np.asarray([f"{g}|{y}" for g, y in zip(groups, labels)])
        if min(np.unique(pairs, return_counts=True)[1]) >= 2:
            strata = pairs
    n_val = max(int(round(len(labels) * val_fraction)), len(set(strata.tolist())))
    train, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=strata)
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
    for i in range(safe.shape[1]):  # by position: the escaped headers below may repeat a name
        col = safe.iloc[:, i]
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            safe.isetitem(i, col.map(csv_safe))
    safe.columns = [csv_safe(c) for c in safe.columns]  # an uploaded file's headers come back too
    # CRLF line ends (RFC 4180): the csv writer then quotes every cell holding \r or \n, which
    # with a bare \n it does not do for \r (a lone \r would split the row in a spreadsheet)
    safe.to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")


DOWNLOADS = Path(tempfile.gettempdir()) / "bertdemo-downloads"  # files handed to a person's browser
DOWNLOAD_KEEP_S = 600.0


def download_path(filename: str, root: Path = DOWNLOADS, keep_s: float = DOWNLOAD_KEEP_S) -> Path:
    """A new path named `filename` (in a folder of its own) for a file a person downloads. The folders
    of earlier downloads older than `keep_s` are removed first, so exports and batch predictions do
    not pile up: Gradio copies a returned file into its own cache as it answers, so ours is needed
    only for that moment (the cache itself is cleaned by ui/demo.py's delete_cache)."""
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - keep_s
    for old in root.iterdir():
        try:
            if old.is_dir() and not old.is_symlink() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another request removed it first
            continue
    folder = root / uuid.uuid4().hex
    folder.mkdir()
    return folder / filename
