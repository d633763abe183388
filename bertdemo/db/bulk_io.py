"""Bulk import and export of examples: a CSV's rows staged in a temporary table (PostgreSQL COPY,
else batched INSERTs), classified there (repeated in the file, already stored) and added with
one INSERT ... SELECT; every example read back in batches (yield_per) for the export. Memory stays
bounded by one chunk whatever the file or table size."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from bertdemo.db.models import Example, LabelEvent

USE_COPY = True  # PostgreSQL + psycopg 3: stage with COPY (bench/README.md: import figures)
EXPORT_BATCH = 5_000  # rows per batch the export reads
REPEATED = "duplicate: repeated in this file"
STORED = "duplicate: already in the dataset"

_meta = MetaData()
# one per connection (TEMPORARY): concurrent imports on other connections do not see each other's
STAGE = Table(
    "import_stage", _meta,
    Column("n", Integer, primary_key=True),  # the row number in the file (1 = first after the header)
    Column("raw_text", Text, nullable=False),
    Column("text", Text),  # cleaned; NULL when the row is skipped for its text
    Column("text_key", String(40)),
    Column("label", String(32)),
    Column("kind", String(16)),  # why it is skipped: 'bad text', 'unknown label', 'duplicate'; NULL: added
    Column("reason", Text),
    prefixes=["TEMPORARY"], postgresql_on_commit="DROP",
)
Index("ix_import_stage_key", STAGE.c.text_key)
STAGE_COLUMNS = ("n", "raw_text", "text", "text_key", "label", "kind", "reason")


@dataclass(frozen=True)
class StagedRow:
    n: int
    raw_text: str
    text: str | None = None
    text_key: str | None = None
    label: str | None = None
    kind: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class StageCounts:
    add: int
    skipped: dict[str, int]  # kind -> rows, most first


def create_stage(s: Session) -> None:
    """A new, empty staging table on the session's connection (one left by an earlier import on
    this pooled SQLite connection is dropped first)."""
    drop_stage(s)
    STAGE.create(s.connection())


def drop_stage(s: Session) -> None:
    STAGE.drop(s.connection(), checkfirst=True)


def stage(s: Session, rows: Sequence[StagedRow]) -> None:
    """Append rows to the staging table: COPY on PostgreSQL with psycopg 3, else one executemany."""
    if not rows:
        return
    conn = s.connection()
    if USE_COPY and conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY import_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row((r.n, r.raw_text, r.text, r.text_key, r.label, r.kind, r.reason))
        return
    conn.execute(insert(STAGE), [{c: getattr(r, c) for c in STAGE_COLUMNS} for r in rows])


def classify_stage(s: Session) -> StageCounts:
    """Mark the staged rows that repeat an earlier row of the file, then those already stored, and
    count what would be added and skipped."""
    first = select(func.min(STAGE.c.n)).where(STAGE.c.kind.is_(None)).group_by(STAGE.c.text_key)
    s.execute(update(STAGE).where(STAGE.c.kind.is_(None), STAGE.c.n.not_in(first))
              .values(kind="duplicate", reason=REPEATED))
    stored = select(Example.text_key).where(Example.text_key == STAGE.c.text_key).exists()
    s.execute(update(STAGE).where(STAGE.c.kind.is_(None), stored).values(kind="duplicate", reason=STORED))
    counts = dict(s.execute(select(STAGE.c.kind, func.count()).group_by(STAGE.c.kind)).all())
    add = counts.pop(None, 0)
    return StageCounts(add=add, skipped=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))


def staged_rows(s: Session, added: bool, limit: int) -> list[tuple]:
    """The first `limit` staged rows to add, (n, raw text, cleaned, label), or to skip, (n, raw text,
    reason), by row number."""
    if added:
        q = select(STAGE.c.n, STAGE.c.raw_text, STAGE.c.text, STAGE.c.label).where(STAGE.c.kind.is_(None))
    else:
        q = select(STAGE.c.n, STAGE.c.raw_text, STAGE.c.reason).where(STAGE.c.kind.is_not(None))
    return [tuple(r) for r in s.execute(q.order_by(STAGE.c.n).limit(limit))]


def _insert(s: Session, table: Table) -> Insert:
    """INSERT that skips rows whose unique key is taken (another import raced us) where the
    backend has it."""
    name = s.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)


def write_ranges(s: Session, size: int) -> list[tuple[int, int]]:
    """(first, last) row numbers of consecutive runs of `size` staged rows to add: the chunks an
    import writes one transaction each."""
    ns = [n for (n,) in s.execute(select(STAGE.c.n).where(STAGE.c.kind.is_(None)).order_by(STAGE.c.n))]
    return [(ns[a], ns[min(a + size, len(ns)) - 1]) for a in range(0, len(ns), size)]


def add_staged(s: Session, source: str, user: str, stamp: datetime, rows: tuple[int, int] | None = None) -> int:
    """Add the staged rows to keep as examples (with a history row each where labelled), in file
    order, in the caller's transaction (of file rows `rows`, first to last, when given); returns how
    many were added."""
    E, st = Example.__table__, STAGE
    labelled = st.c.label.is_not(None)
    keep = st.c.kind.is_(None) if rows is None else st.c.kind.is_(None) & st.c.n.between(*rows)
    when = literal(stamp, DateTime)
    dataset = literal(source if source == "import" else None, String)  # as examples.import_examples
    rows = (select(st.c.text, st.c.raw_text, st.c.text_key, literal(source), dataset,
                   bindparam("meta", {}, type_=JSON), when, st.c.label, case((labelled, 1), else_=0),
                   case((labelled, when), else_=null()), case((labelled, literal(user)), else_=null()))
            .where(keep).order_by(st.c.n))
    cols = ["text", "raw_text", "text_key", "source", "dataset", "meta", "created_at", "label", "version",
            "updated_at", "updated_by"]
    added = s.execute(_insert(s, E).from_select(cols, rows), execution_options={"preserve_rowcount": True}).rowcount
    events = (select(E.c.id, st.c.label, literal(user), literal(source), when, literal(1))
              .select_from(st.join(E, E.c.text_key == st.c.text_key))
              .where(keep, labelled, E.c.created_at == when, E.c.source == source)
              .order_by(E.c.id))
    s.execute(insert(LabelEvent.__table__).from_select(
        ["example_id", "label", "user", "source", "created_at", "version"], events))
    return added


def export_batches(s: Session, batch: int | None = None) -> Iterator[Sequence[tuple]]:
    """(id, external id, raw text, cleaned text, label, updated_by, updated_at, history rows, source,
    dataset) of every example, by id, `batch` rows at a time (a server-side cursor on PostgreSQL)."""
    E = Example
    changes = (select(LabelEvent.example_id, func.count().label("n"))
               .group_by(LabelEvent.example_id).subquery())
    q = (select(E.id, E.external_id, E.raw_text, E.text, E.label, E.updated_by, E.updated_at,
                func.coalesce(changes.c.n, 0), E.source, E.dataset)
         .outerjoin(changes, changes.c.example_id == E.id).order_by(E.id))
    for part in s.execute(q, execution_options={"yield_per": batch or EXPORT_BATCH}).partitions():
        yield [tuple(r) for r in part]
