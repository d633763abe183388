"""Security when the link is shared: app.py launched with accounts (one annotator, one admin).

(a) roles are enforced on the server for every endpoint: an anonymous request is refused
    everywhere (HTTP 401), an annotator is refused every admin-only endpoint (and the admin-only
    Cancel button's handler) with a clear message and nothing changes, an admin can use them; the
    role of every endpoint view_api lists is written down here (ENDPOINT_ROLES), so a new endpoint
    fails the test until someone decides who may call it;
(b) HTML, script and javascript: links typed into every tab, or stored in an example, are shown
    as text in a real browser and never run;
(c) CSV downloads (export_csv, predict_csv) escape cells and headers a spreadsheet would run;
(d) uploads are capped on both import_csv and predict_csv (the boundary: at the cap is read, one
    byte over is refused), and a request cannot make the server read a file it did not upload.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from bertdemo.text import clean_text
from tests.support import db_fingerprint, seed_data_dir, signed_in_page, wait_for

LABELS = ("negative", "neutral", "positive")
ANN = ("ann", "ann-password")
BOSS = ("boss", "boss-password")
GONE = ("gone", "gone-password")  # an annotator whose account is removed while signed in
CORPUS = Path(__file__).parents[1] / "data" / "bad_inputs"  # tests/data/bad_inputs
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=2</script>"
XSS_LINK = "[click me](javascript:window.__xss=3)"
PAYLOAD = f"{XSS_IMG} flight {XSS_SCRIPT} delayed {XSS_LINK} <b>bold</b> **strong**"
STORED = [PAYLOAD, "Seat 14C was fine I guess", "Why is the lounge closed today"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

ANY, ADMIN = "any signed-in user", "admin"
ENDPOINT_ROLES = {  # who may call each endpoint; with no accounts (single-user mode) everyone is admin
    "/predict": ANY, "/predict_batch": ANY, "/tokenize": ANY, "/explain": ANY, "/predict_csv": ANY, "/compare_word": ANY,
    "/next_item": ANY, "/save_label": ANY, "/undo": ANY, "/export_csv": ANY,
    "/training_status": ANY, "/skip_item": ANY, "/similar_examples": ANY, "/map_selection": ANY, "/add_comment": ANY,
    "/import_csv": ADMIN, "/agreement": ADMIN, "/start_training": ADMIN, "/activate_version": ADMIN,
    "/set_annotations_per_item": ADMIN, "/label_examples": ADMIN, "/undo_bulk_label": ADMIN,
    "/set_retrain_every": ADMIN, "/set_guidelines": ADMIN, "/adjudicate": ADMIN, "/next_disagreement": ADMIN,
    "/review_version": ADMIN,  # it may load two models
    # is more labelling worth it (issue 25): everyone sees the team's signals and their own rows
    "/labelling_value": ANY, "/stopping_signals": ANY, "/learning_curve": ANY, "/annotation_time": ANY,
    "/suggestion_audit": ANY, "/export_labelling_value": ANY, "/set_audit_share": ADMIN,
}
TRAIN = (1, 1e-4, 16, 32, 1, "full fine-tune", "base encoder", 1, False)  # one step, not served


# ---------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def secure_app(tmp_path_factory, tiny_csv, app_launcher, copy_first_start) -> Iterator[tuple[str, Path]]:
    """app.py with an annotator and an admin, and three unlabelled examples (one of them HTML and
    script) besides the tiny labelled sample; yields (url, data dir) once version 1 is trained
    and the examples scored."""
    data_dir = copy_first_start(tmp_path_factory.mktemp("secure-app") / "runtime")
    seed_data_dir(data_dir, [(*ANN, "annotator"), (*BOSS, "admin"), (*GONE, "annotator")], STORED)
    from gradio_client import Client

    def ready(url: str) -> bool:
        c = Client(url, auth=ANN, verbose=False)
        item = c.predict("uncertain", "", [], api_name="/next_item")
        return bool(item and item["predicted"]) and c.predict(api_name="/training_status")["state"] == "succeeded"

    with app_launcher(data_dir, tiny_csv, ready) as url:
        yield url, data_dir


@pytest.fixture(scope="module")
def ann(secure_app):
    from gradio_client import Client

    return Client(secure_app[0], auth=ANN, verbose=False)


@pytest.fixture(scope="module")
def boss(secure_app):
    from gradio_client import Client

    return Client(secure_app[0], auth=BOSS, verbose=False)


def signed_in(url: str, who: tuple[str, str]) -> httpx.Client:
    """An HTTP session signed in through Gradio's /login (the browser's way)."""
    c = httpx.Client(base_url=url.rstrip("/"), timeout=120)
    r = c.post("/login", data={"username": who[0], "password": who[1]})
    assert r.status_code == 200, r.text
    return c


def queue_call(c: httpx.Client, fn_index: int, data: list) -> dict:
    """Call an event handler the way the page does (queue/join + the event stream), even one the
    API does not list; returns Gradio's process_completed message."""
    session = uuid.uuid4().hex[:12]
    r = c.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                               "event_data": None, "trigger_id": None})
    r.raise_for_status()
    with c.stream("GET", f"/gradio_api/queue/data?session_hash={session}") as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("the event stream ended without a result")


