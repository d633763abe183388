"""Accounts and sign-in attempts: the queries behind bertdemo.auth (which holds the password
hashing, the roles and the sign-in limit)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bertdemo.db.models import LoginAttempt, User


def user_named(s: Session, name: str) -> User | None:
    return s.scalar(select(User).where(User.name == name))


def count_users(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(User)) or 0


def list_users(s: Session) -> list[User]:
    return list(s.scalars(select(User).order_by(User.name)))


def add_user(s: Session, name: str, role: str, password_hash: str) -> User:
    user = User(name=name, role=role, password_hash=password_hash)
    s.add(user)
    s.flush()
    return user


def remove_user(s: Session, name: str) -> bool:
    """Delete the account (its labels and history keep its name). True when it existed."""
    return bool(s.execute(delete(User).where(User.name == name)).rowcount)


def role_of(s: Session, name: str) -> str | None:
    return s.scalar(select(User.role).where(User.name == name))


def record_attempt(s: Session, key: str, success: bool, at: datetime, locked_out: bool = False) -> None:
    s.add(LoginAttempt(name=key, success=success, locked_out=locked_out, created_at=at))
    s.flush()


def prune_attempts(s: Session, before: datetime) -> None:
    """Delete attempts older than `before` (the table stays small)."""
    s.execute(delete(LoginAttempt).where(LoginAttempt.created_at < before))


def last_success(s: Session, key: str, at: datetime) -> datetime | None:
    """When `key` last signed in successfully, at or before `at`."""
    la = LoginAttempt
    return s.scalar(select(func.max(la.created_at)).where(la.name == key, la.success.is_(True), la.created_at <= at))


def recent_failures(s: Session, key: str, since: datetime, at: datetime, limit: int) -> list[datetime]:
    """Times of `key`'s failed attempts (not refusals of a locked name) in (since, at], newest
    first, at most `limit`."""
    la = LoginAttempt
    return list(s.scalars(select(la.created_at)
                          .where(la.name == key, la.success.is_(False), la.locked_out.is_(False),
                                 la.created_at > since, la.created_at <= at)
                          .order_by(la.created_at.desc()).limit(limit)))
