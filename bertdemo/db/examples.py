"""Examples and their labels: import, set a label (one history row per change, optimistic
concurrency), counts, history, the annotation queues over stored scores, search (a CSV's bulk
import and the export stream: db/bulk_io.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Row, Select, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from bertdemo.db import keysets
from bertdemo.db import search as text_search
from bertdemo.db.engine import chunks, like_pattern
from bertdemo.db.models import LABEL_SOURCES, Example, LabelEvent, Score, now, text_key
from bertdemo.errors import BadInput, Conflict, NotFound


def rows_where_in(s: Session, q: Select, column: ColumnElement, values: Sequence) -> list[Row]:
    """The rows of `q` whose `column` is one of `values`, in bounded IN lists (db.engine.chunks)."""
    return [r for chunk in chunks(list(values)) for r in s.execute(q.where(column.in_(chunk)))]


# --------------------------------------------------------------------------- examples & labels
@dataclass(frozen=True)
class NewExample:
    text: str  # cleaned
    raw_text: str
    label: str | None = None
    external_id: str | None = None
    meta: dict | None = None
    dataset: str | None = None  # None: the `source` of the import ("import" for a CSV someone imported)


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int  # already stored, or repeated in the batch (same cleaned text)


def import_examples(s: Session, rows: Iterable[NewExample], source: str, user: str,
                    labels: Sequence[str]) -> ImportResult:
    """Add new examples (with a dataset/import LabelEvent where labelled); skip duplicates."""
    if source not in LABEL_SOURCES:
        raise BadInput(f"source must be one of {LABEL_SOURCES}, got {source!r}")
    rows = list(rows)
    keys = [text_key(r.text) for r in rows]
    existing = stored_keys(s, keys)
    added = 0
    stamp = now()
    for row, key in zip(rows, keys):
        if key in existing:
            continue
        if row.label is not None and row.label not in labels:
            raise BadInput(f"unknown label {row.label!r}; expected one of {list(labels)}")
        existing.add(key)
        ex = Example(text=row.text, raw_text=row.raw_text, text_key=key, external_id=row.external_id,
                     source=source, dataset=row.dataset or (source if source == "import" else None),
                     meta=row.meta or {}, created_at=stamp)
        if row.label is not None:
            ex.label, ex.version, ex.updated_at, ex.updated_by = row.label, 1, stamp, user
            ex.events.append(LabelEvent(label=row.label, previous_label=None, user=user, source=source,
                                        created_at=stamp, version=1))
        s.add(ex)
        added += 1
    s.flush()
    return ImportResult(added=added, duplicates=len(rows) - added)


def set_label(s: Session, example_id: int, label: str | None, user: str, source: str,
              labels: Sequence[str], expected_version: int | None = None, batch: str | None = None) -> LabelEvent:
    """Change one example's label as one new history row. With `expected_version`, refuse
    (Conflict) if someone else changed the row since the caller read it. `batch`: the bulk change
    this row belongs to."""
    if label is not None and label not in labels:
        raise BadInput(f"Unknown label {label!r}; choose one of {list(labels)}.")
    if source not in LABEL_SOURCES:
        raise BadInput(f"source must be one of {LABEL_SOURCES}, got {source!r}")
    ex = get(s, example_id)
    if expected_version is not None and ex.version != expected_version:
        raise Conflict(
            f"example {example_id} was changed by {ex.updated_by or 'someone'} "
            f"(now {ex.label!r}) after you loaded it; reload it and decide again")
    stamp = now()
    # compare-and-set in SQL, so two sessions racing past the check above cannot both win
    res = s.execute(update(Example).where(Example.id == example_id, Example.version == ex.version)
                    .values(label=label, version=ex.version + 1, updated_at=stamp, updated_by=user)
                    .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise Conflict(f"example {example_id} was changed by someone else while saving; reload it")
    ev = LabelEvent(example_id=example_id, label=label, previous_label=ex.label, user=user,
                    source=source, created_at=stamp, version=ex.version + 1, batch=batch)
    s.add(ev)
    s.flush()
    s.refresh(ex)
    return ev


def lock(s: Session, example_ids: Sequence[int]) -> None:
    """Keep the examples from changing until the caller's transaction ends: PostgreSQL locks their
    rows (SELECT ... FOR UPDATE); SQLite takes the database's write lock now (a write that changes
    nothing), so what the transaction reads next is what it writes over."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(update(Example).where(Example.id == -1).values(version=Example.version)
                  .execution_options(synchronize_session=False))
        return
    for chunk in chunks(list(example_ids)):
        s.execute(select(Example.id).where(Example.id.in_(chunk)).with_for_update())


