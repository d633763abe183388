"""Ids in bulk, as int64 arrays: the keyset of a re-scoring pass, the ids a version has scores of,
the ids of a dataset, the score-ranked queues in their order. Code that handles hundreds of
thousands of examples (the re-scoring, the ranked queues) filters these with one numpy test
instead of a lookup per id.

Rows are fetched on the DBAPI cursor (`raw_rows`): SQLAlchemy's result rows cost ~2.5 us each,
0.6 s of the 0.8 s it took to read a 300k-id queue on SQLite; the cursor's tuples take 0.18 s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Select, String, case, cast, func, select
from sqlalchemy.orm import Session

from bertdemo.db.engine import chunks
from bertdemo.db.models import Example, Score


def raw_rows(s: Session, q: Select) -> list[tuple]:
    """`q`'s rows as the driver's plain tuples (no SQLAlchemy row objects), in the session's
    transaction. Only for plain columns: no type conversion happens."""
    compiled = q.compile(dialect=s.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[k] for k in compiled.positiontup] if compiled.positiontup else compiled.params
    cursor = s.connection().connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


def id_array(s: Session, q: Select) -> np.ndarray:
    """The first column of `q`'s rows (ids) as an int64 array, in order."""
    rows = raw_rows(s, q)
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def sorted_ids(s: Session, q: Select) -> np.ndarray:
    """The first column of `q`'s rows (integer ids) as an ascending int64 array, read as ONE row: the
    ids joined into a string by the database (group_concat / string_agg), split in numpy. For reads
    whose order does not matter. Python's sqlite3 gives up and re-takes the GIL at every row it
    steps; beside a thread busy in Python each re-take waits, and 225k ids read row by row took 25-32 s
    instead of 0.08 s (one string: 0.10 s instead of 0.03; /tmp scratch bench, bench/README.md)."""
    sub = q.subquery()
    col = sub.c[0]
    joined = (func.string_agg(cast(col, String), ",") if s.get_bind().dialect.name == "postgresql"
              else func.group_concat(col))
    text = s.execute(select(joined)).scalar()
    if not text:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.fromstring(text, dtype=np.int64, sep=","))


def score_queue(s: Session, queue: str, version_id: int | None, dataset: str = "",
                labels: Sequence[str] = ()) -> np.ndarray:
    """The ids of a score-ranked queue of `version_id`, best first, each read front to back from its
    covering index (models.Score): "uncertain" (highest entropy first), "margin" (breaking ties:
    smallest margin first), "disagree" (labelled examples the version predicts otherwise, most
    confident first; the labels are joined here, one covering read each instead of a lookup per score)."""
    if queue == "disagree":
        return _disagreements(s, version_id, dataset, labels)
    order = {"uncertain": (Score.entropy.desc(), Score.example_id), "margin": (Score.margin, Score.example_id)}
    q = select(Score.example_id).where(Score.version_id == version_id).order_by(*order[queue])
    if dataset:
        q = q.join(Example, Example.id == Score.example_id).where(Example.dataset == dataset)
    return id_array(s, q)


@dataclass(frozen=True, eq=False)
class LabelledIds:
    """Every labelled example as two parallel arrays: `ids` ascending, and `classes`, each one's
    label as its index among the app's labels (-1: a label not among them)."""

    ids: np.ndarray  # (N,) int64, ascending
    classes: np.ndarray  # (N,) int64


def labelled(s: Session, labels: Sequence[str], dataset: str = "") -> LabelledIds:
    """The labelled examples (of `dataset`, when given) as arrays: the ids of each label, one read of
    the label index each (no text column, no label string sent per row; a dict from 150k ORM rows
    took ~1 s at 300k examples), then sorted by id."""
    q = select(Example.id).where(Example.dataset == dataset) if dataset else select(Example.id)
    parts = [sorted_ids(s, q.where(Example.label == lab)) for lab in labels]
    parts.append(sorted_ids(s, q.where(Example.label.is_not(None), Example.label.not_in(list(labels)))))
    ids = np.concatenate(parts)
    classes = np.repeat(np.r_[np.arange(len(labels)), -1].astype(np.int64), [len(p) for p in parts])
    order = np.argsort(ids, kind="stable")
    return LabelledIds(ids[order], classes[order])


