"""A link shared without accounts (issue 27): every API client (one gradio_client session) and
every browser is its own guest, so people are handed different items, their changes are recorded
under their own guest name, and each undoes their own change."""

from __future__ import annotations

from gradio_client import Client

from bertdemo.ui.common import guest_name


def test_two_api_clients_without_accounts_are_two_guests(app_url):
    ann, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    a = ann.predict("uncertain", "", [], "all", api_name="/next_item")
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
        bob.predict(b["id"], api_name="/skip_item")
