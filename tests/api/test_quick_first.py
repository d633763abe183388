"""A first start with the quick first version on (BERTDEMO_QUICK_FIRST=1; launched_app turns it off
for every other test): `python app.py` answers /predict with the quick version v1 (frozen encoder +
logistic regression) while version 1's fine-tune runs, and the fine-tuned v2 replaces it; the
page shows the kind."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_for


def _versions(data_dir: Path) -> dict[str, dict]:
    """name -> {"active", "kind"} and the activations' order, read through a read-only connection."""
    con = sqlite3.connect(f"file:{data_dir / 'bertdemo.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT id, name, is_active, train_config FROM model_versions").fetchall()
        order = [r[0] for r in con.execute("SELECT version_id FROM activations ORDER BY id").fetchall()]
    finally:
        con.close()
    name_of = {vid: name for vid, name, _a, _c in rows}
    out = {name: {"active": bool(active), "kind": json.loads(cfg or "{}").get("kind", "fine-tune")}
           for _i, name, active, cfg in rows}
    out["activations"] = [name_of[v] for v in order]  # type: ignore[assignment]
    return out


def _scored(data_dir: Path, name: str) -> bool:
    """True once version `name` has every example's stored score (its re-scoring ended)."""
    con = sqlite3.connect(f"file:{data_dir / 'bertdemo.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        [(scored, total)] = con.execute(
            "SELECT (SELECT COUNT(*) FROM scores JOIN model_versions v ON v.id = scores.version_id WHERE v.name = ?),"
            " (SELECT COUNT(*) FROM examples)", (name,)).fetchall()
    finally:
        con.close()
    return scored == total > 0


@pytest.fixture(scope="module")
def quick_app(tmp_path_factory, tiny_csv, app_launcher) -> Iterator[tuple[str, Path, dict]]:
    from gradio_client import Client

    data_dir = tmp_path_factory.mktemp("quick") / "runtime"
    first: dict = {}

    def ready(url: str) -> bool:
        answer = Client(url, verbose=False).predict("the crew was lovely", api_name="/predict")
        first.update(answer=answer, versions=_versions(data_dir))  # what served the first answer
        return True

    # the quick model of the queues refits after 3 labels (the default 20 would take a long test)
    env = {"BERTDEMO_QUICK_FIRST": "1", "BERTDEMO_QUICK_FIRST_SAMPLE": "120", "BERTDEMO_QUICK_REFIT_EVERY": "3"}
    with app_launcher(data_dir, tiny_csv, ready, timeout=240, env=env) as url:
        yield url, data_dir, first


def test_the_quick_version_answers_first_and_the_fine_tune_replaces_it(quick_app):
    from gradio_client import Client

    url, data_dir, first = quick_app
    served = first["versions"]  # when /predict first answered: the quick v1 serves, the fine-tune runs
    assert served["v1"]["kind"] == "quick" and served["activations"][0] == "v1", served
    assert first["answer"]["label"] in ("negative", "neutral", "positive")
    wait_for(lambda: _versions(data_dir).get("v2", {}).get("active"), 240, 2, "the fine-tuned v2 to serve")
    after = _versions(data_dir)
    assert after["activations"] == ["v1", "v2"] and after["v2"]["kind"] == "fine-tune"
    assert Client(url, verbose=False).predict("lost my bag again", api_name="/predict")["label"]
    status = Client(url, verbose=False).predict(api_name="/training_status")
    assert status["run_id"] == 1 and status["version"] == "v2"  # one run made both: quick v1, then v2


@pytest.mark.browser
def test_the_versions_table_and_status_line_show_the_kind(quick_app, browser):
    url, data_dir, _first = quick_app
    wait_for(lambda: _versions(data_dir).get("v2", {}).get("active"), 240, 2, "the fine-tuned v2 to serve")
    ctx = browser.new_context(viewport={"width": 1300, "height": 1400})
    pg = ctx.new_page()
    try:
        pg.goto(url)
        pg.wait_for_function("document.querySelector('#status-line')?.innerText.includes('Serving model v2')",
                             timeout=60000)
        assert "quick" not in pg.locator("#status-line").inner_text()  # v2 is fine-tuned
        pg.get_by_role("tab", name="Train").click()
        pg.wait_for_function("document.querySelector('#versions-table')?.innerText.includes('quick, frozen encoder')",
                             timeout=30000)
        table = pg.locator("#versions-table").inner_text()
        # the quick v1's cells: its kind in the settings column, what it was fitted on as "trained for"
        assert "quick, frozen encoder" in table and "tweets, logistic regression" in table, table
        assert "v1" in table and "v2" in table, table
    finally:
        ctx.close()


@pytest.mark.browser
def test_the_queue_says_which_model_ranked_it_and_changes_after_n_labels(quick_app, browser):
    """In chromium, on the uncertainty queue: ranked by v2's stored scores, three labels later by
    the quick model refit on them (issue 24: "the queue's 'ranked by' line changes after N labels")."""
    from playwright.sync_api import expect

    url, data_dir, _first = quick_app
    wait_for(lambda: _versions(data_dir).get("v2", {}).get("active"), 240, 2, "the fine-tuned v2 to serve")
    wait_for(lambda: _scored(data_dir, "v2"), 120, 1, "v2's re-scoring")  # before it, the queue says it waits
    ctx = browser.new_context(viewport={"width": 1300, "height": 1400})
    pg = ctx.new_page()
    try:
        pg.goto(url)
        pg.get_by_role("tab", name="Annotate").click()
        progress = pg.locator("#annot-progress")
        # the tab loaded its first queue (on the all-labelled tiny data: the disagreements, maybe done)
        pg.wait_for_function("document.querySelector('#annot-progress')?.innerText.trim().length > 0", timeout=60_000)
        pg.locator("#annot-queue input").click()
        pg.get_by_role("option", name="Most uncertain (entropy)").click()
        expect(progress).to_contain_text("ranked by v2's stored scores", timeout=30_000)
        expect(progress).to_contain_text("re-ranks after 3 more labels")
        for n, key in enumerate("123", start=1):
            pg.locator("#annot-progress").click()  # focus on the page, so the key reaches its shortcuts
            pg.keyboard.press(key)
            expect(progress).to_contain_text(f"{n} seen this session", timeout=30_000)
        # the refit runs in the background after the third label: the next item loaded shows it
        def refit_shown() -> bool:
            pg.locator("#annot-progress").click()
            pg.keyboard.press("s")  # skip: the queue hands out its next item, with the line as of now
            pg.wait_for_timeout(1500)
            return "ranked by the quick model refit at" in progress.inner_text()

        wait_for(refit_shown, 60, 0.5, "the quick model's 'ranked by' line")
        assert "labels (logistic regression on v2's sentence embeddings)" in progress.inner_text()
    finally:
        ctx.close()
