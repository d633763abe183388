"""Who may do what: users with roles, scrypt password hashes, role checks, the sign-in limit.

With no users in the database there are no accounts: each browser (or API session) is a guest.
On a loopback-only app (one person) every guest is admin. On a shared link (the app listens
beyond loopback or runs on a Space: `Settings.shared_link`, registered per database by
`configure_guests`) guests are annotators, and a guest becomes admin for ADMIN_SESSION by typing
the admin password of BERTDEMO_ADMIN_PASSWORD (`guest_admin_sign_in`). `bertdemo users add NAME
--role admin` creates a user (the password is asked for, or read from BERTDEMO_PASSWORD for
scripts); with users, everyone signs in and roles come from the accounts.

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
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import accounts
from bertdemo.db.models import ROLES, User, now
from bertdemo.errors import BadInput, Forbidden

log = logging.getLogger(__name__)
LOCAL_USER = "local"  # the user of a change without accounts nor a guest (the CLI, on the server)
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


def remove_user(engine: Engine, name: str) -> None:
    """Delete an account: its open sessions are refused from then on (ui/sessions.py, within
    seconds), its past changes keep its name. BadInput when there is no such account."""
    with Session(engine) as s, s.begin():
        if not accounts.remove_user(s, name.strip()):
            raise BadInput(f"no user named {name.strip()!r}")


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
    """The role of a signed-in user. Without accounts: on a loopback-only app everyone is admin; on a
    shared link a guest is an annotator unless they signed in with the admin password."""
    if not has_users(engine):
        return guests_of(engine).role_of(name)
    if not name:
        return None
    with Session(engine) as s:
        return accounts.role_of(s, name)


def current_user(engine: Engine, name: str | None) -> str:
    """The name to record on a change: the signed-in user, or LOCAL_USER without accounts when no
    guest is known. A session whose account was deleted since it signed in is refused (Gradio keeps
    its cookie)."""
    if not has_users(engine):
        if not name and guests_of(engine).shared:  # on a shared link every change has its guest
            raise Forbidden("This request has no guest identity (cookies off?); reload the page.")
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




# ------------------------------------------------------------------------- guests on a shared link
GUEST_PREFIX, ADMIN_PREFIX = "guest-", "admin-"  # the names guests' changes are recorded under
ADMIN_SESSION = 12 * 3600.0  # seconds a guest's admin sign-in lasts (until then, or sign-out, or a restart)
GUEST_FAILURES = 5  # failed admin sign-ins of one guest ...
ALL_FAILURES = 30  # ... or of all guests together, within ...
FAILURE_WINDOW = 15 * 60.0  # ... this many seconds refuse further tries until the oldest leaves the window


@dataclass
class Guests:
    """How guests are treated on one database's app (see the module docstring). `shared`: the app
    is reachable by others; `password_hash`: of BERTDEMO_ADMIN_PASSWORD, None when unset (then no
    guest can become admin: add accounts, or use the CLI on the server)."""

    shared: bool = False
    password_hash: str | None = None

    def role_of(self, name: str | None) -> str | None:
        if not self.shared:
            return "admin"
        if not name:
            return None
        return "admin" if name.startswith(ADMIN_PREFIX) else "annotator"


_GUESTS: weakref.WeakKeyDictionary[Engine, Guests] = weakref.WeakKeyDictionary()
_LOCAL = Guests()


def configure_guests(engine: Engine, shared: bool, admin_password: str = "") -> Guests:
    """Say how guests are treated on the app of `engine` (ui/demo.build_demo, from Settings)."""
    guests = Guests(shared, hash_password(admin_password) if admin_password else None)
    _GUESTS[engine] = guests
    return guests


def guests_of(engine: Engine) -> Guests:
    """The app's guest rules; an app nobody configured (the CLI, on the server) is local."""
    return _GUESTS.get(engine, _LOCAL)


