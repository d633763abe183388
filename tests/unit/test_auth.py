"""Accounts: password hashing, roles, single-user mode, the sign-in limit, Gradio's auth hook
and the CLI, on every backend of the `engine` fixture (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.cli import users as users_cli
from bertdemo.db.models import LoginAttempt, User
from bertdemo.errors import BadInput, Forbidden
from bertdemo.ui.demo import gradio_auth

T0 = datetime(2026, 1, 1, 12, 0, 0)  # attempts carry injected times: no sleeping


def run_async(coro):
    """asyncio.run in a thread of its own: playwright's sync API (the session-wide browser of the
    UI tests) keeps an event loop running in the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def at(seconds: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, minutes=minutes)


def attempts(engine) -> list[tuple[str, bool, bool]]:
    with Session(engine) as s:
        return [tuple(r) for r in s.execute(select(LoginAttempt.name, LoginAttempt.success,
                                                   LoginAttempt.locked_out).order_by(LoginAttempt.id))]


def test_passwords_are_salted_scrypt_hashes(engine):
    auth.add_user(engine, "ann", "correct horse", "annotator")
    with Session(engine) as s:
        stored = s.scalar(select(User.password_hash))
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert auth.hash_password("correct horse") != auth.hash_password("correct horse")  # salted
    assert auth.authenticate(engine, "ann", "correct horse")
    assert not auth.authenticate(engine, "ann", "wrong horse")
    assert not auth.authenticate(engine, "nobody", "correct horse")
    assert not auth.verify_password("x", "not-a-hash")


def test_bad_accounts_are_refused(engine):
    with pytest.raises(ValueError, match="at least 8"):
        auth.add_user(engine, "ann", "short")
    with pytest.raises(ValueError, match="role must be one of"):
        auth.add_user(engine, "ann", "password1", "owner")
    with pytest.raises(ValueError, match="user names are"):
        auth.add_user(engine, "<script>", "password1")
    auth.add_user(engine, "ann", "password1")
    with pytest.raises(ValueError, match="exists already"):
        auth.add_user(engine, "ann", "password2")


def test_single_user_mode_until_the_first_account(engine):
    assert gradio_auth(engine) is None  # no sign-in page
    assert auth.current_user(engine, None) == auth.LOCAL_USER
    assert auth.require_role(engine, None, "admin") == auth.LOCAL_USER
    auth.add_user(engine, "ann", "password1", "annotator")
    auth.add_user(engine, "boss", "password2", "admin")
    check = gradio_auth(engine)
    assert run_async(check("ann", "password1")) and not run_async(check("ann", "password2"))
    with pytest.raises(Forbidden, match="Sign in"):
        auth.current_user(engine, None)
    assert auth.require_role(engine, "ann", "annotator") == "ann"
    with pytest.raises(Forbidden, match="Only admins"):
        auth.require_role(engine, "ann", "admin")
    assert auth.require_role(engine, "boss", "admin") == "boss"
    assert auth.role_of(engine, "stranger") is None


