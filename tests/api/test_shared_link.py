"""A shared link, over HTTP (issue 27): without accounts every API client (one gradio_client
session) and every browser is its own guest, so people are handed different items, their changes
are recorded under their own guest name, and each undoes their own change; a request body over
the limit is refused before it is read; Gradio's monitoring dashboard is not served."""

from __future__ import annotations

import httpx
from gradio_client import Client

from bertdemo.ui.common import guest_name
from tests.support import wait_for


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
