"""Text search over the stored examples: the condition "this text contains what the person typed"
(a case-insensitive substring), answered from an index where the database has one.

- SQLite: an FTS5 table with the trigram tokenizer (SQLite >= 3.34), `examples_fts`, an
  external-content index over examples.raw_text and examples.text kept in step by triggers
  (migration 0010). A phrase of 3+ characters is a substring match on it; 1-2 characters have no
  trigram and scan with LIKE, as before.
- PostgreSQL: GIN trigram indexes (pg_trgm, a contrib extension) on the same two columns; the query
  stays ILIKE, answered from them. Where the extension cannot be created, migration 0010 logs that
  and ILIKE scans. The Text search queue (`matching_ids`) keeps the planner on the indexes: for a
  common word its cost model prefers reading the whole table, 3-6 times slower (below).

The index objects live outside the ORM models (virtual tables, triggers, operator-class indexes):
`outside_models` keeps them out of the models-vs-migrations comparison.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import numpy as np
from sqlalchemy import ColumnElement, Select, bindparam, or_, select, table, text
from sqlalchemy.orm import Session

from bertdemo.db import keysets
from bertdemo.db.engine import like_pattern
from bertdemo.db.models import Example

log = logging.getLogger(__name__)

FTS_TABLE = "examples_fts"  # SQLite: the FTS5 table (and its shadow tables examples_fts_*)
TRGM_INDEXES = ("ix_examples_raw_text_trgm", "ix_examples_text_trgm")  # PostgreSQL: GIN (gin_trgm_ops)
TRIGRAM = 3  # the shortest text the trigram indexes find; shorter ones scan
COLUMNS = ("raw_text", "text")  # what a search looks in: as typed, and as cleaned


def contains(s: Session, needle: str, columns: Sequence[str] = COLUMNS) -> ColumnElement[bool]:
    """A condition on Example: one of `columns` contains `needle` (case-insensitive, %, _ and \\
    taken literally). Uses the FTS5 table on SQLite when it exists and `needle` has 3+ characters."""
    if unknown := set(columns) - set(COLUMNS):
        raise ValueError(f"search columns are {COLUMNS}, got {sorted(unknown)}")
    # a NUL cannot be in an FTS5 query (SQLite raises): such a needle scans with LIKE, as before
    if len(needle) >= TRIGRAM and "\x00" not in needle and s.get_bind().dialect.name == "sqlite" and has_fts(s):
        fts = table(FTS_TABLE)
        return Example.id.in_(select(text("rowid")).select_from(fts)
                              .where(text(f"{FTS_TABLE} MATCH :fts_query").bindparams(
                                  fts_query=fts_query(needle, columns))))
    pattern = like_pattern(needle)
    if len(needle) < TRIGRAM:
        # no trigram to look up: `column || ''` keeps PostgreSQL's planner off the trigram index,
        # whose full scan took 1.5 s where reading the table takes 0.3 s (300k rows, bench_search.py)
        return or_(*((getattr(Example, c) + "").ilike(pattern, escape="\\") for c in columns))
    return or_(*(getattr(Example, c).ilike(pattern, escape="\\") for c in columns))


def matching_ids(s: Session, needle: str, dataset: str = "") -> np.ndarray:
    """(N,) ascending ids of the examples (of `dataset`, when given) that contain `needle`: the Text
    search queue, every match. Sorted here, not in SQL: with ORDER BY id PostgreSQL walks the
    primary key and tests every row to spare a sort of the matches."""
    with on_the_indexes(s, needle):
        return keysets.sorted_ids(s, matching(needle, dataset, s))


def matching(needle: str, dataset: str, s: Session) -> Select:
    """The ids of the examples (of `dataset`) that contain `needle`, in no order."""
    q = select(Example.id).where(contains(s, needle))
    return q.where(Example.dataset == dataset) if dataset else q


@contextlib.contextmanager
def on_the_indexes(s: Session, needle: str) -> Iterator[None]:
    """On PostgreSQL with the trigram indexes and a needle they can look up: table and primary-key
    scans off for the queries inside, then as before for the rest of the caller's transaction. For
    a word in 5-40 % of 300k rows the planner chose a scan (0.45-0.55 s; 1.5-2.2 s with the
    re-scoring's background work beside it) where the indexes answer in 30-170 ms, the rows they
    find rechecked (bench/README.md, bench_queues)."""
    if len(needle) < TRIGRAM or s.get_bind().dialect.name != "postgresql" or not has_trigram_indexes(s):
        yield
        return
    before = s.execute(text("SELECT current_setting('enable_seqscan'), current_setting('enable_indexscan')")).one()
    s.execute(text("SELECT set_config('enable_seqscan', 'off', true), set_config('enable_indexscan', 'off', true)"))
    try:
        yield
    finally:
        s.execute(text("SELECT set_config('enable_seqscan', :scan, true), set_config('enable_indexscan', :index, true)"),
                  {"scan": before[0], "index": before[1]})


def has_trigram_indexes(s: Session) -> bool:
    """Whether this PostgreSQL schema has migration 0010's trigram indexes (absent where the
    extension could not be made)."""
    return s.execute(text("SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
                          "AND indexname IN :names").bindparams(
        bindparam("names", expanding=True)), {"names": list(TRGM_INDEXES)}).scalar_one() == len(TRGM_INDEXES)


def fts_query(needle: str, columns: Sequence[str] = COLUMNS) -> str:
    """An FTS5 query for `needle` as one phrase (double quotes doubled): with the trigram tokenizer
    a phrase matches wherever its characters occur in a row, i.e. a substring, whatever it holds."""
    phrase = '"' + needle.replace('"', '""') + '"'
    return phrase if tuple(columns) == COLUMNS else "{" + " ".join(columns) + "} : " + phrase


def has_fts(s: Session) -> bool:
    """Whether this SQLite database has the FTS5 table (0010 skips it where FTS5 is not compiled in)."""
    return s.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"),
                     {"n": FTS_TABLE}).first() is not None


def outside_models(name: str | None, type_: str, _parent: dict) -> bool:
    """Alembic's include_name hook: False for the search index objects that the models do not
    describe (so `migrate check` and the drift test compare only what the models own)."""
    if type_ == "table" and name is not None and (name == FTS_TABLE or name.startswith(FTS_TABLE + "_")):
        return False
    return not (type_ == "index" and name in TRGM_INDEXES)
