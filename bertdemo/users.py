"""Accounts: users with roles, scrypt password hashes, role checks.

With no users in the database the app runs in single-user local mode: everyone is the local
admin. `python -m bertdemo.users add NAME --role admin` creates a user (the password is asked
for, or read from BERTDEMO_PASSWORD for scripts).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo import store

LOCAL_USER = "local"  # the user of single-user mode (no accounts configured)
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~16 MiB, ~50 ms per check


class AuthError(PermissionError):
    """Not signed in, or the role does not allow the action; the message is for the user."""


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("passwords must have at least 8 characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if kind != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                         dklen=len(digest) // 2)
    return hmac.compare_digest(got.hex(), digest)


def add_user(engine: Engine, name: str, password: str, role: str = "annotator") -> store.User:
    name = name.strip()
    if not name or len(name) > 64 or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ValueError(f"user names are 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    if role not in store.ROLES:
        raise ValueError(f"role must be one of {store.ROLES}, got {role!r}")
    with Session(engine) as s, s.begin():
        if s.scalar(select(store.User).where(store.User.name == name)):
            raise ValueError(f"user {name!r} exists already")
        user = store.User(name=name, role=role, password_hash=hash_password(password))
        s.add(user)
    return user


def has_users(engine: Engine) -> bool:
    with Session(engine) as s:
        return bool(s.scalar(select(func.count()).select_from(store.User)))


def authenticate(engine: Engine, name: str, password: str) -> bool:
    """For Gradio's `auth=`: True when the name and password match."""
    with Session(engine) as s:
        user = s.scalar(select(store.User).where(store.User.name == name))
        if user is None:
            verify_password(password, hash_password("x" * 8))  # same cost either way: no user probing
            return False
        return verify_password(password, user.password_hash)


def role_of(engine: Engine, name: str | None) -> str | None:
    """The role of a signed-in user; in single-user mode (no accounts) everyone is admin."""
    if not has_users(engine):
        return "admin"
    if not name:
        return None
    with Session(engine) as s:
        return s.scalar(select(store.User.role).where(store.User.name == name))


def current_user(engine: Engine, name: str | None) -> str:
    """The name to record on a change: the signed-in user, or LOCAL_USER in single-user mode."""
    if not has_users(engine):
        return name or LOCAL_USER
    if not name:
        raise AuthError("Sign in first.")
    return name


def require_role(engine: Engine, name: str | None, role: str) -> str:
    """Return the acting user's name if they have `role` (admins have every role), else AuthError."""
    have = role_of(engine, name)
    if have is None:
        raise AuthError("Sign in first.")
    if role == "admin" and have != "admin":
        raise AuthError(f"Only admins may do this; {name!r} is an {have}.")
    return current_user(engine, name)


def gradio_auth(engine: Engine):
    """The `auth=` for Gradio's launch(): a checker when accounts exist, None (single-user local
    mode, no sign-in) otherwise. Users added later take effect after a restart."""
    if not has_users(engine):
        return None
    return lambda name, password: authenticate(engine, name, password)


def main(argv: Sequence[str] | None = None) -> int:
    from bertdemo.config import Settings

    parser = argparse.ArgumentParser(prog="python -m bertdemo.users", description="Manage bertdemo accounts.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="create a user (password asked for, or from BERTDEMO_PASSWORD)")
    add.add_argument("name", help="login name")
    add.add_argument("--role", choices=store.ROLES, default="annotator", help="annotator or admin")
    sub.add_parser("list", help="list users and roles")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    engine = store.make_engine(settings.database_url)
    store.init_db(engine)
    if args.cmd == "add":
        password = os.environ.get("BERTDEMO_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
        try:
            add_user(engine, args.name, password, args.role)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"added {args.name} ({args.role})")
    else:
        with Session(engine) as s:
            for u in s.scalars(select(store.User).order_by(store.User.name)):
                print(f"{u.name}\t{u.role}\t{u.created_at:%Y-%m-%d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