def set_labels(s: Session, changes: Sequence[tuple[int, str | None, int, str | None]], user: str, source: str,
               labels: Sequence[str], batch: str) -> int:
    """Many label changes at once, each its own history row, all of one batch: `changes` rows are
    (example id, its current label, its current version, the new label), read after lock() in the
    same transaction. Two statements (an UPDATE and an INSERT, each executed for all rows) instead
    of three per row."""
    if source not in LABEL_SOURCES:
        raise BadInput(f"source must be one of {LABEL_SOURCES}, got {source!r}")
    bad = {new for _i, _old, _v, new in changes if new is not None and new not in labels}
    if bad:
        raise BadInput(f"Unknown label {min(bad)!r}; choose one of {list(labels)}.")
    if not changes:
        return 0
    stamp, table = now(), Example.__table__
    s.execute(table.update().where(table.c.id == bindparam("row_id"))
              .values(label=bindparam("new_label"), version=bindparam("new_version"), updated_at=stamp,
                      updated_by=user),
              [{"row_id": i, "new_label": new, "new_version": v + 1} for i, _old, v, new in changes])
    s.execute(insert(LabelEvent.__table__),
              [{"example_id": i, "label": new, "previous_label": old, "user": user, "source": source,
                "created_at": stamp, "version": v + 1, "batch": batch} for i, old, v, new in changes])
    return len(changes)


def count_examples(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(Example)) or 0


def label_counts(s: Session) -> dict[str | None, int]:
    return dict(s.execute(select(Example.label, func.count()).group_by(Example.label)).all())


def labeled_examples(s: Session) -> list[tuple[int, str, str]]:
    """(id, cleaned text, current label) of every labelled example, by id."""
    rows = s.execute(select(Example.id, Example.text, Example.label)
                     .where(Example.label.is_not(None)).order_by(Example.id))
    return [tuple(r) for r in rows]  # type: ignore[misc]


def history(s: Session, example_id: int) -> list[LabelEvent]:
    return list(s.scalars(select(LabelEvent).where(LabelEvent.example_id == example_id).order_by(LabelEvent.id)))


# --------------------------------------------------------------------------- annotation queries
# Read-only queries behind the Annotate tab's queues, table, history and agreement. Each returns
# plain rows; bertdemo.actions.annotate turns them into what the UI shows.
def scored_examples(s: Session, version_id: int | None, labelled_only: bool = False
                    ) -> list[tuple[int, str, str | None, list]]:
    """(id, cleaned text, current label, stored probs of `version_id` or []) for every example (only
    the labelled ones when `labelled_only`: the suspicious-labels ranking reads no unlabelled text)."""
    q = (select(Example.id, Example.text, Example.label, Score.probs)
         .outerjoin(Score, (Score.example_id == Example.id) & (Score.version_id == version_id))
         .order_by(Example.id))
    if labelled_only:
        q = q.where(Example.label.is_not(None))
    return [(i, t, lab, p or []) for i, t, lab, p in s.execute(q)]


def queue_ids(s: Session, queue: str, version_id: int | None, search: str = "", limit: int | None = None,
              dataset: str = "") -> list[int]:
    """Example ids of one queue, best first (of one dataset, when given), all of them unless `limit`.
    Score-based queues read the stored `scores` rows of `version_id` (written by JobRunner.rescore)
    in their order from the indexes that lead with the version (models.Score), never the model."""
    if queue in ("uncertain", "margin", "disagree"):  # one covering index each (db/keysets.py)
        ids = keysets.score_queue(s, queue, version_id, dataset)
        return (ids[:limit] if limit is not None else ids).tolist()
    if queue == "unlabeled":
        q = select(Example.id).where(Example.label.is_(None)).order_by(Example.id)
    elif queue == "recent":
        newest = func.max(LabelEvent.id)
        q = (select(LabelEvent.example_id).where(LabelEvent.source != "dataset")
             .group_by(LabelEvent.example_id).order_by(newest.desc()))
    elif queue == "search":  # every match, from the search index where there is one (db/search.py)
        needle = search.strip()
        return text_search.matching_ids(s, needle, dataset)[:limit].tolist() if needle else []
    else:
        raise BadInput(f"unknown queue {queue!r}")
    if dataset:
        q = q.where(Example.dataset == dataset) if queue != "recent" else (
            q.join(Example, Example.id == LabelEvent.example_id).where(Example.dataset == dataset))
    return keysets.id_array(s, q.limit(limit) if limit is not None else q).tolist()


def score_count(s: Session) -> int:
    """How many scores are stored, of every version: the watermark of the ranked queues (a
    version's score of an example never changes, so only a re-scoring adding rows moves a
    ranking). Counting the whole table is ~30 x cheaper on SQLite than one version's rows (no
    index leads with the version), and a count that moves for another version only costs one
    re-ranking."""
    return s.scalar(select(func.count()).select_from(Score)) or 0


