"""Accounts: password hashing, roles, single-user mode, Gradio's auth hook and the CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bertdemo import store, users


@pytest.fixture
def engine(tmp_path):
    e = store.make_engine(f"sqlite:///{tmp_path / 'db' / 't.sqlite3'}")
    store.init_db(e)
    return e


def test_passwords_are_salted_scrypt_hashes(engine):
    users.add_user(engine, "ann", "correct horse", "annotator")
    with Session(engine) as s:
        stored = s.scalar(select(store.User.password_hash))
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert users.hash_password("correct horse") != users.hash_password("correct horse")  # salted
    assert users.authenticate(engine, "ann", "correct horse")
    assert not users.authenticate(engine, "ann", "wrong horse")
    assert not users.authenticate(engine, "nobody", "correct horse")
    assert not users.verify_password("x", "not-a-hash")


def test_bad_accounts_are_refused(engine):
    with pytest.raises(ValueError, match="at least 8"):
        users.add_user(engine, "ann", "short")
    with pytest.raises(ValueError, match="role must be one of"):
        users.add_user(engine, "ann", "password1", "owner")
    with pytest.raises(ValueError, match="user names are"):
        users.add_user(engine, "<script>", "password1")
    users.add_user(engine, "ann", "password1")
    with pytest.raises(ValueError, match="exists already"):
        users.add_user(engine, "ann", "password2")


def test_single_user_mode_until_the_first_account(engine):
    assert users.gradio_auth(engine) is None  # no sign-in page
    assert users.current_user(engine, None) == users.LOCAL_USER
    assert users.require_role(engine, None, "admin") == users.LOCAL_USER
    users.add_user(engine, "ann", "password1", "annotator")
    users.add_user(engine, "boss", "password2", "admin")
    check = users.gradio_auth(engine)
    assert check("ann", "password1") and not check("ann", "password2")
    with pytest.raises(users.AuthError, match="Sign in"):
        users.current_user(engine, None)
    assert users.require_role(engine, "ann", "annotator") == "ann"
    with pytest.raises(users.AuthError, match="Only admins"):
        users.require_role(engine, "ann", "admin")
    assert users.require_role(engine, "boss", "admin") == "boss"
    assert users.role_of(engine, "stranger") is None


def test_cli_adds_and_lists_users(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BERTDEMO_DATA_DIR", str(tmp_path / "rt"))
    monkeypatch.setenv("BERTDEMO_PASSWORD", "password1")
    assert users.main(["add", "boss", "--role", "admin"]) == 0
    assert users.main(["add", "boss"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert users.main(["list"]) == 0
    assert capsys.readouterr().out.startswith("boss\tadmin\t")
