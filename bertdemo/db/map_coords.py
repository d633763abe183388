"""The corpus map's queries: each score's place on its version's map (scores.map_x, map_y, 0012),
written in bulk per chunk by the re-scoring's follow-up; read back whole as arrays for a first
draw (ids and coordinates, from the index alone); the candidates of a box or lasso as one range read
of ix_scores_version_map; and the colour of every example (its label's or prediction's class) as arrays.

Rows are read on the DBAPI cursor (keysets.raw_rows) into numpy arrays: at 300k rows SQLAlchemy's
row objects would cost ~0.7 s a read. Labels become class numbers in SQL (a CASE), so no Python
dict of hundreds of thousands of strings is built per draw."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
from sqlalchemy import case, select, text
from sqlalchemy.orm import Session

from bertdemo.db.keysets import raw_rows
from bertdemo.db.models import Example, Score

_PG_SAVE = text("UPDATE scores AS s SET map_x = v.x, map_y = v.y "
                "FROM unnest(CAST(:ids AS integer[]), CAST(:xs AS double precision[]), "
                "CAST(:ys AS double precision[])) AS v(id, x, y) "
                "WHERE s.version_id = :version AND s.example_id = v.id")
_SQLITE_SAVE = "UPDATE scores SET map_x = ?, map_y = ? WHERE version_id = ? AND example_id = ?"


@dataclass(frozen=True, eq=False)  # arrays: no field-wise ==
class Points:
    """Examples with their map coordinates (parallel arrays, in no particular order)."""

    ids: np.ndarray  # (n,) int64
    xy: np.ndarray  # (n, 2) float32


@dataclass(frozen=True, eq=False)
class Codes:
    """A class number per example (parallel arrays, in no particular order)."""

    ids: np.ndarray  # (n,) int64
    codes: np.ndarray  # (n,) int64


def complete(s: Session, version_id: int) -> bool:
    """True when `version_id` has stored scores and every one of them has its map coordinates."""
    base = select(Score.example_id).where(Score.version_id == version_id)
    if s.scalar(base.limit(1)) is None:
        return False
    return s.scalar(base.where(Score.map_x.is_(None)).limit(1)) is None


def save(s: Session, version_id: int, example_ids: Sequence[int] | np.ndarray, xy: np.ndarray) -> None:
    """Store the map coordinates of these examples' scores of `version_id` (rows without a score are
    skipped): one UPDATE from arrays on PostgreSQL, one executemany on SQLite."""
    ids = np.asarray(example_ids, dtype=np.int64)
    xy = np.asarray(xy, dtype=np.float64).reshape(len(ids), 2)
    if not len(ids):
        return
    if s.get_bind().dialect.name == "postgresql":
        s.execute(_PG_SAVE, {"ids": ids.tolist(), "xs": xy[:, 0].tolist(), "ys": xy[:, 1].tolist(),
                             "version": int(version_id)})
        return
    # the driver's executemany with plain tuples: SQLAlchemy's parameter handling doubled the time
    cursor = s.connection().connection.cursor()
    try:
        cursor.executemany(_SQLITE_SAVE, zip(xy[:, 0].tolist(), xy[:, 1].tolist(), repeat(int(version_id)),
                                             ids.tolist()))
    finally:
        cursor.close()


def coordinates(s: Session, version_id: int) -> Points:
    """Every stored example of `version_id`'s map with its coordinates, in the index's order (by
    coordinates, not by id): a read of ix_scores_version_map alone, no row looked up, no sort."""
    q = select(Score.example_id, Score.map_x, Score.map_y).where(Score.version_id == version_id,
                                                                 Score.map_x.is_not(None))
    rows = _array(raw_rows(s, q), [("id", "i8"), ("x", "f8"), ("y", "f8")])
    return Points(rows["id"], np.stack([rows["x"], rows["y"]], axis=1).astype(np.float32))


def in_box(s: Session, version_id: int, x0: float, x1: float, y0: float, y1: float) -> Points:
    """The examples of `version_id`'s map with x0 <= x <= x1 and y0 <= y <= y1 (bounds ordered):
    one range read of ix_scores_version_map."""
    q = select(Score.example_id, Score.map_x, Score.map_y).where(
        Score.version_id == version_id, Score.map_x.between(float(x0), float(x1)),
        Score.map_y.between(float(y0), float(y1)))
    rows = _array(raw_rows(s, q), [("id", "i8"), ("x", "f8"), ("y", "f8")])
    return Points(rows["id"], np.stack([rows["x"], rows["y"]], axis=1).astype(np.float32))


def label_codes(s: Session, labels: Sequence[str]) -> Codes:
    """Every labelled example's label as its index in `labels` (len(labels) for another)."""
    q = select(Example.id, _class_of(Example.label, labels)).where(Example.label.is_not(None))
    rows = _array(raw_rows(s, q), [("id", "i8"), ("c", "i8")])
    return Codes(rows["id"], rows["c"])


def prediction_codes(s: Session, version_id: int, labels: Sequence[str]) -> Codes:
    """Every stored prediction of `version_id` as its index in `labels` (len(labels) for another)."""
    q = select(Score.example_id, _class_of(Score.predicted, labels)).where(Score.version_id == version_id)
    rows = _array(raw_rows(s, q), [("id", "i8"), ("c", "i8")])
    return Codes(rows["id"], rows["c"])


def _class_of(column, labels: Sequence[str]):
    return case({name: k for k, name in enumerate(labels)}, value=column, else_=len(labels))


def _array(rows: list[tuple], dtype: list[tuple[str, str]]) -> np.ndarray:
    return np.fromiter(rows, dtype=np.dtype(dtype), count=len(rows))
