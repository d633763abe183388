"""The bundled dataset, CSV reading with validation, and the stratified train/validation split."""

from __future__ import annotations

import codecs
import csv
import itertools
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bertdemo.db.examples import NewExample
from bertdemo.errors import BadInput
from bertdemo.text import try_clean

MAX_ROWS = 200_000  # read_csv's cap (batch prediction holds fewer: Settings.max_csv_rows); imports stream
CHUNK_ROWS = 10_000  # rows per chunk of stream_csv
BLOCK_BYTES = 2**20  # bytes per block of the encoding pass
ZIP_MAGIC = b"PK\x03\x04"  # .xlsx, .zip, .docx, ...
CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")  # the bytes Windows-1252 cannot decode


class CSVError(BadInput):
    """A CSV the app cannot use; the message says why."""


@dataclass(frozen=True)
class CSVTable:
    frame: pd.DataFrame  # every column as str; `text_column` names the text
    text_column: str
    encoding: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CSVChunks:
    """A CSV read in chunks (stream_csv): `chunks` yields DataFrames of at most `chunk_rows` rows, every
    column as str, indexed by row number (1 = the first row after the header). Iterating it raises
    CSVError for a malformed row (naming its line), no rows at all, or more than `max_rows` rows."""

    columns: list[str]
    text_column: str
    label_column: str | None  # the 'label' column (any case), if any
    encoding: str
    warnings: list[str]
    chunks: Iterator[pd.DataFrame]


def read_csv(path: str | os.PathLike, max_bytes: int, required: str = "text", max_rows: int = MAX_ROWS) -> CSVTable:
    """Read an uploaded CSV defensively, whole: size cap, encoding, parse errors, the `text` column,
    at most `max_rows` rows (stream_csv, collected)."""
    stream = stream_csv(path, max_bytes, required, max_rows=max_rows)
    frame = pd.concat(list(stream.chunks)).reset_index(drop=True)
    return CSVTable(frame=frame, text_column=stream.text_column, encoding=stream.encoding, warnings=stream.warnings)


def stream_csv(path: str | os.PathLike, max_bytes: int, required: str = "text", max_rows: int = MAX_ROWS,
               chunk_rows: int = CHUNK_ROWS, rows_setting: str = "") -> CSVChunks:
    """Read an uploaded CSV defensively, in chunks: the size cap, the encoding (one pass over the
    bytes, a block at a time) and the header are checked now; parse errors and the row cap
    (`rows_setting`: the variable that sets it, named in the message) while `chunks` is read."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise CSVError(f"The file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
                       "Split it into smaller files.")
    encoding, warnings = _encoding(path)
    frames = _frames(path, encoding, chunk_rows)
    first = next(frames, None)
    if first is None:
        raise CSVError("The file is empty: it needs a header row with a 'text' column.")
    header, first = list(first.iloc[0]), first.iloc[1:]
    columns = _unique_names(header)
    by_name = {str(c).strip().lower(): c for c in columns}
    if required not in by_name:
        found = ", ".join(repr(str(c)[:40]) for c in columns[:10]) or "none"
        more = f" and {len(columns) - 10:,} more" if len(columns) > 10 else ""
        hint = ""
        if len(columns) == 1 and any(sep in str(columns[0]) for sep in ";\t|"):
            hint = " The columns must be separated by commas (this file seems to use another separator)."
        raise CSVError(f"The CSV needs a '{required}' column; found columns: {found}{more}.{hint}")
    chunks = _numbered(itertools.chain([first], frames), columns, max_rows, rows_setting)
    return CSVChunks(columns=columns, text_column=by_name[required], label_column=by_name.get("label"),
                     encoding=encoding, warnings=warnings, chunks=chunks)


def _numbered(frames: Iterator[pd.DataFrame], columns: list[str], max_rows: int,
              rows_setting: str) -> Iterator[pd.DataFrame]:
    """The data chunks, named and numbered; the row cap and 'no rows' checked as they come."""
    seen = 0
    for frame in frames:
        if frame.empty:
            continue
        frame = frame.fillna("")  # a row with fewer fields than the header: the missing ones are empty
        frame.columns = columns
        frame.index = pd.RangeIndex(seen + 1, seen + 1 + len(frame))
        seen += len(frame)
        if seen > max_rows:
            setting = f" ({rows_setting})" if rows_setting else ""
            raise CSVError(f"The CSV has more than {max_rows:,} rows; the limit is {max_rows:,}{setting}. "
                           "Split it into smaller files.")
        yield frame
    if seen == 0:
        raise CSVError("The CSV has a header but no rows.")


def _frames(path: Path, encoding: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows (the header first) in chunks of `chunk_rows`, parse errors as CSVError."""
    try:
        # newline=None: \r\n and old-Mac \r line ends both read as \n. header=None: the header is
        # read as the first row, so a row with more fields than it is an error (with a header,
        # pandas would take the extra first field as the index and shift every column left)
        with open(path, encoding=encoding, newline=None) as f:
            yield from pd.read_csv(f, dtype=str, keep_default_na=False, header=None, na_filter=False,
                                   on_bad_lines="error", engine="python", quoting=csv.QUOTE_MINIMAL,
                                   chunksize=chunk_rows)
    except pd.errors.EmptyDataError:
        return
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        if "field larger than field limit" in str(exc):
            raise CSVError(f"A cell of the file is longer than {csv.field_size_limit():,} characters, far more "
                           "than any text can be: remove or shorten it and upload the file again.") from None
        raise CSVError(f"The file is not valid CSV: {exc}") from None