def _disagreements(s: Session, version_id: int | None, dataset: str, labels: Sequence[str] = ()) -> np.ndarray:
    """score_queue's "disagree": the version's (id, prediction) in its order, each prediction as its
    label's index (in SQL when the app's `labels` are given, else coded as they come), compared with
    the labels' codes in one array test (a dict lookup and a string comparison per score took ~0.5 s
    at 300k)."""
    order = (Score.confidence.desc(), Score.example_id)
    if labels:
        coded = case({lab: k for k, lab in enumerate(labels)}, value=Score.predicted, else_=len(labels))
        rows = raw_rows(s, select(Score.example_id, coded).where(Score.version_id == version_id).order_by(*order))
        pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
        ids, predicted, names = pairs[:, 0], pairs[:, 1], list(labels)
    else:
        rows = raw_rows(s, select(Score.example_id, Score.predicted).where(Score.version_id == version_id)
                        .order_by(*order))
        code: dict[str, int] = {}  # each prediction's code, in the order they first come
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        predicted = np.fromiter((code.setdefault(r[1], len(code)) for r in rows), dtype=np.int64, count=len(rows))
        names = list(code)
    lab = labelled(s, names, dataset)  # a label no score predicts is -1: it disagrees with every one
    if not len(ids) or not len(lab.ids):
        return np.zeros(0, dtype=np.int64)
    at = np.minimum(np.searchsorted(lab.ids, ids), len(lab.ids) - 1)
    return ids[(lab.ids[at] == ids) & (lab.classes[at] != predicted)]


@dataclass(frozen=True)
class WeightInputs:
    """What a labelled example's loss weight depends on (training/weights.py), per id of a request:
    its dataset, and the crowd's confidence in its label while that is still the imported one
    (version 1) and the import gave one (examples.label_confidences), else None."""

    datasets: list[str | None]
    confidences: list[float | None]


def weight_inputs(s: Session, ids: Sequence[int]) -> WeightInputs:
    """WeightInputs of `ids` (labelled examples): one read of every labelled row's dataset and
    confidence, the JSON taken apart in SQL (50k ORM rows with their JSON parsed in Python took
    ~2.4 s, the quick model's refit beside the first queue calls), then picked by id."""
    # the field as JSON text or number, converted here as examples.label_confidences does (raw_rows
    # sends parameters as they are: no JSON-path formatting, so each backend's own operator)
    field = (func.json_extract(Example.meta, "$.label_confidence") if s.get_bind().dialect.name == "sqlite"
             else Example.meta.op("->>")("label_confidence"))
    confidence = case((Example.version == 1, field), else_=None)
    rows = raw_rows(s, select(Example.id, Example.dataset, confidence).where(Example.label.is_not(None)))
    wanted = set(ids)
    found = {i: (d, None if c is None else float(c)) for i, d, c in rows if i in wanted}
    return WeightInputs([found.get(i, (None, None))[0] for i in ids], [found.get(i, (None, None))[1] for i in ids])


def ids_of_dataset(s: Session, dataset: str) -> np.ndarray:
    """(N,) sorted int64 ids of the examples of `dataset`: one indexed read, for filtering a ranking
    of hundreds of thousands of ids with one array test instead of a lookup per id."""
    return sorted_ids(s, select(Example.id).where(Example.dataset == dataset))


def example_ids(s: Session) -> np.ndarray:
    """(N,) int64 ids of every example, ascending: the keyset of a re-scoring pass."""
    return sorted_ids(s, select(Example.id))


def texts_by_id(s: Session, example_ids: Sequence[int]) -> dict[int, str]:
    """{example id: cleaned text} of `example_ids` (a re-scoring chunk)."""
    q = select(Example.id, Example.text)
    return {i: t for chunk in chunks(list(example_ids)) for i, t in s.execute(q.where(Example.id.in_(chunk)))}


def scored_ids(s: Session, version_id: int) -> np.ndarray:
    """(N,) int64 ids of the examples `version_id` has a stored score of (what a resumed re-scoring skips)."""
    return sorted_ids(s, select(Score.example_id).where(Score.version_id == version_id))