class _AdminSessions:
    """Which guest keys signed in with the admin password, by the SHA-256 of the key (the key is the
    browser's secret; its 8-hex-digit guest name is public, so elevation is never by name), and the
    failed tries that limit guessing. In memory: a restart signs every guest admin out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        self._failed: dict[str, deque[float]] = {}
        self._all_failed: deque[float] = deque()

    def is_admin(self, digest: str) -> bool:
        with self._lock:
            return self._until.get(digest, 0.0) > time.monotonic()

    def refused_for(self, digest: str, at: float) -> float:
        """Seconds until `digest` may try again (0: now)."""
        with self._lock:
            mine = self._failed.get(digest, deque())
            for q in (mine, self._all_failed):
                while q and q[0] <= at - FAILURE_WINDOW:
                    q.popleft()
            waits = [q[0] + FAILURE_WINDOW - at for q, cap in ((mine, GUEST_FAILURES),
                                                               (self._all_failed, ALL_FAILURES)) if len(q) >= cap]
            return max(waits, default=0.0)

    def failed(self, digest: str, at: float) -> None:
        with self._lock:
            self._failed.setdefault(digest, deque()).append(at)
            self._all_failed.append(at)
            if len(self._failed) > 10_000:  # bounded memory whatever keys are tried
                self._failed = {k: q for k, q in self._failed.items() if q and q[-1] > at - FAILURE_WINDOW}

    def grant(self, digest: str, at: float) -> None:
        with self._lock:
            self._until = {k: t for k, t in self._until.items() if t > at}
            self._until[digest] = at + ADMIN_SESSION
            self._failed.pop(digest, None)

    def revoke(self, digest: str) -> bool:
        with self._lock:
            return self._until.pop(digest, None) is not None


_ADMIN_SESSIONS = _AdminSessions()
_ADMIN_SIGN_IN = threading.Lock()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def guest_name(key: str) -> str:
    """The name a guest's changes are recorded under, from their secret key (a browser's cookie, an
    API client's session): `guest-` and 8 hex digits of its hash, or `admin-` and the same digits
    while that key is signed in with the admin password. The key itself is never shown."""
    digest = _digest(key)
    return (ADMIN_PREFIX if _ADMIN_SESSIONS.is_admin(digest) else GUEST_PREFIX) + digest[:8]


def guest_admin_sign_in(engine: Engine, key: str, password: str) -> str:
    """Make the guest of `key` an admin of this shared link for ADMIN_SESSION when `password` is the
    admin password; returns their new name. BadInput when the app has no guest admin sign-in (not
    shared, accounts, no password set); Forbidden for a wrong password or after too many failures
    (GUEST_FAILURES for this guest or ALL_FAILURES for everyone within FAILURE_WINDOW)."""
    guests = guests_of(engine)
    if has_users(engine):
        raise BadInput("This app has accounts: sign in with yours (the admin password is for guests).")
    if not guests.shared:
        raise BadInput("This app listens on this machine only, where you are admin already.")
    if guests.password_hash is None:
        raise BadInput("No admin password is set for this shared link (BERTDEMO_ADMIN_PASSWORD), so "
                       "no guest can be admin; add accounts or use the CLI on the server.")
    digest = _digest(key)
    with _ADMIN_SIGN_IN:  # one try at a time: a burst of parallel guesses cannot pass the limit together
        at = time.monotonic()
        wait = _ADMIN_SESSIONS.refused_for(digest, at)
        if wait > 0:
            log.warning("admin sign-in refused for %s: too many failed tries", GUEST_PREFIX + digest[:8])
            raise Forbidden(f"Too many failed admin sign-ins; try again in {math.ceil(wait / 60)} min.")
        if not verify_password(password or "", guests.password_hash):
            _ADMIN_SESSIONS.failed(digest, at)
            log.warning("failed admin sign-in by %s", GUEST_PREFIX + digest[:8])
            raise Forbidden("That is not the admin password.")
        _ADMIN_SESSIONS.grant(digest, at)
    log.info("%s signed in as admin of the shared link", ADMIN_PREFIX + digest[:8])
    return guest_name(key)


def guest_admin_sign_out(key: str) -> str:
    """End the admin sign-in of the guest of `key`; returns their guest name."""
    _ADMIN_SESSIONS.revoke(_digest(key))
    return guest_name(key)
