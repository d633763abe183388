"""The engine for a database URL (SQLite gets WAL, foreign keys and a busy timeout), the schema
migrated at start, and the two helpers every query module uses: bounded IN lists and LIKE
patterns."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine

from bertdemo.db import migrate

T = TypeVar("T")

# bound parameters in one IN list: SQLite caps a statement's parameters (999 on older builds),
# PostgreSQL at 65,535
IN_CHUNK = 500


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    if (file := sqlite_path(url)) is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False} if is_sqlite else {})
    if is_sqlite:
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


def init_db(engine: Engine) -> None:
    """Migrate the database to the newest schema (bertdemo.db.migrate.upgrade): creates it when
    empty, adopts one made before migrations existed, does nothing when it is current."""
    migrate.upgrade(engine)


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """`values` in slices of at most `size`: for `column.in_(chunk)` with a bounded IN list."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def like_pattern(needle: str) -> str:
    """A LIKE pattern that finds `needle` anywhere, its %, _ and \\ taken literally; use it with
    `escape="\\"`."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database (or an in-memory one)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def sqlite_backup(url: str, dest: Path) -> None:
    """A consistent copy of a live SQLite database in one self-contained file, with SQLite's online
    backup API: writers go on while it copies (WAL), and the copy is one point in time."""
    source = sqlite_path(url)
    if source is None:
        raise ValueError(f"not a SQLite file URL: {url!r}")
    if not source.is_file():  # sqlite3.connect would create an empty database there
        raise FileNotFoundError(f"no SQLite database at {source}")
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)  # all pages in one step: a snapshot, not pages from different moments
        dst.execute("PRAGMA journal_mode=DELETE")  # no -wal file beside the copy: one file holds it all
    finally:
        dst.close()
        src.close()


def _read_only_uri(path: Path) -> str:
    """A read-only SQLite URI for `path`, with ?, # and % in it escaped (Path.as_uri)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def read_only_engine(path: Path) -> Engine:
    """An engine that only reads a SQLite file and leaves it as it is (make_engine would switch it to
    WAL, which adds -wal and -shm files beside a backup's copy)."""
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(_read_only_uri(path), uri=True))


def sqlite_integrity(path: Path) -> str:
    """SQLite's integrity check of a database file: "ok", or what is wrong."""
    con = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        return "; ".join(r[0] for r in con.execute("PRAGMA integrity_check").fetchall())
    finally:
        con.close()
