"""ui/common.guarded: the one place that turns errors into gr.Error. A UserError shows its message
(HTML in it shown as text); anything else is a bug: logged with its traceback and shown as an
internal error, never its text as if it were the person's mistake."""

from __future__ import annotations

import logging

import gradio as gr
import pytest

from bertdemo.errors import BadInput, Conflict, Forbidden, NotFound
from bertdemo.ui.common import guarded, uploaded
from tests.support import FakeRequest


@pytest.mark.parametrize("error", [BadInput, NotFound, Conflict, Forbidden])
def test_user_errors_show_their_message(error):
    @guarded
    def action():
        raise error("Choose <b>one</b> of the labels.")

    with pytest.raises(gr.Error) as exc:
        action()
    assert exc.value.message == "Choose &lt;b&gt;one&lt;/b&gt; of the labels."


@pytest.mark.parametrize("bug", [ValueError("could not convert string to float: 'x'"), KeyError("label"),
                                 RuntimeError("CUDA error")])
def test_anything_else_is_an_internal_error_and_is_logged(bug, caplog):
    @guarded
    def action():
        raise bug

    with caplog.at_level(logging.ERROR, logger="bertdemo.ui.common"), pytest.raises(gr.Error) as exc:
        action()
    assert exc.value.message == f"Internal error ({type(bug).__name__}); the details are in the server log."
    assert str(bug) not in exc.value.message
    assert any(r.exc_info and r.exc_info[1] is bug for r in caplog.records)  # with its traceback


def test_a_missing_upload_asks_for_a_file():
    assert uploaded("/tmp/x.csv") == "/tmp/x.csv"
    with pytest.raises(gr.Error, match="Choose a CSV file first"):
        guarded(lambda: uploaded(None))()


# ------------------------------------------------------------------------- who is behind a request
def test_user_of_is_the_account_then_a_guest_per_browser_then_per_api_session():
    from bertdemo.ui.common import GUEST_COOKIE, guest_name, user_of

    browser = "0f8e2b5c-6a1d-4c3e-9b7a-2d4f6e8a0c1b"
    assert user_of(None) is None
    assert user_of(FakeRequest(username="alice", cookies={GUEST_COOKIE: browser})) == "alice"
    # the same browser (its cookie) is the same guest in every tab and after a reload (a new session_hash)
    tab1 = user_of(FakeRequest(cookies={GUEST_COOKIE: browser}, session_hash="s1"))
    tab2 = user_of(FakeRequest(cookies={GUEST_COOKIE: browser}, session_hash="s2"))
    assert tab1 == tab2 == guest_name(browser) and tab1.startswith("guest-") and len(tab1) == 14
    assert browser not in tab1  # the key identifies the guest; the name shown to others does not reveal it
    # another browser, or an API client without cookies (one per gradio_client session), is someone else
    assert user_of(FakeRequest(cookies={GUEST_COOKIE: "1" * 32}, session_hash="s1")) != tab1
    assert user_of(FakeRequest(session_hash="abc123")) == guest_name("abc123") != user_of(FakeRequest(session_hash="xyz789"))
    # a malformed cookie is not trusted as a key
    assert user_of(FakeRequest(cookies={GUEST_COOKIE: "<script>"}, session_hash="abc123")) == guest_name("abc123")
    assert user_of(FakeRequest()) is None


def test_every_page_sets_the_guest_cookie(services):
    from bertdemo.ui.common import GUEST_COOKIE, GUEST_COOKIE_JS
    from bertdemo.ui.demo import launch_options

    head = launch_options(services)["head"]
    assert head == GUEST_COOKIE_JS and f'"{GUEST_COOKIE}=" + id' in head and "max-age=31536000" in head


# ------------------------------------------------------------------------- request-size limit
def test_a_body_over_the_limit_is_refused_before_it_is_read():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from bertdemo.ui.limits import BodyLimit

    read = []

    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        read.append(len(body))
        return JSONResponse({"bytes": len(body)})

    app = Starlette(routes=[Route("/gradio_api/call/predict", echo, methods=["POST"]),
                            Route("/gradio_api/upload", echo, methods=["POST"])],
                    middleware=[Middleware(BodyLimit, max_bytes=1000)])
    client = TestClient(app)
    assert client.post("/gradio_api/call/predict", content=b"x" * 1000).json() == {"bytes": 1000}
    big = client.post("/gradio_api/call/predict", content=b"x" * 5000)
    assert big.status_code == 413 and big.json()["detail"].startswith("The request body is 0.0 MB; the limit is 0 MB")
    chunked = client.post("/gradio_api/call/predict", content=iter([b"x" * 600, b"x" * 600]))  # no length
    assert chunked.status_code == 413
    assert client.post("/gradio_api/upload", content=b"x" * 5000).json() == {"bytes": 5000}  # Gradio's own cap
    assert read == [1000, 5000]  # the refused bodies never reached the route


def test_the_app_is_launched_with_the_body_limit_and_the_end_of_removed_accounts(services):
    from bertdemo.ui.demo import launch_options
    from bertdemo.ui.limits import MAX_BODY_BYTES, BodyLimit
    from bertdemo.ui.sessions import GoneAccounts

    limit, gone = launch_options(services)["app_kwargs"]["middleware"]
    assert limit.cls is BodyLimit and limit.kwargs == {"max_bytes": MAX_BODY_BYTES}
    assert gone.cls is GoneAccounts and gone.kwargs == {"engine": services.engine}


def test_guidelines_render_markdown_but_no_html_of_their_own_and_no_remote_image():
    from bertdemo.ui.common import safe_markdown

    md = ('# Rules\n- **negative**: complaints\n<form action="https://evil.example"><input name="pw"></form>\n'
          '![tracker](https://evil.example/pixel.png) <img src="https://evil.example/x.png"> [ok](https://ok.example)')
    out = safe_markdown(md)
    assert "<form" not in out and "<input" not in out and "<img" not in out
    assert '&lt;form action="https://evil.example"&gt;' not in out  # only < is escaped; > stays for quotes
    assert '&lt;form action="https://evil.example">' in out and '&lt;img src="https://evil.example/x.png">' in out
    assert "![" not in out and "[image: tracker](https://evil.example/pixel.png)" in out  # a link, not an image
    assert out.startswith("# Rules\n- **negative**: complaints\n") and "[ok](https://ok.example)" in out


def test_controls_only_admins_may_use_are_shown_to_admins_only(services):
    from bertdemo.auth import add_user
    from bertdemo.ui.common import ADMIN_ONLY
    from bertdemo.ui.demo import build_demo, role_view

    demo = build_demo(services)
    tagged = {getattr(b, "elem_id", None) or getattr(b, "label", None) for b in demo.blocks.values()
              if ADMIN_ONLY[0] in (getattr(b, "elem_classes", None) or [])}
    assert {"team-admin", "annot-import", "map-apply"} <= tagged
    assert role_view(services.engine, 2, FakeRequest(session_hash="s")) == [{"__type__": "update", "visible": True}] * 2
    add_user(services.engine, "alice", "alice-password-1", "admin")
    add_user(services.engine, "bob", "bob-password-12", "annotator")
    assert role_view(services.engine, 1, FakeRequest(username="alice")) == [{"__type__": "update", "visible": True}]
    assert role_view(services.engine, 1, FakeRequest(username="bob")) == [{"__type__": "update", "visible": False}]