def valid_args(api: str, client) -> tuple:  # noqa: ANN001
    """Arguments every endpoint accepts (admin-only ones are refused for the role alone)."""
    from gradio_client import handle_file

    if api in ("/save_label", "/undo", "/skip_item", "/add_comment"):
        item = client.predict("search", "lounge", [], api_name="/next_item")
        if api == "/add_comment":
            return item["id"], "a note"
        return (item["id"], "neutral", item["version"]) if api == "/save_label" else (item["id"],)
    return {
        "/predict": ("lovely crew",), "/predict_batch": (["lovely crew", "lost my bag"],), "/tokenize": ("lovely crew", 0), "/explain": ("lovely crew", "predicted", True),
        "/predict_csv": (handle_file(str(CORPUS / "formulas.csv")),),
        "/compare_word": ("A bat flew by.\nHe swung the bat.", "bat", 2), "/next_item": ("search", "lounge", []),  # the item ann labels below; next_item
        # hands out leases, and the HTML example must stay free for the admin's browser test
        "/export_csv": (), "/training_status": (), "/agreement": (),
        "/import_csv": (handle_file(str(CORPUS / "sql_injection.csv")),), "/start_training": TRAIN,
        "/activate_version": ("v1",), "/set_annotations_per_item": (1,),
        "/similar_examples": (None, "lovely crew", 3), "/map_selection": ({"box": [-100, -100, 100, 100]},),
        "/label_examples": ([1], "neutral"), "/undo_bulk_label": ("no-such-batch",), "/set_retrain_every": (0,),
        "/set_guidelines": ("# Rules",), "/adjudicate": (1, "neutral", 1), "/next_disagreement": ([],),
        "/review_version": ("v1", "v1", None),
        "/labelling_value": (), "/stopping_signals": (), "/learning_curve": (), "/annotation_time": (),
        "/suggestion_audit": (), "/export_labelling_value": ("json",), "/set_audit_share": (0.1,),
    }[api]


# ---------------------------------------------------------------------------- (a) roles
def test_every_endpoint_has_a_role(boss):
    listed = set(boss.view_api(print_info=False, return_format="dict")["named_endpoints"])
    unclassified = listed - set(ENDPOINT_ROLES)
    assert not unclassified, f"decide who may call {sorted(unclassified)} and add it to ENDPOINT_ROLES"
    assert set(ENDPOINT_ROLES) - listed == set(), "ENDPOINT_ROLES names endpoints the app no longer has"


def test_anonymous_requests_are_refused_everywhere(secure_app):
    from gradio_client import Client

    url, data_dir = secure_app
    before = db_fingerprint(data_dir)
    with pytest.raises(Exception):  # noqa: B017 - gradio_client cannot even read the config
        Client(url, verbose=False)
    anon = httpx.Client(base_url=url.rstrip("/"), timeout=60)
    for api in ENDPOINT_ROLES:
        for route in ("call", "run"):
            r = anon.post(f"/gradio_api/{route}{api}", json={"data": []})
            assert r.status_code == 401, f"anonymous POST /gradio_api/{route}{api}: {r.status_code} {r.text[:200]}"
    for method, path, kw in [("GET", "/config", {}), ("GET", "/gradio_api/info", {}),
                             ("POST", "/gradio_api/queue/join", {"json": {"data": [], "fn_index": 0,
                                                                          "session_hash": "x"}}),
                             ("POST", "/gradio_api/upload", {"files": {"files": ("a.csv", b"text\nx\n")}}),
                             ("GET", f"/gradio_api/file={data_dir / 'bertdemo.sqlite3'}", {})]:
        r = anon.request(method, path, **kw)
        assert r.status_code == 401, f"anonymous {method} {path}: {r.status_code}"
    assert db_fingerprint(data_dir) == before


