"""Comments people leave on examples: add, list per example, all of them for the export."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo.db.models import Comment, now


def add(s: Session, example_id: int, user: str, text: str) -> Comment:
    c = Comment(example_id=example_id, user=user, text=text, created_at=now())
    s.add(c)
    s.flush()
    return c


def of_example(s: Session, example_id: int) -> list[Comment]:
    return list(s.scalars(select(Comment).where(Comment.example_id == example_id).order_by(Comment.id)))


def by_example(s: Session) -> dict[int, list[tuple[str, str]]]:
    """{example id: [(user, text), ...] oldest first} of every commented example."""
    out: dict[int, list[tuple[str, str]]] = {}
    for ex_id, user, text in s.execute(select(Comment.example_id, Comment.user, Comment.text).order_by(Comment.id)):
        out.setdefault(ex_id, []).append((user, text))
    return out