def dataset_names(s: Session) -> list[str]:
    """The datasets stored examples came from, by name."""
    return sorted(d for d in s.scalars(select(Example.dataset).distinct()) if d)


def datasets_of(s: Session, example_ids: Sequence[int]) -> dict[int, str | None]:
    """{example id: its dataset}."""
    return {i: d for i, d in rows_where_in(s, select(Example.id, Example.dataset), Example.id, example_ids)}


def label_confidences(s: Session, example_ids: Sequence[int]) -> dict[int, float]:
    """{example id: the crowd's confidence in its label} for those of `example_ids` whose label is
    still the one they were imported with (version 1) and whose import gave a `label_confidence`;
    a label a person set or confirmed has no such figure."""
    q = select(Example.id, Example.version, Example.meta)
    return {i: float(meta["label_confidence"]) for i, version, meta in rows_where_in(s, q, Example.id, example_ids)
            if version == 1 and isinstance(meta, dict) and meta.get("label_confidence") is not None}


def has_dataset(s: Session, dataset: str) -> bool:
    return s.scalar(select(Example.id).where(Example.dataset == dataset).limit(1)) is not None


def predictions(s: Session, version_id: int | None, example_ids: Sequence[int] | None = None) -> dict[int, str]:
    """{example id: the stored prediction of `version_id`} (of `example_ids`, when given)."""
    if version_id is None:
        return {}
    q = select(Score.example_id, Score.predicted).where(Score.version_id == version_id)
    rows = s.execute(q).all() if example_ids is None else rows_where_in(s, q, Score.example_id, example_ids)
    return {i: p for i, p in rows}


def score_of(s: Session, example_id: int, version_id: int | None) -> Score | None:
    if version_id is None:
        return None
    return s.get(Score, (example_id, version_id))


def change_counts(s: Session, example_ids: Sequence[int] | None = None) -> dict[int, int]:
    """Number of history rows per example."""
    q = select(LabelEvent.example_id, func.count()).group_by(LabelEvent.example_id)
    if example_ids is None:
        return dict(s.execute(q).all())  # type: ignore[arg-type]
    return {i: n for i, n in rows_where_in(s, q, LabelEvent.example_id, example_ids)}


HUMAN_SOURCES = ("annotator", "undo", "import", "suggestion", "adjudication", "bulk")


def human_events(s: Session, example_ids: Sequence[int] | None = None
                 ) -> list[tuple[int, int, str, str | None, str, datetime]]:
    """(event id, example id, user, label, source, when) of every change made by a person (of the
    given examples, when given), oldest first."""
    q = (select(LabelEvent.id, LabelEvent.example_id, LabelEvent.user, LabelEvent.label, LabelEvent.source,
                LabelEvent.created_at).where(LabelEvent.source.in_(HUMAN_SOURCES)))
    if example_ids is None:
        return [tuple(r) for r in s.execute(q.order_by(LabelEvent.id))]  # type: ignore[misc]
    return sorted(tuple(r) for r in rows_where_in(s, q, LabelEvent.example_id, example_ids))  # type: ignore[misc]


def examples_changed_since(s: Session, event_id: int) -> int:
    """How many distinct examples people changed after history row `event_id` (one example
    relabelled back and forth ten times counts once)."""
    q = select(func.count(func.distinct(LabelEvent.example_id))).where(LabelEvent.id > event_id,
                                                                       LabelEvent.source.in_(HUMAN_SOURCES))
    return s.scalar(q) or 0


def states(s: Session, example_ids: Sequence[int]) -> dict[int, tuple[int, str | None]]:
    """{example id: (version, current label)} of those of `example_ids` that exist."""
    q = select(Example.id, Example.version, Example.label)
    return {i: (v, lab) for i, v, lab in rows_where_in(s, q, Example.id, example_ids)}


def batch_events(s: Session, batch: str) -> list[LabelEvent]:
    """The history rows of one bulk change, by id."""
    return list(s.scalars(select(LabelEvent).where(LabelEvent.batch == batch).order_by(LabelEvent.id)))


def latest_event_ids(s: Session, example_ids: Sequence[int]) -> dict[int, int]:
    """{example id: id of its newest history row}."""
    q = select(LabelEvent.example_id, func.max(LabelEvent.id)).group_by(LabelEvent.example_id)
    return {i: newest for i, newest in rows_where_in(s, q, LabelEvent.example_id, example_ids)}