def test_an_annotator_is_refused_every_admin_endpoint(secure_app, ann):
    from gradio_client.exceptions import AppError

    url, data_dir = secure_app
    for api in [a for a, role in ENDPOINT_ROLES.items() if role == ADMIN]:
        before = db_fingerprint(data_dir)
        with pytest.raises(AppError, match=re.escape("Only admins may do this; 'ann' is an annotator.")):
            ann.predict(*valid_args(api, ann), api_name=api)
        assert db_fingerprint(data_dir) == before, f"{api} refused the annotator but changed the database"
    # the Cancel button's handler is not in the API, but the page calls it: it checks the role too
    session = signed_in(url, ANN)
    cfg = session.get("/config").json()
    cancel = next(c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "train-cancel")
    fn = next(d["id"] for d in cfg["dependencies"] if any(t[0] == cancel for t in d["targets"]))
    msg = queue_call(session, fn, [])
    assert msg["success"] is False and msg["output"]["error"] == "Only admins may do this; 'ann' is an annotator."


def test_an_annotator_may_use_every_other_endpoint(secure_app, ann):
    for api in [a for a, role in ENDPOINT_ROLES.items() if role == ANY]:
        args = valid_args(api, ann)
        out = ann.predict(*args, api_name=api)
        if api == "/save_label":
            assert (out["user"], out["label"]) == ("ann", "neutral")
        if api == "/undo":
            assert (out["user"], out["source"]) == ("ann", "undo")


def test_an_admin_may_use_the_admin_endpoints(secure_app, boss):
    url, data_dir = secure_app
    assert boss.predict(*valid_args("/import_csv", boss), api_name="/import_csv") == "Added 2 examples; skipped 0."
    kappa, counts, _pairs = boss.predict(api_name="/agreement")
    assert "kappa" in kappa.lower() or "Not enough items" in kappa
    msg = boss.predict(*TRAIN, api_name="/start_training")
    run = int(re.match(r"Training run #(\d+) started", msg).group(1))
    def finished() -> dict | None:
        st = boss.predict(api_name="/training_status")
        return st if st["run_id"] == run and st["state"] not in ("queued", "running") else None

    st = wait_for(finished, timeout=180, interval=1, what=f"run {run} to finish")
    assert st["state"] == "succeeded", st
    assert boss.predict(st["version"], api_name="/activate_version").startswith(f"Now serving **{st['version']}**")
    assert boss.predict("v1", api_name="/activate_version").startswith("Now serving **v1**")  # back to v1


# ---------------------------------------------------------------------------- (c) formulas
def test_downloads_escape_formulas_in_cells_and_headers(secure_app, ann, boss):
    from gradio_client import handle_file

    formulas = pd.read_csv(CORPUS / "formulas.csv", dtype=str, keep_default_na=False)["text"].tolist()
    boss.predict(handle_file(str(CORPUS / "formulas.csv")), api_name="/import_csv")  # (imported once here)
    export = pd.read_csv(ann.predict(api_name="/export_csv"), dtype=str, keep_default_na=False,
                         encoding="utf-8-sig")
    for f in formulas:
        stored = f.replace("\r\n", "\n").replace("\r", "\n")  # CSV line ends are read as \n
        expected = "'" + stored if stored.startswith(FORMULA_START) else stored
        assert expected in set(export["text"]), f"{f!r} is not escaped in the export"
    for name in ("formulas.csv", "formula_header.csv"):
        path, _summary = ann.predict(handle_file(str(CORPUS / name)), api_name="/predict_csv")
        out = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        for cell in [*out.columns, *out.to_numpy().ravel(), *export.columns, *export.to_numpy().ravel()]:
            assert not str(cell).startswith(FORMULA_START), f"{name}: a formula in the download: {cell!r}"
    assert "'=HYPERLINK(\"http://evil.example\")" in out.columns


