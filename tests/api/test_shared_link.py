"""A shared link, over HTTP (issue 27): without accounts every API client (one gradio_client
session) and every browser is its own guest, so people are handed different items, their changes
are recorded under their own guest name, and each undoes their own change; a request body over
the limit is refused before it is read; Gradio's monitoring dashboard is not served."""

from __future__ import annotations

import re

import httpx
import pytest
from gradio_client import Client

from bertdemo.ui.common import guest_name
from tests.api.test_security import ADMIN, ENDPOINT_ROLES, valid_args
from tests.support import wait_for

ADMIN_PASSWORD = "the admin password of the link"


def test_two_api_clients_without_accounts_are_two_guests(app_url):
    ann, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    # the queue reads the stored scores, which version 1 writes in the background after it serves
    a = wait_for(lambda: ann.predict("uncertain", "", [], "all", api_name="/next_item"), timeout=180, interval=1,
                 what="an item in the uncertain queue (v1's scores stored)")
    b = bob.predict("uncertain", "", [], "all", api_name="/next_item")
    try:
        assert a is not None and b is not None and a["id"] != b["id"]  # the same queue, different items
        saved = ann.predict(a["id"], "neutral", a["version"], api_name="/save_label")
        assert saved["user"] == guest_name(ann.session_hash) != guest_name(bob.session_hash)
        undone = ann.predict(a["id"], api_name="/undo")  # her own change: she may undo it
        assert (undone["user"], undone["source"], undone["label"]) == (guest_name(ann.session_hash), "undo",
                                                                      a["label"])
    finally:  # give the items back: other tests share this app
        ann.predict(a["id"], api_name="/skip_item")
        if b is not None:
            bob.predict(b["id"], api_name="/skip_item")


def test_a_huge_json_body_is_refused_with_413_and_the_app_goes_on(app_url):
    body = b'{"data": ["' + b"x" * (11 * 2**20) + b'"]}'
    r = httpx.post(app_url + "gradio_api/call/predict", content=body,
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "the limit is 10 MB" in r.json()["detail"]
    assert Client(app_url, verbose=False).predict("great crew", api_name="/predict")["label"]


def test_the_monitoring_dashboard_is_not_served(app_url):
    # enabled, this route would print the dashboard's secret URL to the server console for anyone
    for path in ("monitoring", "gradio_api/monitoring", "monitoring/summary"):
        r = httpx.get(app_url + path, timeout=30, follow_redirects=True)
        assert r.status_code in (403, 404) and "See console for monitoring URL" not in r.text, (path, r.text)
    assert httpx.get(app_url + "monitoring", timeout=30).json() == {"detail": "Monitoring is not enabled."}


# ------------------------------------------------------------------------- a shared link (e.g. a Space)
@pytest.fixture(scope="module")
def shared_url(tmp_path_factory, tiny_csv, app_launcher, copy_first_start):
    """The app as on a Space (BERTDEMO_SHARED=1, as SPACE_ID or a non-loopback address would make it),
    without accounts, with an admin password."""
    def ready(url: str) -> bool:
        Client(url, verbose=False).predict("hello", api_name="/predict")
        return True

    env = {"BERTDEMO_SHARED": "1", "BERTDEMO_ADMIN_PASSWORD": ADMIN_PASSWORD}
    data_dir = copy_first_start(tmp_path_factory.mktemp("shared") / "runtime")
    with app_launcher(data_dir, tiny_csv, ready, timeout=240, env=env) as url:
        yield url


def test_on_a_shared_link_guests_label_but_only_the_admin_password_makes_an_admin(shared_url):
    guest, boss = Client(shared_url, verbose=False), Client(shared_url, verbose=False)
    # a visitor labels, as a guest of their own
    item = wait_for(lambda: guest.predict("uncertain", "", [], "all", api_name="/next_item"), timeout=180,
                    interval=1, what="an item in the uncertain queue (v1's scores stored)")
    saved = guest.predict(item["id"], "neutral", item["version"], api_name="/save_label")
    assert saved["user"] == guest_name(guest.session_hash) and saved["user"].startswith("guest-")
    # ... but may not retrain, change settings or switch the model
    for call in (lambda c: c.predict(2, api_name="/set_annotations_per_item"),
                 lambda c: c.predict("v1", api_name="/activate_version")):
        for who in (guest, boss):
            with pytest.raises(Exception, match="Only admins may do this"):
                call(who)
    with pytest.raises(Exception, match="not the admin password"):
        boss.predict("a guess at the password", api_name="/admin_sign_in")
    assert "Signed in as admin" in boss.predict(ADMIN_PASSWORD, api_name="/admin_sign_in")
    try:
        assert "2" in boss.predict(2, api_name="/set_annotations_per_item")
        with pytest.raises(Exception, match="Only admins may do this"):  # the other visitor is still a guest
            guest.predict(1, api_name="/set_annotations_per_item")
    finally:
        boss.predict(1, api_name="/set_annotations_per_item")


def test_on_a_shared_link_a_guest_is_refused_every_admin_endpoint(shared_url):
    from gradio_client.exceptions import AppError

    guest = Client(shared_url, verbose=False)
    listed = set(guest.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert listed == set(ENDPOINT_ROLES) | {"/admin_sign_in"}  # the sign-in only where guests need it
    name = guest_name(guest.session_hash)
    for api in [a for a, role in ENDPOINT_ROLES.items() if role == ADMIN]:
        with pytest.raises(AppError, match=re.escape(f"Only admins may do this; {name!r} is an annotator.")):
            guest.predict(*valid_args(api, guest), api_name=api)


@pytest.mark.browser
def test_browser_a_guest_on_a_shared_link_becomes_admin_only_with_the_password(shared_url, browser):
    """On a Space-like link a visitor sees no Train or Import button; the admin password, typed in
    the Admin sign-in accordion, shows them at once, and signing out hides them again."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1300, "height": 1400})
    try:
        page = ctx.new_page()
        page.goto(shared_url)
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#versions-table")).to_be_visible(timeout=30_000)  # the tab works for guests
        expect(page.locator("#train-start")).to_be_hidden(timeout=30_000)
        page.locator("#admin-signin").get_by_text("Admin sign-in (shared link)").click()
        password = page.locator("#admin-password input, #admin-password textarea").first
        password.fill("not it at all")
        page.locator("#admin-signin-button").click()
        expect(page.locator(".toast-body")).to_contain_text("That is not the admin password", timeout=30_000)
        expect(page.locator("#train-start")).to_be_hidden()
        password.fill(ADMIN_PASSWORD)
        page.locator("#admin-signin-button").click()
        expect(page.locator("#admin-signin-message")).to_contain_text("Signed in as admin (admin-", timeout=30_000)
        expect(page.locator("#train-start")).to_be_visible(timeout=30_000)
        assert password.input_value() == ""  # the password does not stay on the page
        page.reload()  # the same browser (its cookie) stays admin
        page.get_by_role("tab", name="Train").click()
        expect(page.locator("#train-start")).to_be_visible(timeout=30_000)
        page.locator("#admin-signin").get_by_text("Admin sign-in (shared link)").click()
        page.locator("#admin-signout-button").click()
        expect(page.locator("#admin-signin-message")).to_contain_text("an annotator", timeout=30_000)
        expect(page.locator("#train-start")).to_be_hidden(timeout=30_000)
    finally:
        ctx.close()
