"""Ids in bulk, as int64 arrays: the keyset of a re-scoring pass, the ids a version has scores of,
the ids of a dataset. Code that handles hundreds of thousands of examples (the re-scoring, the
ranked queues) filters these with one numpy test instead of a lookup per id."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo.db.examples import rows_where_in
from bertdemo.db.models import Example, Score


def ids_of_dataset(s: Session, dataset: str) -> np.ndarray:
    """(N,) sorted int64 ids of the examples of `dataset`: one indexed read, for filtering a ranking
    of hundreds of thousands of ids with one array test instead of a lookup per id."""
    ids = s.scalars(select(Example.id).where(Example.dataset == dataset).order_by(Example.id))
    return np.fromiter(ids, dtype=np.int64)


def example_ids(s: Session) -> np.ndarray:
    """(N,) int64 ids of every example, ascending: the keyset of a re-scoring pass."""
    return np.fromiter(s.scalars(select(Example.id).order_by(Example.id)), dtype=np.int64)


def texts_by_id(s: Session, example_ids: Sequence[int]) -> dict[int, str]:
    """{example id: cleaned text} of `example_ids` (a re-scoring chunk)."""
    return {i: t for i, t in rows_where_in(s, select(Example.id, Example.text), Example.id, example_ids)}


def scored_ids(s: Session, version_id: int) -> np.ndarray:
    """(N,) int64 ids of the examples `version_id` has a stored score of (what a resumed re-scoring skips)."""
    return np.fromiter(s.scalars(select(Score.example_id).where(Score.version_id == version_id)), dtype=np.int64)
