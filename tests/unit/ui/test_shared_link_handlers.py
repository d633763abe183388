"""The admin sign-in panel of a shared link without accounts (ui/shared_link.py): its handlers,
without a browser, on the `engine` fixture."""

from __future__ import annotations

import gradio as gr
import pytest

from bertdemo import auth
from bertdemo.ui import shared_link
from bertdemo.ui.common import GUEST_COOKIE, user_of
from tests.support import FakeRequest

PW = "a long admin password"


def test_signing_in_shows_the_admin_parts_and_names_the_admin(engine):
    auth.configure_guests(engine, shared=True, admin_password=PW)
    browser = FakeRequest(cookies={GUEST_COOKIE: "0f8e2b5c-6a1d-4c3e-9b7a-2d4f6e8a0c1b"})
    assert auth.role_of(engine, user_of(browser)) == "annotator"
    with pytest.raises(gr.Error, match="not the admin password"):
        shared_link.sign_in_shown(engine, 3, "nope nope nope", browser)
    out = shared_link.sign_in_shown(engine, 3, PW, browser)
    name = user_of(browser)
    assert name.startswith("admin-") and auth.role_of(engine, name) == "admin"
    assert name in out[0] and out[1]["value"] == "" and [u["visible"] for u in out[2:]] == [True] * 3
    out = shared_link.sign_out_shown(3, browser)
    assert "annotator" in out[0] and [u["visible"] for u in out[2:]] == [False] * 3
    assert auth.role_of(engine, user_of(browser)) == "annotator"


def test_an_api_session_signs_in_by_its_session(engine):
    auth.configure_guests(engine, shared=True, admin_password=PW)
    client, other = FakeRequest(session_hash="sessionhash-one"), FakeRequest(session_hash="sessionhash-two")
    try:
        assert "Signed in as admin" in shared_link.admin_sign_in(engine, PW, client)
        assert auth.role_of(engine, user_of(client)) == "admin"
        assert auth.role_of(engine, user_of(other)) == "annotator"
    finally:
        shared_link.sign_out(client)


def test_a_request_without_a_guest_identity_is_told_to_reload(engine):
    auth.configure_guests(engine, shared=True, admin_password=PW)
    with pytest.raises(gr.Error, match="no guest identity"):
        shared_link.sign_in_shown(engine, 1, PW, FakeRequest())