def _encoding(path: Path) -> tuple[str, list[str]]:
    """The file's encoding (utf-8-sig, cp1252 or utf-16) and warnings, from one pass over its bytes a
    block at a time: empty, binary, zip and undecodable files are refused here."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
            return _check_utf16(f), []
        if head.startswith(ZIP_MAGIC):
            raise CSVError("This is a zip file (an Excel .xlsx workbook?), not CSV: in the spreadsheet, "
                           "save it as 'CSV UTF-8' and upload that.")
        blank, nul, cp1252_ok = True, False, True
        bad: tuple[int, int] | None = None  # (position, byte) of the first byte UTF-8 cannot decode
        decoder, fed = codecs.getincrementaldecoder("utf-8")(), 0
        if head.startswith(codecs.BOM_UTF8):
            f.seek(len(codecs.BOM_UTF8))
        while block := f.read(BLOCK_BYTES):
            blank = blank and not block.strip()
            nul = nul or b"\x00" in block
            cp1252_ok = cp1252_ok and CP1252_UNDEFINED.isdisjoint(block)
            if bad is None:
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as exc:
                    bad = (fed - pending + exc.start, exc.object[exc.start])
                fed += len(block)
        if bad is None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                bad = (fed - len(exc.object) + exc.start, exc.object[exc.start])
    if blank:
        raise CSVError("The file is empty: it needs a header row with a 'text' column and at least one row.")
    if nul:
        raise CSVError("This does not look like a CSV file (it contains binary data: NUL bytes).")
    if bad is None:
        return "utf-8-sig", []
    if not cp1252_ok:
        raise CSVError(f"The file is not UTF-8 (undecodable byte 0x{bad[1]:02x} at position {bad[0]}). "
                       "Save it as 'CSV UTF-8' and upload it again.")
    return "cp1252", [(f"The file is not UTF-8 (byte 0x{bad[1]:02x} at position {bad[0]}); it was read as "
                       "Windows-1252. Check the accented characters in the result.")]


def _check_utf16(f: BinaryIO) -> str:
    """'utf-16' when the rest of `f` is valid UTF-16 without NUL characters, else CSVError."""
    decoder = codecs.getincrementaldecoder("utf-16")()
    try:
        while block := f.read(BLOCK_BYTES):
            if "\x00" in decoder.decode(block):
                raise CSVError("This does not look like a CSV file (it contains binary data).")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise CSVError("The file starts like UTF-16 but is not valid UTF-16. Save it as 'CSV UTF-8' "
                       "and upload it again.") from None
    return "utf-16"


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


def write_csv_rows(columns: Sequence[str], batches: Iterable[Iterable[Sequence[object]]],
                   path: str | os.PathLike) -> None:
    """The same file as write_csv (UTF-8 with BOM, CRLF, formula-safe), written batch by batch from
    rows as they come instead of from a DataFrame held whole."""
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        out = csv.writer(f, lineterminator="\r\n")
        out.writerow([csv_safe(c) for c in columns])
        for rows in batches:
            out.writerows([csv_safe(v) for v in row] for row in rows)


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