# ---------------------------------------------------------------------------- (d) uploads
def test_upload_cap_boundary_on_both_endpoints(secure_app, ann, boss, tmp_path):
    """The test app runs with BERTDEMO_MAX_UPLOAD_MB=1: exactly 1 MB is read, one byte more is not."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    url, data_dir = secure_app
    row = b"a row at the size cap\n"
    at_cap = tmp_path / "at_cap.csv"
    at_cap.write_bytes(b"text\n" + b"\n" * (2**20 - 5 - len(row)) + row)  # blank lines are no rows
    over = tmp_path / "over_cap.csv"
    over.write_bytes(at_cap.read_bytes() + b"\n")
    assert at_cap.stat().st_size == 2**20
    _path, summary = ann.predict(handle_file(str(at_cap)), api_name="/predict_csv")
    assert summary.startswith("Classified 1 of 1 rows")
    before = db_fingerprint(data_dir)
    for client, api in ((ann, "/predict_csv"), (boss, "/import_csv")):
        with pytest.raises(AppError, match=re.escape("The file is 1.0 MB; the limit is 1 MB.")):
            client.predict(handle_file(str(over)), api_name=api)
    assert db_fingerprint(data_dir) == before
    assert boss.predict(handle_file(str(at_cap)), api_name="/import_csv") == "Added 1 examples; skipped 0."


def test_a_request_cannot_make_the_server_read_its_own_files(secure_app):
    """A file argument naming a path on the server (not an upload) is refused, and nothing of the
    file comes back."""
    url, data_dir = secure_app
    before = db_fingerprint(data_dir)
    session = signed_in(url, BOSS)
    for api in ("predict_csv", "import_csv"):
        for path in ("/etc/passwd", str(data_dir / "bertdemo.sqlite3"), str(CORPUS / "formulas.csv"),
                     f"{data_dir}/../../../../etc/hostname.csv"):
            r = session.post(f"/gradio_api/call/{api}",
                             json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]})
            r.raise_for_status()
            with session.stream("GET", f"/gradio_api/call/{api}/{r.json()['event_id']}") as s:
                body = "".join(s.iter_text())
            assert "event: error" in body and "event: complete" not in body, f"{api} read {path}: {body[:300]}"
            assert "root:" not in body and "SQLite format" not in body and "HYPERLINK" not in body
    assert db_fingerprint(data_dir) == before


# ---------------------------------------------------------------------------- (b) the browser
def test_a_removed_accounts_open_session_is_refused_everywhere(secure_app):
    from gradio_client import Client

    from bertdemo import auth
    from bertdemo.db.engine import make_engine

    url, data_dir = secure_app
    browser, client = signed_in(url, GONE), Client(url, auth=GONE, verbose=False)
    assert client.predict("great crew", api_name="/predict")["label"]
    assert browser.get("/config").status_code == 200
    engine = make_engine(f"sqlite:///{data_dir / 'bertdemo.sqlite3'}")
    try:
        auth.remove_user(engine, "gone")  # as `bertdemo users remove gone` does, from another process
    finally:
        engine.dispose()
    # read-only routes too (a prediction records no user), within the middleware's cache time
    r = wait_for(lambda: (r := browser.post("/gradio_api/call/predict", json={"data": ["great crew"]}))
                 .status_code == 401 and r, timeout=30, interval=1, what="the removed account's session refused")
    assert r.json()["detail"] == "The account 'gone' no longer exists; sign in with another one."
    assert browser.get("/config").status_code == 401
    with pytest.raises(Exception):  # noqa: B017, PT011 - the client only sees that the call failed
        client.predict("great crew", api_name="/predict")
    assert Client(url, auth=ANN, verbose=False).predict("great crew", api_name="/predict")["label"]  # others go on


def test_user_text_is_escaped_for_markdown_and_toasts():
    from bertdemo.ui.common import md_text, plain

    assert md_text(XSS_IMG) == r'&lt;img src=x onerror="window\.\_\_xss=1"&gt;'
    assert md_text("[a](javascript:x) **b** 1. #h") == r"\[a\]\(javascript:x\) \*\*b\*\* 1\. \#h"
    assert plain("Unknown label '<b>x</b>'") == "Unknown label '&lt;b&gt;x&lt;/b&gt;'"


def no_markup_from_the_payload(page, where: str) -> None:
    """Nothing in the elements matching `where` was made from the payload: no <img src=x>, no
    link from [click me](javascript:…), no script with its code, no bold/strong from <b>bold</b>
    or **strong**."""
    found = page.evaluate("""(sel) => {
        const roots = [...document.querySelectorAll(sel)];
        if (!roots.length) return ['missing ' + sel];
        const bad = [];
        for (const root of roots) {
            for (const e of root.querySelectorAll('img, a, script, b, strong, em')) {
                const t = e.textContent.trim();
                if ((e.tagName === 'IMG' && e.getAttribute('src') === 'x')
                    || /^javascript:/i.test(e.getAttribute('href') || '')
                    || (e.tagName === 'A' && t.includes('click me')) || (e.tagName === 'SCRIPT' && t.includes('__xss'))
                    || (['B', 'STRONG', 'EM'].includes(e.tagName) && /^(bold|strong)$/.test(t)))
                    bad.push(e.outerHTML.slice(0, 120));
            }
        }
        return bad;
    }""", where)
    assert found == [], f"{where}: markup made from the text: {found}"


@pytest.mark.browser
def test_browser_html_and_script_in_every_tab_stay_text(secure_app, browser):
    from playwright.sync_api import expect

    url, _ = secure_app
    ctx, page = signed_in_page(browser, url, BOSS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    cleaned = clean_text(PAYLOAD)

    # Predict: the label, the cleaned text, the tokens, the attributions
    page.fill("#predict-text textarea", PAYLOAD)
    page.click("#predict-button")
    page.locator("#predict-label .output-class").wait_for(timeout=60_000)
    expect(page.locator("#predict-info")).to_contain_text(cleaned, timeout=30_000)
    expect(page.locator("#token-table")).to_contain_text("##rro", timeout=30_000)  # on ##rro ##r
    page.get_by_role("tab", name="Attributions").click()
    expect(page.locator("#attributions")).to_contain_text("onerror", timeout=60_000)
    for where in ("#predict-label", "#predict-info", "#token-table", "#attributions"):
        no_markup_from_the_payload(page, where)

    # Annotate: the stored example in the labeling view, its history, the table, the attributions
    page.get_by_role("tab", name="Annotate").click()
    page.locator("#annot-queue input").click()
    page.get_by_role("option", name="Text search").click()
    page.locator("#annot-search input, #annot-search textarea").first.fill("onerror")
    page.locator("#annot-load").click()
    expect(page.locator("#annot-text textarea")).to_have_value(PAYLOAD, timeout=30_000)
    page.locator("#annot-progress").click()
    page.keyboard.press("2")  # label it, so its history has a row
    expect(page.locator("#annot-progress")).to_contain_text("→ neutral", timeout=30_000)  # the queue is done
    page.get_by_role("tab", name="Table").click()
    page.locator("#annot-f-text input, #annot-f-text textarea").first.fill("onerror")
    page.locator("#annot-filter").click()
    table = page.locator("#annot-table")
    expect(table).to_contain_text(XSS_IMG, timeout=30_000)
    expect(table).to_contain_text(XSS_SCRIPT)
    table.locator("span:visible", has_text="onerror").first.click()
    expect(page.locator("#annot-row-history")).to_contain_text("boss", timeout=30_000)
    for where in ("#annot-text", "#annot-info", "#annot-table", "#annot-row-history"):
        no_markup_from_the_payload(page, where)

    # Train: the before/after text box and both attributions
    page.get_by_role("tab", name="Train").click()
    page.wait_for_function("document.querySelector('#versions-table')?.innerText.includes('v1')", timeout=30_000)
    page.locator("#compare-text input, #compare-text textarea").first.fill(PAYLOAD)
    page.locator("#compare-explain").click()
    expect(page.locator("#attr-a")).to_contain_text("onerror", timeout=60_000)
    expect(page.locator("#attr-b")).to_contain_text("onerror", timeout=60_000)
    for where in ("#attr-a", "#attr-b", "#compare-pred"):
        no_markup_from_the_payload(page, where)

    # Embeddings: the payload as a sentence (a skipped line in the summary) and as the word (an error)
    page.get_by_role("tab", name="Embeddings").click()
    page.locator("#emb-sentences textarea").fill(f"{PAYLOAD}\nA bat flew by.\nHe swung the bat.")
    page.locator("#emb-word :is(input, textarea)").fill("bat")
    page.locator("#emb-compare").click()
    summary = page.locator("#emb-summary")
    expect(summary).to_contain_text("Skipped lines", timeout=60_000)
    expect(summary).to_contain_text(cleaned[:80])
    no_markup_from_the_payload(page, "#emb-summary")
    word = f"{XSS_IMG} <b>bold</b>"  # a phrase (under the 100-character cap): the error quotes it
    page.locator("#emb-word :is(input, textarea)").fill(word)
    page.locator("#emb-compare").click()
    toast = page.locator(".toast-body").filter(has_text="Type one word")
    expect(toast).to_contain_text(clean_text(word), timeout=30_000)
    no_markup_from_the_payload(page, ".toast-body")

    assert page.evaluate("window.__xss") is None, "a script from the text ran"
    assert dialogs == [], f"a dialog opened: {dialogs}"
    ctx.close()