def test_cli_adds_and_lists_users(tmp_path, db_url, monkeypatch, capsys):
    monkeypatch.setenv("BERTDEMO_DATA_DIR", str(tmp_path / "rt"))
    monkeypatch.setenv("BERTDEMO_DB_URL", db_url)
    monkeypatch.setenv("BERTDEMO_PASSWORD", "password1")
    assert users_cli.main(["add", "boss", "--role", "admin"]) == 0
    assert users_cli.main(["add", "boss"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert users_cli.main(["list"]) == 0
    assert capsys.readouterr().out.startswith("boss\tadmin\t")
    assert users_cli.main(["add", "ann"]) == 0
    assert users_cli.main(["remove", "ann"]) == 0
    assert "removed ann" in capsys.readouterr().out
    assert users_cli.main(["remove", "ann"]) == 2
    assert "no user named 'ann'" in capsys.readouterr().err
    assert users_cli.main(["remove", "boss"]) == 0
    assert "no account is left" in capsys.readouterr().out


# --------------------------------------------------------------------------- sign-in limit
def test_five_failures_lock_the_name_even_for_the_right_password(engine, monkeypatch):
    auth.add_user(engine, "ann", "password1")
    for i in range(auth.MAX_FAILED_SIGNINS):
        assert auth.check_sign_in(engine, "ann", f"wrong{i}", at(seconds=i)) is False
    checked = []
    monkeypatch.setattr(auth, "verify_password", lambda *a: checked.append(a) or True)
    with pytest.raises(auth.SignInLocked, match="Too many failed sign-ins for 'ann'; try again in 15 minutes"):
        auth.check_sign_in(engine, "ann", "password1", at(seconds=10))
    with pytest.raises(auth.SignInLocked, match="try again in 1 minute\\."):
        auth.check_sign_in(engine, "ANN ", "password1", at(minutes=14, seconds=30))  # same name, any case
    assert checked == []  # refused without running scrypt
    assert attempts(engine) == [("ann", False, False)] * 5 + [("ann", False, True)] * 2


def test_the_lock_ends_when_the_window_has_passed(engine):
    auth.add_user(engine, "ann", "password1")
    for i in range(5):
        auth.check_sign_in(engine, "ann", "wrong", at(seconds=i))
    with pytest.raises(auth.SignInLocked):
        auth.check_sign_in(engine, "ann", "password1", at(minutes=10))  # refusals do not extend the lock
    # the oldest failure leaves the window at 15:00: the 5-in-15-minutes limit admits one more try
    assert auth.check_sign_in(engine, "ann", "wrong", at(minutes=15)) is False
    with pytest.raises(auth.SignInLocked):
        auth.check_sign_in(engine, "ann", "password1", at(minutes=15, seconds=0.5))
    assert auth.check_sign_in(engine, "ann", "password1", at(minutes=15, seconds=2)) is True


def test_unknown_names_are_limited_too(engine):
    auth.add_user(engine, "ann", "password1")
    for i in range(5):
        assert auth.check_sign_in(engine, "  NoBody", "whatever1", at(seconds=i)) is False
    with pytest.raises(auth.SignInLocked, match="'nobody'"):
        auth.check_sign_in(engine, "nobody", "whatever1", at(seconds=6))
    assert auth.check_sign_in(engine, "ann", "password1", at(seconds=7))  # other names are not affected


def test_failures_before_a_success_do_not_count(engine):
    auth.add_user(engine, "ann", "password1")
    for i in range(4):
        auth.check_sign_in(engine, "ann", "wrong", at(seconds=i))
    assert auth.check_sign_in(engine, "ann", "password1", at(seconds=5))
    for i in range(4):
        assert auth.check_sign_in(engine, "ann", "wrong", at(seconds=6 + i)) is False
    assert auth.check_sign_in(engine, "ann", "password1", at(seconds=11))
    for i in range(5):
        auth.check_sign_in(engine, "ann", "wrong", at(seconds=12 + i))
    with pytest.raises(auth.SignInLocked):
        auth.check_sign_in(engine, "ann", "password1", at(seconds=20))
    assert len(attempts(engine)) == 4 + 1 + 4 + 1 + 5 + 1  # the history is kept


def test_a_burst_of_parallel_attempts_gets_five_tries(engine):
    auth.add_user(engine, "ann", "password1")
    results, barrier = [], threading.Barrier(10)

    def attempt() -> None:
        barrier.wait()
        try:
            results.append(auth.check_sign_in(engine, "ann", "guess", at()))
        except auth.SignInLocked:
            results.append("locked")

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results, key=str) == [False] * 5 + ["locked"] * 5


def test_old_attempts_are_pruned(engine):
    auth.check_sign_in(engine, "ann", "wrong", at())
    auth.check_sign_in(engine, "bob", "wrong", at(minutes=60 * 23))
    auth.check_sign_in(engine, "bob", "wrong", at(minutes=60 * 25))
    assert attempts(engine) == [("bob", False, False)] * 2


def test_the_gradio_auth_is_async_and_checks_in_a_worker_thread(engine, monkeypatch):
    auth.add_user(engine, "ann", "password1")
    check = gradio_auth(engine)
    assert asyncio.iscoroutinefunction(check)  # Gradio awaits it instead of blocking its event loop
    threads = []
    real = auth.check_sign_in
    monkeypatch.setattr(auth, "check_sign_in", lambda *a: threads.append(threading.current_thread()) or real(*a))

    async def main() -> list:
        return await asyncio.gather(check("ann", "password1"), check("ann", "nope"), return_exceptions=True)

    assert run_async(main()) == [True, False]
    assert threading.main_thread() not in threads and len(threads) == 2
    for _ in range(4):
        run_async(check("ann", "nope"))
    with pytest.raises(HTTPException) as refused:
        run_async(check("ann", "password1"))
    # 400 as for wrong credentials: Gradio's sign-in page shows nothing at all for a 429
    assert refused.value.status_code == 400 and "Too many failed sign-ins for 'ann'" in refused.value.detail
    assert 800 < int(refused.value.headers["Retry-After"]) <= 900


def test_passwords_never_reach_the_logs(engine, caplog):
    caplog.set_level(logging.DEBUG)
    auth.add_user(engine, "ann", "s3cret-right")
    auth.check_sign_in(engine, "ann", "s3cret-right", at())
    for i in range(5):
        auth.check_sign_in(engine, "ann", f"s3cret-wrong-{i}", at(seconds=1 + i))
    with pytest.raises(auth.SignInLocked):
        auth.check_sign_in(engine, "ann", "s3cret-right", at(seconds=9))
    auth.check_sign_in(engine, "ghost", "s3cret-ghost", at(seconds=10))
    auth.check_sign_in(engine, "s3cret-typed-into-the-name-field", "", at(seconds=11))
    assert "s3cret" not in caplog.text
    messages = [r.getMessage() for r in caplog.records if r.name == "bertdemo.auth"]
    assert messages[0] == "signed in: 'ann'"
    assert messages[1:5] == ["failed sign-in for 'ann'"] * 4
    assert "locked out until" in messages[5] and "sign-in refused for 'ann'" in messages[6]
    # a name that is no account is not logged: it may be a password typed into the name field
    assert messages[7:] == ["failed sign-in for a name that is no account"] * 2


def test_a_deleted_accounts_open_session_is_refused(engine):
    auth.add_user(engine, "alice", "alice-pass-1", role="admin")
    auth.add_user(engine, "bob", "bob-pass-12")
    assert auth.current_user(engine, "bob") == "bob"
    with Session(engine) as s, s.begin():  # an operator deletes bob while his browser is still signed in
        s.delete(s.scalar(select(User).where(User.name == "bob")))
    with pytest.raises(Forbidden, match="The account 'bob' no longer exists; sign in with another one."):
        auth.current_user(engine, "bob")
    with pytest.raises(Forbidden, match="Sign in first"):
        auth.require_role(engine, "bob", "annotator")
    assert auth.current_user(engine, "alice") == "alice"


# ------------------------------------------------------------------------- guests on a shared link
ADMIN_PW = "the team's admin secret"


def test_without_accounts_a_local_app_makes_everyone_admin(engine):
    auth.configure_guests(engine, shared=False)
    assert auth.role_of(engine, auth.guest_name("k" * 32)) == "admin"
    assert auth.role_of(engine, None) == "admin"  # the CLI, on the server


def test_on_a_shared_link_guests_are_annotators_until_the_admin_password(engine):
    auth.configure_guests(engine, shared=True, admin_password=ADMIN_PW)
    key, other = "a" * 32, "b" * 32
    guest = auth.guest_name(key)
    assert guest.startswith("guest-") and auth.role_of(engine, guest) == "annotator"
    with pytest.raises(Forbidden, match="Only admins"):
        auth.require_role(engine, guest, "admin")
    assert auth.role_of(engine, None) is None  # a request without any identity is nobody
    with pytest.raises(Forbidden, match="not the admin password"):
        auth.guest_admin_sign_in(engine, key, "wrong password!")
    assert auth.guest_name(key) == guest  # a failure changes nothing
    admin = auth.guest_admin_sign_in(engine, key, ADMIN_PW)
    assert admin == auth.guest_name(key) == "admin-" + guest.removeprefix("guest-")
    assert auth.require_role(engine, admin, "admin") == admin
    assert auth.role_of(engine, auth.guest_name(other)) == "annotator"  # only that browser became admin
    assert auth.guest_admin_sign_out(key) == guest and auth.role_of(engine, auth.guest_name(key)) == "annotator"


def test_admin_sign_in_is_by_the_secret_key_never_by_the_public_name(engine, monkeypatch):
    auth.configure_guests(engine, shared=True, admin_password=ADMIN_PW)
    monkeypatch.setattr(auth, "_ADMIN_SESSIONS", auth._AdminSessions())
    # two keys whose public names collide (the same 8 hex digits; crafting one takes ~2**32 hashes)
    digests = {"c" * 32: "12345678" + "a" * 56, "d" * 32: "12345678" + "b" * 56}
    monkeypatch.setattr(auth, "_digest", digests.__getitem__)
    auth.guest_admin_sign_in(engine, "c" * 32, ADMIN_PW)
    assert auth.guest_name("c" * 32) == "admin-12345678"
    assert auth.guest_name("d" * 32) == "guest-12345678"  # the same public digits, another key: a guest
    assert auth.role_of(engine, auth.guest_name("d" * 32)) == "annotator"


def test_admin_sign_in_needs_a_shared_link_without_accounts_and_a_password(engine):
    auth.configure_guests(engine, shared=False, admin_password=ADMIN_PW)
    with pytest.raises(BadInput, match="you are admin already"):
        auth.guest_admin_sign_in(engine, "e" * 32, ADMIN_PW)
    auth.configure_guests(engine, shared=True)
    with pytest.raises(BadInput, match="No admin password is set"):
        auth.guest_admin_sign_in(engine, "e" * 32, "anything at all")
    auth.configure_guests(engine, shared=True, admin_password=ADMIN_PW)
    auth.add_user(engine, "ann", "correct horse", "admin")
    with pytest.raises(BadInput, match="This app has accounts"):
        auth.guest_admin_sign_in(engine, "e" * 32, ADMIN_PW)
    assert auth.role_of(engine, auth.guest_name("e" * 32)) is None  # with accounts, guests are nobody


def test_guessing_the_admin_password_is_limited_per_guest_and_for_everyone(engine, monkeypatch):
    auth.configure_guests(engine, shared=True, admin_password=ADMIN_PW)
    monkeypatch.setattr(auth, "_ADMIN_SESSIONS", auth._AdminSessions())
    monkeypatch.setattr(auth, "verify_password", lambda password, stored: password == ADMIN_PW)  # no scrypt
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    for _ in range(auth.GUEST_FAILURES):
        with pytest.raises(Forbidden, match="not the admin password"):
            auth.guest_admin_sign_in(engine, "f" * 32, "guess")
    with pytest.raises(Forbidden, match="Too many failed admin sign-ins; try again in 15 min"):
        auth.guest_admin_sign_in(engine, "f" * 32, ADMIN_PW)  # refused without checking, even when right
    assert auth.guest_admin_sign_in(engine, "g" * 32, ADMIN_PW).startswith("admin-")  # others may
    clock[0] += auth.FAILURE_WINDOW + 1  # the failures leave the window
    assert auth.guest_admin_sign_in(engine, "f" * 32, ADMIN_PW).startswith("admin-")
    # many guests (rotating keys) together: after ALL_FAILURES everyone waits
    for i in range(auth.ALL_FAILURES):
        with pytest.raises(Forbidden, match="not the admin password"):
            auth.guest_admin_sign_in(engine, f"{i:032d}", "guess")
    with pytest.raises(Forbidden, match="Too many failed"):
        auth.guest_admin_sign_in(engine, "h" * 32, ADMIN_PW)


def test_an_admin_sign_in_expires(engine, monkeypatch):
    auth.configure_guests(engine, shared=True, admin_password=ADMIN_PW)
    monkeypatch.setattr(auth, "_ADMIN_SESSIONS", auth._AdminSessions())
    clock = [50.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    admin = auth.guest_admin_sign_in(engine, "i" * 32, ADMIN_PW)
    assert auth.role_of(engine, auth.guest_name("i" * 32)) == "admin" and admin.startswith("admin-")
    clock[0] += auth.ADMIN_SESSION + 1
    assert auth.role_of(engine, auth.guest_name("i" * 32)) == "annotator"


def test_parallel_guesses_of_the_admin_password_cannot_pass_the_limit_together(engine, monkeypatch):
    auth.configure_guests(engine, shared=True, admin_password=ADMIN_PW)
    monkeypatch.setattr(auth, "_ADMIN_SESSIONS", auth._AdminSessions())
    checked = []

    def slow_verify(password, stored):  # as slow as scrypt
        checked.append(password)
        threading.Event().wait(0.02)
        return False

    monkeypatch.setattr(auth, "verify_password", slow_verify)

    def guess(i: int) -> str:
        try:
            auth.guest_admin_sign_in(engine, "j" * 32, f"guess {i}")
        except Forbidden as exc:
            return str(exc)
        return "signed in"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(20)))
    assert len(checked) == auth.GUEST_FAILURES  # only that many passwords were ever checked
    assert sum("Too many failed" in a for a in answers) == 20 - auth.GUEST_FAILURES
