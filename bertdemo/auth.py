"""Who may do what: users with roles, scrypt password hashes, role checks, the sign-in limit.

With no users in the database the app runs in single-user local mode: everyone is the local
admin. `bertdemo users add NAME --role admin` creates a user (the password is asked
for, or read from BERTDEMO_PASSWORD for scripts).

Sign-in limit (`check_sign_in`, behind Gradio's `auth=`): every attempt is recorded in
`login_attempts`; after MAX_FAILED_SIGNINS failures for a name within SIGNIN_WINDOW that name is
refused, without checking the password, until the oldest of those failures leaves the window.
Names are counted whether or not an account has them. Passwords are never logged.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import secrets
import threading
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import accounts
from bertdemo.db.models import ROLES, User, now
from bertdemo.errors import BadInput, Forbidden

log = logging.getLogger(__name__)
LOCAL_USER = "local"  # the user of single-user mode (no accounts configured)
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~16 MiB, ~50 ms per check
MAX_FAILED_SIGNINS = 5  # failed sign-ins for one name ...
SIGNIN_WINDOW = timedelta(minutes=15)  # ... within this long lock that name out
ATTEMPTS_KEPT = timedelta(days=1)  # older login_attempts rows are deleted (the table stays small)
# Attempts for one name are checked one at a time in this process, so that a burst of parallel
# requests cannot all pass the check before the first failure is recorded. A fixed set of locks
# (not one per name) keeps memory bounded whatever names are tried.
_STRIPES = tuple(threading.Lock() for _ in range(64))
# for the sign-in page: a locked-out name gets Gradio's generic "Incorrect credentials" there
SIGNIN_NOTICE = (f"After {MAX_FAILED_SIGNINS} failed sign-ins a name is locked for "
                 f"{SIGNIN_WINDOW.total_seconds() / 60:.0f} minutes, even with the right password.")


class SignInLocked(Forbidden):
    """Too many failed sign-ins for a name: refused without checking the password."""

    def __init__(self, name: str, until: datetime, at: datetime) -> None:
        self.name, self.until = name, until
        self.retry_after_s = max(1, math.ceil((until - at).total_seconds()))
        minutes = math.ceil(self.retry_after_s / 60)
        super().__init__(f"Too many failed sign-ins for {name!r}; try again in {minutes} "
                         f"minute{'' if minutes == 1 else 's'}.")


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise BadInput("passwords must have at least 8 characters")
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


def add_user(engine: Engine, name: str, password: str, role: str = "annotator") -> User:
    name = name.strip()
    if not name or len(name) > 64 or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise BadInput(f"user names are 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    if role not in ROLES:
        raise BadInput(f"role must be one of {ROLES}, got {role!r}")
    password_hash = hash_password(password)
    with Session(engine) as s, s.begin():
        if accounts.user_named(s, name):
            raise BadInput(f"user {name!r} exists already")
        return accounts.add_user(s, name, role, password_hash)


def has_users(engine: Engine) -> bool:
    with Session(engine) as s:
        return accounts.count_users(s) > 0


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def authenticate(engine: Engine, name: str, password: str) -> bool:
    """True when the name and password match (no attempt limit: see check_sign_in)."""
    with Session(engine) as s:
        user = accounts.user_named(s, name)
    if user is None:
        verify_password(password, _dummy_hash())  # one scrypt either way: timing does not tell who exists
        return False
    return verify_password(password, user.password_hash)


def attempt_key(name: str) -> str:
    """The name an attempt is counted under: as typed, stripped and lower-cased (so 'Ann ' and
    'ann' share one limit), cut to the column's length."""
    return name.strip().lower()[:128]


def locked_until(s: Session, key: str, at: datetime) -> datetime | None:
    """When `key` may try again if it is locked out at `at`, else None. Counted: failures (not
    refusals) within SIGNIN_WINDOW before `at` that came after the name's last success."""
    since = at - SIGNIN_WINDOW
    last_ok = accounts.last_success(s, key, at)
    if last_ok is not None and last_ok > since:
        since = last_ok
    failures = accounts.recent_failures(s, key, since, at, MAX_FAILED_SIGNINS)
    if len(failures) < MAX_FAILED_SIGNINS:
        return None
    return failures[-1] + SIGNIN_WINDOW  # then the oldest counted failure leaves the window


def check_sign_in(engine: Engine, name: str, password: str, at: datetime | None = None) -> bool:
    """Gradio's sign-in check with the attempt limit: True when the name and password match,
    False when not; SignInLocked, without checking the password, when the name has had
    MAX_FAILED_SIGNINS failures within SIGNIN_WINDOW. Every attempt is recorded; `at` (naive
    UTC, default now) is for tests."""
    at = at or now()
    key = attempt_key(name)
    with _STRIPES[hash(key) % len(_STRIPES)]:
        with Session(engine) as s, s.begin():
            until = locked_until(s, key, at)
            if until is not None:
                accounts.record_attempt(s, key, False, at, locked_out=True)
        if until is not None:
            log.warning("sign-in refused for %s: locked out after %d failed attempts, until %s UTC",
                        _logged_name(engine, name), MAX_FAILED_SIGNINS, f"{until:%Y-%m-%d %H:%M:%S}")
            raise SignInLocked(key, until, at)
        ok = authenticate(engine, name, password)  # the slow part (scrypt), outside any transaction
        with Session(engine) as s, s.begin():
            accounts.record_attempt(s, key, ok, at)
            accounts.prune_attempts(s, at - ATTEMPTS_KEPT)
            until = None if ok else locked_until(s, key, at)
    if ok:
        log.info("signed in: %r", key)
        return ok
    who = _logged_name(engine, name)
    if until is not None:
        log.warning("failed sign-in for %s; %d failures within %d minutes: locked out until %s UTC", who,
                    MAX_FAILED_SIGNINS, SIGNIN_WINDOW.total_seconds() // 60, f"{until:%Y-%m-%d %H:%M:%S}")
    else:
        log.warning("failed sign-in for %s", who)
    return ok


def _logged_name(engine: Engine, name: str) -> str:
    """How a failed sign-in names its user in the log: an account's name, but never text that is no
    account's name, which is often a password typed into the name field."""
    with Session(engine) as s:
        exists = accounts.role_of(s, name) is not None
    return repr(attempt_key(name)) if exists else "a name that is no account"


def role_of(engine: Engine, name: str | None) -> str | None:
    """The role of a signed-in user; in single-user mode (no accounts) everyone is admin."""
    if not has_users(engine):
        return "admin"
    if not name:
        return None
    with Session(engine) as s:
        return accounts.role_of(s, name)


def current_user(engine: Engine, name: str | None) -> str:
    """The name to record on a change: the signed-in user, or LOCAL_USER in single-user mode. A
    session whose account was deleted since it signed in is refused (Gradio keeps its cookie)."""
    if not has_users(engine):
        return name or LOCAL_USER
    if not name:
        raise Forbidden("Sign in first.")
    if role_of(engine, name) is None:
        raise Forbidden(f"The account {name!r} no longer exists; sign in with another one.")
    return name


def require_role(engine: Engine, name: str | None, role: str) -> str:
    """Return the acting user's name if they have `role` (admins have every role), else Forbidden."""
    have = role_of(engine, name)
    if have is None:
        raise Forbidden("Sign in first.")
    if role == "admin" and have != "admin":
        raise Forbidden(f"Only admins may do this; {name!r} is an {have}.")
    return current_user(engine, name)