def texts_of(s: Session, example_ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
    """{example id: (raw text, current label)}."""
    q = select(Example.id, Example.raw_text, Example.label)
    return {i: (t, lab) for i, t, lab in rows_where_in(s, q, Example.id, example_ids)}


def latest_event(s: Session, example_id: int) -> LabelEvent | None:
    return s.scalar(select(LabelEvent).where(LabelEvent.example_id == example_id)
                    .order_by(LabelEvent.id.desc()).limit(1))


def containing_word(session: Session, word: str, limit: int) -> tuple[list[tuple[int, str, str | None]], int]:
    """(up to `limit` stored examples whose text contains `word`, how many contain it in all)."""
    cond = Example.text.ilike(like_pattern(word), escape="\\")
    total = session.scalar(select(func.count()).select_from(Example).where(cond)) or 0
    rows = session.execute(select(Example.id, Example.text, Example.label)
                           .where(cond).order_by(Example.id).limit(limit)).all()
    return [tuple(r) for r in rows], int(total)


def get(s: Session, example_id: int) -> Example:
    """The example, or NotFound."""
    ex = s.get(Example, example_id)
    if ex is None:
        raise NotFound(f"No example with id {example_id}.")
    return ex


def stored_keys(s: Session, keys: Sequence[str]) -> set[str]:
    """The duplicate keys (text_key) among `keys` that an example already has."""
    return {k for (k,) in rows_where_in(s, select(Example.text_key), Example.text_key, keys)}


def has_unlabeled(s: Session) -> bool:
    return s.scalar(select(Example.id).where(Example.label.is_(None)).limit(1)) is not None


def has_examples(s: Session, source: str | None = None) -> bool:
    """True when any example is stored (of `source`, when given)."""
    q = select(Example.id)
    if source is not None:
        q = q.where(Example.source == source)
    return s.scalar(q.limit(1)) is not None


def all_texts(s: Session) -> list[tuple[int, str]]:
    """(id, cleaned text) of every example (small corpora: the re-scoring reads keysets.example_ids in chunks)."""
    return [tuple(r) for r in s.execute(select(Example.id, Example.text))]  # type: ignore[misc]


def current_labels(s: Session, dataset: str = "") -> dict[int, str]:
    """{example id: its label} of every labelled example (of `dataset` when given)."""
    q = select(Example.id, Example.label).where(Example.label.is_not(None))
    return dict(s.execute(q.where(Example.dataset == dataset) if dataset else q).all())  # type: ignore[arg-type]


def newest_event_id(s: Session) -> int:
    return s.scalar(select(func.max(LabelEvent.id))) or 0


def changed_since(s: Session, event_id: int) -> set[int]:
    """Ids of the examples with a history row newer than `event_id`."""
    return set(s.scalars(select(LabelEvent.example_id).where(LabelEvent.id > event_id)))


def table_rows(s: Session, version_id: int | None, label: str | None = None, unlabeled: bool = False,
               annotator: str = "", search: str = "", limit: int = 500, dataset: str = "") -> list[tuple]:
    """(id, raw text, label, updated_by, updated_at, version, predicted, confidence) of the
    examples that match, newest change first; the prediction is `version_id`'s stored score."""
    q = (select(Example.id, Example.raw_text, Example.label, Example.updated_by, Example.updated_at,
                Example.version, Score.predicted, Score.confidence)
         .outerjoin(Score, (Score.example_id == Example.id) & (Score.version_id == version_id)))
    if unlabeled:
        q = q.where(Example.label.is_(None))
    elif label:
        q = q.where(Example.label == label)
    if annotator:
        q = q.where(Example.updated_by == annotator)
    if search:
        q = q.where(text_search.contains(s, search, columns=("raw_text",)))
    if dataset:
        q = q.where(Example.dataset == dataset)
    return [tuple(r) for r in s.execute(q.order_by(Example.updated_at.desc().nulls_last(), Example.id).limit(limit))]


PERSON_SOURCES = ("annotator", "undo", "suggestion", "adjudication", "bulk")  # a label a person set here


def review_rows(s: Session, texts: Sequence[str]) -> dict[str, tuple[int, str, str | None, bool]]:
    """By cleaned text: (example id, raw text, dataset, whether a person changed its label here) of
    the examples holding `texts` (a version's validation split, saved as cleaned texts)."""
    q = select(Example.text, Example.id, Example.raw_text, Example.dataset)
    rows = {t: (i, raw, ds) for t, i, raw, ds in rows_where_in(s, q, Example.text, list(texts))}
    ids = [i for i, _raw, _ds in rows.values()]
    changed = {i for (i,) in rows_where_in(s, select(LabelEvent.example_id).where(
        LabelEvent.source.in_(PERSON_SOURCES)), LabelEvent.example_id, ids)}
    return {t: (i, raw, ds, i in changed) for t, (i, raw, ds) in rows.items()}
