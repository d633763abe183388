"""The Annotate tab end to end: app.py launched with accounts, driven over HTTP with
gradio_client and in Debian chromium with playwright."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.support import seed_data_dir, signed_in_page

LABELS = ("negative", "neutral", "positive")
ANN = ("ann", "ann-password")
BOSS = ("boss", "boss-password")
UNLABELED = ["Seat 14C was fine I guess", "Why is the lounge closed today", "Best crew ever, thank you!",
             "Bag still missing after 3 days", "<script>window.__pwned = 1</script><b>bold claim</b>"]


@pytest.fixture(scope="module")
def auth_data_dir(tmp_path_factory):
    """The data dir of auth_app (its SQLite database), for tests that read what the app stored."""
    return tmp_path_factory.mktemp("annot-app") / "runtime"


@pytest.fixture(scope="module")
def auth_app(auth_data_dir, tiny_csv, app_launcher, copy_first_start):
    """app.py with two accounts and five unlabelled examples besides the tiny labelled sample;
    yields its URL once version 1 is trained and the examples scored."""
    data_dir = copy_first_start(auth_data_dir)
    seed_data_dir(data_dir, [(*ANN, "annotator"), (*BOSS, "admin")], UNLABELED)
    from gradio_client import Client

    def ready(url: str) -> bool:
        item = Client(url, auth=ANN, verbose=False).predict("uncertain", "", [], api_name="/next_item")
        return bool(item and item["predicted"])  # trained and scored

    with app_launcher(data_dir, tiny_csv, ready) as url:
        yield url


def first_suspicious(data_dir) -> tuple[int, str] | None:
    """(id, label) of the first item of the "suspicious labels" queue, computed as the app does it
    (model.label_noise over the active version's stored scores, read from the app's database)."""
    from sqlalchemy.orm import Session

    from bertdemo.db import examples, versions
    from bertdemo.db.engine import make_engine
    from bertdemo.model.label_noise import find_suspicious

    engine = make_engine(f"sqlite:///{data_dir / 'bertdemo.sqlite3'}")
    try:
        with Session(engine) as s:
            rows = [r for r in examples.scored_examples(s, versions.active_version(s).id) if r[2] is not None]
            ids = find_suspicious(rows, LABELS)
            return (ids[0], examples.get(s, ids[0]).label) if ids else None
    finally:
        engine.dispose()


def test_api_requires_sign_in_and_records_the_user(auth_app, auth_data_dir):
    from gradio_client import Client

    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError on bad credentials
        Client(auth_app, auth=("ann", "wrong-password"), verbose=False)
    c = Client(auth_app, auth=ANN, verbose=False)
    item = c.predict("search", "lounge", [], api_name="/next_item")
    assert item["text"] == UNLABELED[1] and item["label"] is None and item["remaining"] == 1
    saved = c.predict(item["id"], "neutral", item["version"], api_name="/save_label")
    assert (saved["user"], saved["label"], saved["source"]) == ("ann", "neutral", "annotator")
    with pytest.raises(Exception, match="after you loaded it"):  # the same stale version again
        c.predict(item["id"], "negative", item["version"], api_name="/save_label")
    undone = c.predict(item["id"], api_name="/undo")
    assert (undone["label"], undone["source"], undone["user"]) == (None, "undo", "ann")
    with pytest.raises(Exception, match="Only admins"):
        c.predict(api_name="/agreement")
    suspicious = c.predict("suspicious", "", [], api_name="/next_item")  # cleanlab over the stored scores
    expected = first_suspicious(auth_data_dir)
    assert (None if suspicious is None else (suspicious["id"], suspicious["label"])) == expected
    exported = c.predict(api_name="/export_csv")
    df = pd.read_csv(exported, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    row = df[df["text"] == UNLABELED[1]].iloc[0]
    assert (row["label"], row["annotator"], row["changes"]) == ("", "ann", "2")


def test_import_csv_over_the_api_is_for_admins_and_validated(auth_app, tmp_path):
    from gradio_client import Client, handle_file

    path = tmp_path / "new.csv"
    pd.DataFrame({"text": ["A brand new tweet about snacks", UNLABELED[0], "odd one"],
                  "label": ["positive", "", "great"]}).to_csv(path, index=False)
    with pytest.raises(Exception, match="Only admins"):
        Client(auth_app, auth=ANN, verbose=False).predict(handle_file(str(path)), api_name="/import_csv")
    boss = Client(auth_app, auth=BOSS, verbose=False)
    assert boss.predict(handle_file(str(path)), api_name="/import_csv") == "Added 1 examples; skipped 2."
    with pytest.raises(Exception, match="Nothing to import"):
        boss.predict(handle_file(str(path)), api_name="/import_csv")
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.write(b"text\n")
        f.truncate(50 * 2**20)
    with pytest.raises(Exception, match="the limit is 1 MB"):
        boss.predict(handle_file(str(big)), api_name="/import_csv")


# ---------------------------------------------------------------------------- browser
def sign_in(browser, url: str, who: tuple[str, str]):
    """Signed in (tests.support.signed_in_page), on the Annotate tab."""
    ctx, page = signed_in_page(browser, url, who)
    page.get_by_role("tab", name="Annotate").click()
    return ctx, page


def headers_inside(page, elem_id: str) -> list[list]:
    """[header, whether it lies inside the table's panel] of a gr.Dataframe, left to right."""
    return page.evaluate("""(id) => {
        const panel = document.getElementById(id).getBoundingClientRect().right;
        return [...document.querySelectorAll('#' + id + ' th')].filter(th => th.innerText.trim())
            .map(th => [th.innerText.trim(), th.getBoundingClientRect().right <= panel + 1]);
    }""", elem_id)


def choose_queue(page, name: str) -> None:
    page.locator("#annot-queue input").click()
    page.get_by_role("option", name=name, exact=True).click()


@pytest.mark.browser
def test_browser_label_with_keys_undo_switch_history_and_admin_agreement(auth_app, browser):
    from playwright.sync_api import expect

    ctx, page = sign_in(browser, auth_app, ANN)
    progress, info = page.locator("#annot-progress"), page.locator("#annot-info")
    # the tab loads its first queue: with a model serving and unlabelled examples, the simulation's winner
    expect(progress).to_contain_text("Unlabeled, most informative first", timeout=30_000)
    expect(progress).to_contain_text("ranked by v1's stored scores")
    # the plain Unlabeled queue (by id) from here: the steps below need the HTML example left unlabelled
    choose_queue(page, "Unlabeled")
    expect(progress).not_to_contain_text("most informative", timeout=30_000)
    progress.click()  # focus off the queue's dropdown, so the keys reach the page's shortcuts
    labelled = []
    for n, key in enumerate("123", start=1):
        text = page.locator("#annot-text textarea").input_value()
        labelled.append(text)
        page.keyboard.press(key)
        expect(progress).to_contain_text(f"{n} seen this session", timeout=30_000)
    expect(info).to_contain_text("→ positive")
    page.keyboard.press("u")
    expect(info).to_contain_text("back to none", timeout=30_000)
    assert page.locator("#annot-text textarea").input_value() == labelled[2]
    # the HTML/script text, if shown, stayed text
    assert page.evaluate("window.__pwned") is None

    choose_queue(page, "Recently changed")
    expect(progress).to_contain_text("Recently changed", timeout=30_000)
    assert page.locator("#annot-text textarea").input_value() == labelled[2]  # the undo is the newest change
    page.get_by_text("History of this example").click()
    hist = page.locator("#annot-item-history")
    expect(hist).to_contain_text("undo", timeout=30_000)
    expect(hist).to_contain_text("ann")

    # HTML and script in a text are shown as text, never run
    choose_queue(page, "Text search")
    page.locator("#annot-search input, #annot-search textarea").first.fill("bold claim")
    page.locator("#annot-load").click()
    expect(page.locator("#annot-text textarea")).to_have_value(UNLABELED[4], timeout=30_000)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#annot-text b").count() == 0
    # attributions are off until asked for
    expect(page.locator("#annot-attr")).to_be_hidden()
    page.locator("#annot-show-attr input").check()
    expect(page.locator("#annot-attr")).to_contain_text("bold", timeout=60_000)

    # someone else changes the example on screen: the save is refused, the person is told and
    # sees the new label
    from gradio_client import Client

    boss_api = Client(auth_app, auth=BOSS, verbose=False)
    # ann holds the item (a lease): next_item hands it to nobody else, so the admin edits it by id,
    # as from the table
    assert boss_api.predict("search", "bold claim", [], api_name="/next_item") is None
    shown = re.search(r"#(\d+) · .* version (\d+)", info.inner_text())
    boss_api.predict(int(shown.group(1)), "neutral", int(shown.group(2)), api_name="/save_label")
    page.locator("#annot-progress").click()  # focus off the checkbox, so the key reaches the page
    page.keyboard.press("1")
    expect(page.get_by_text(re.compile("changed by boss")).first).to_be_visible(timeout=30_000)
    expect(info).to_contain_text("current label neutral", timeout=30_000)
    expect(info).to_contain_text("Someone else changed this example")
    ctx.close()

    # a second person, an admin, labels the two items the first one kept and sees agreement
    ctx, page = sign_in(browser, auth_app, BOSS)
    progress = page.locator("#annot-progress")
    expect(progress).to_contain_text("Unlabeled", timeout=30_000)
    choose_queue(page, "Recently changed")
    expect(progress).to_contain_text("Recently changed", timeout=30_000)
    want = {labelled[0]: "1", labelled[1]: "2"}
    seen = 0
    while want:
        text = page.locator("#annot-text textarea").input_value()
        page.keyboard.press(want.pop(text, "s"))
        seen += 1
        expect(progress).to_contain_text(re.compile(rf"\b{seen} seen this session"), timeout=30_000)
    page.get_by_role("tab", name="Team", exact=True).click()
    page.locator("#annot-agree-refresh").click()
    expect(page.locator("#annot-kappa")).to_contain_text("over 2 items", timeout=30_000)
    expect(page.locator("#annot-kappa")).to_contain_text("1.000")
    expect(page.locator("#annot-counts")).to_contain_text("boss")

    # the table: filter by annotator, pick a row, change its label there
    page.get_by_role("tab", name="Table").click()
    expect(page.locator("#annot-table")).to_contain_text("changed (UTC)")  # its own headers before the first filter
    page.locator("#annot-row-save").click()  # nothing picked yet
    expect(page.get_by_text("Select a row first").first).to_be_visible(timeout=30_000)
    page.locator("#annot-f-user input, #annot-f-user textarea").first.fill("boss")
    page.locator("#annot-filter").click()
    table = page.locator("#annot-table")
    expect(table).to_contain_text(labelled[0][:15], timeout=30_000)
    table.get_by_text(labelled[0][:15]).first.click()
    expect(page.locator("#annot-row-history")).to_contain_text("ann", timeout=30_000)
    page.locator("#annot-row-label").get_by_text("positive").click()
    page.locator("#annot-row-save").click()
    expect(page.locator("#annot-row-history")).to_contain_text("positive", timeout=30_000)
    page.locator("#annot-f-user input, #annot-f-user textarea").first.fill("")
    page.locator("#annot-f-text input, #annot-f-text textarea").first.fill("bold claim")
    page.locator("#annot-filter").click()
    expect(table).to_contain_text("<b>bold claim</b>", timeout=30_000)  # markup shown as text
    assert page.evaluate("window.__pwned") is None
    ctx.close()


@pytest.mark.browser
def test_browser_two_people_at_once_are_shown_different_items(auth_app, browser):
    """Two people signed in at the same time on the same queue see different examples; the one
    who skips gives hers back, and the other is handed it next."""
    from playwright.sync_api import expect

    people = [sign_in(browser, auth_app, who) for who in (ANN, BOSS)]
    try:
        shown = []
        for _ctx, page in people:
            choose_queue(page, "Text search")
            page.locator("#annot-search input, #annot-search textarea").first.fill("a")
            page.locator("#annot-load").click()
            expect(page.locator("#annot-progress")).to_contain_text("for the team", timeout=30_000)
            shown.append(page.locator("#annot-text textarea").input_value())
        assert shown[0] and shown[1] and shown[0] != shown[1]
        ann_page, boss_page = people[0][1], people[1][1]
        ann_page.locator("#annot-progress").click()
        ann_page.keyboard.press("s")  # ann skips: her item is free again
        expect(ann_page.locator("#annot-progress")).to_contain_text("1 seen this session", timeout=30_000)
        boss_page.locator("#annot-progress").click()
        boss_page.keyboard.press("s")
        expect(boss_page.locator("#annot-progress")).to_contain_text("1 seen this session", timeout=30_000)
        assert boss_page.locator("#annot-text textarea").input_value() == shown[0]
        # boss accepts the model's suggestion with one key; the admin view counts it as such
        suggested = re.search(r"model suggests (\w+)", boss_page.locator("#annot-info").inner_text()).group(1)
        boss_page.keyboard.press("a")
        expect(boss_page.locator("#annot-info")).to_contain_text(f"→ {suggested}.", timeout=30_000)
        from gradio_client import Client

        _kappa, counts, _pairs = Client(auth_app, auth=BOSS, verbose=False).predict(api_name="/agreement")
        boss_row = next(r for r in counts["data"] if r[0] == "boss")
        assert boss_row[counts["headers"].index("accepted suggestions")] >= 1
    finally:
        for ctx, _page in people:
            ctx.close()


@pytest.mark.browser
def test_browser_similar_examples_the_map_bulk_labels_comments_and_guidelines(auth_app, browser):
    """An admin labels the examples similar to a text in one click and takes it back, selects a
    region on the map by dragging a box, previews and applies a bulk label and undoes it, sends the
    region to her own queue, comments on an example and sees the guidelines beside it."""
    from gradio_client import Client
    from playwright.sync_api import expect

    boss_api = Client(auth_app, auth=BOSS, verbose=False)
    boss_api.predict("Sarcasm counts as **negative**.", api_name="/set_guidelines")
    ctx, page = sign_in(browser, auth_app, BOSS)
    try:
        expect(page.locator("#annot-progress")).to_contain_text("Unlabeled", timeout=30_000)
        expect(page.locator("#annot-guidelines")).to_contain_text("Sarcasm counts as negative", timeout=30_000)
        # similar examples: of a typed text, then all of them labelled at once, then undone
        page.get_by_text("Similar examples").click()
        page.locator("#annot-similar-text input, #annot-similar-text textarea").first.fill(
            "my flight was delayed for hours again")
        page.locator("#annot-similar-find").click()
        expect(page.locator("#annot-similar-note")).to_contain_text("10 most similar to your text", timeout=30_000)
        first = boss_api.predict(None, "my flight was delayed for hours again", 10, api_name="/similar_examples")
        expect(page.locator("#annot-similar")).to_contain_text(first[0]["text"][:20])
        # the short columns first and the text wrapped: every header lies inside the panel (none scrolled
        # off to the right)
        assert headers_inside(page, "annot-similar") == [
            [c, True] for c in ("id", "label", "model", "similarity", "version", "text")]
        page.locator("#annot-similar-label").get_by_text("neutral").click()
        page.locator("#annot-similar-apply").click()
        expect(page.locator("#annot-similar-note")).to_contain_text("Labelled", timeout=30_000)
        after = boss_api.predict(None, "my flight was delayed for hours again", 10, api_name="/similar_examples")
        assert all(r["label"] == "neutral" for r in after)
        page.locator("#annot-similar-undo").click()
        expect(page.locator("#annot-similar-note")).to_contain_text("Undid", timeout=30_000)
        undone = boss_api.predict(None, "my flight was delayed for hours again", 10, api_name="/similar_examples")
        assert [r["label"] for r in undone] == [r["label"] for r in first]

        # a comment shows in the example's history
        page.get_by_text("Comments", exact=True).click()
        page.locator("#annot-comment input, #annot-comment textarea").first.fill("ask the team about this one")
        page.locator("#annot-comment-add").click()
        page.get_by_text("History of this example").click()
        expect(page.locator("#annot-item-history")).to_contain_text("ask the team about this one", timeout=30_000)

        # the map: drag a box over the left half, preview, apply, undo
        page.get_by_role("tab", name="Map").click()
        page.locator("#map-draw").click()
        legend = page.locator("#map-canvas .map-legend")
        expect(legend).to_contain_text("negative (", timeout=30_000)
        box = page.locator("#map-canvas canvas").bounding_box()
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6, steps=8)
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] - 2, steps=8)
        page.mouse.up()
        selected = page.locator("#map-selected")
        expect(selected).to_contain_text("examples selected", timeout=30_000)
        n = int(re.search(r"([\d,]+)\s+examples selected", selected.inner_text()).group(1).replace(",", ""))
        assert 10 < n < 240
        page.locator("#map-label").get_by_text("positive").click()
        page.locator("#map-preview").click()
        expect(page.locator("#map-message")).to_contain_text("selected examples would change to", timeout=30_000)
        expect(page.locator("#map-sample")).to_contain_text("after")
        assert headers_inside(page, "map-sample") == [[c, True] for c in ("id", "label now", "after", "text")]
        page.locator("#map-apply").click()
        expect(page.locator("#map-message")).to_contain_text("Labelled", timeout=30_000)
        page.locator("#map-colour").get_by_text("model vs. label").click()
        expect(legend).to_contain_text("model disagrees (", timeout=30_000)
        page.locator("#map-undo").click()
        expect(page.locator("#map-message")).to_contain_text("Undid", timeout=30_000)
        page.locator("#map-to-queue").click()
        expect(page.locator("#map-message")).to_contain_text(f"now holds these {n:,} examples", timeout=30_000)
        page.get_by_role("tab", name="Label").click()
        choose_queue(page, "Map selection (yours)")
        expect(page.locator("#annot-progress")).to_contain_text("Map selection", timeout=30_000)
        expect(page.locator("#annot-progress")).to_contain_text("left for you", timeout=30_000)
        assert page.evaluate("window.__pwned") is None
    finally:
        ctx.close()


def test_api_adjudication_of_two_people_who_disagree(auth_app):
    """With two annotations per item, ann and boss label an item differently; the admin sees both
    labels in the adjudication queue and sets the final one."""
    from gradio_client import Client

    ann, boss = (Client(auth_app, auth=who, verbose=False) for who in (ANN, BOSS))
    boss.predict(2, api_name="/set_annotations_per_item")
    try:
        item = ann.predict("search", "Seat 14C", [], api_name="/next_item")
        ann.predict(item["id"], "negative", item["version"], api_name="/save_label")
        again = boss.predict("search", "Seat 14C", [], api_name="/next_item")
        assert again["id"] == item["id"]
        boss.predict(again["id"], "positive", again["version"], api_name="/save_label")
        with pytest.raises(Exception, match="Only admins"):
            ann.predict([], api_name="/next_disagreement")
        case = boss.predict([], api_name="/next_disagreement")
        assert case["item"]["id"] == item["id"]
        assert {r["annotator"]: r["label"] for r in case["labels"]} == {"ann": "negative", "boss": "positive"}
        final = boss.predict(item["id"], "neutral", case["item"]["version"], api_name="/adjudicate")
        assert (final["source"], final["label"]) == ("adjudication", "neutral")
        left = boss.predict([], api_name="/next_disagreement")
        assert left is None or left["item"]["id"] != item["id"]
    finally:
        boss.predict(1, api_name="/set_annotations_per_item")


@pytest.mark.browser
def test_browser_two_guests_without_accounts_are_shown_different_items(app_url, browser):
    """A link shared without accounts: two browsers are two guests (each keeps its own cookie, also
    across a reload), so the same queue hands them different examples, and each one's label and
    undo are recorded under their own guest name."""
    from playwright.sync_api import expect

    from bertdemo.ui.common import GUEST_COOKIE, guest_name

    contexts = [browser.new_context(viewport={"width": 1300, "height": 1400}) for _ in range(2)]
    try:
        shown, keys = [], []
        for ctx in contexts:
            page = ctx.new_page()
            page.goto(app_url)
            page.get_by_role("tab", name="Annotate").click()
            choose_queue(page, "Text search")
            page.locator("#annot-search input, #annot-search textarea").first.fill("a")
            page.locator("#annot-load").click()
            expect(page.locator("#annot-progress")).to_contain_text("for the team", timeout=30_000)
            shown.append(page.locator("#annot-text textarea").input_value())
            keys.append({c["name"]: c["value"] for c in ctx.cookies()}.get(GUEST_COOKIE))
            page.reload()
            assert {c["name"]: c["value"] for c in ctx.cookies()}.get(GUEST_COOKIE) == keys[-1]  # kept
        assert shown[0] and shown[1] and shown[0] != shown[1]
        assert keys[0] and keys[1] and keys[0] != keys[1]
        # each labels their item and undoes it: the change and its undo are recorded under their own name
        for ctx, key in zip(contexts, keys):
            page = ctx.pages[0]
            page.get_by_role("tab", name="Annotate").click()
            choose_queue(page, "Text search")
            page.locator("#annot-search input, #annot-search textarea").first.fill("a")
            page.locator("#annot-load").click()
            expect(page.locator("#annot-progress")).to_contain_text("for the team", timeout=30_000)
            page.locator("#annot-progress").click()  # focus off the search box, so keys reach the page
            page.keyboard.press("2")
            expect(page.locator("#annot-progress")).to_contain_text("1 seen this session", timeout=30_000)
            page.keyboard.press("u")
            expect(page.locator("#annot-info")).to_contain_text("back to", timeout=30_000)
            page.get_by_text("History of this example").click()
            history = page.locator("#annot-item-history")
            expect(history).to_contain_text("undo", timeout=30_000)
            expect(history).to_contain_text(guest_name(key))
    finally:
        for ctx in contexts:
            ctx.close()


@pytest.mark.browser
def test_browser_an_annotator_is_not_shown_what_only_admins_may_use(auth_app, browser):
    """The page is shaped by role: no team settings or adjudication, no Import, no Apply to all for
    an annotator (the server refuses them anyway); an admin sees them; both see Sign out."""
    from playwright.sync_api import expect

    for who, admin in ((ANN, False), (BOSS, True)):
        ctx, page = sign_in(browser, auth_app, who)
        try:
            expect(page.locator("#sign-out")).to_be_visible(timeout=30_000)
            page.get_by_role("tab", name="Team", exact=True).click()
            expect(page.locator("#team-note")).to_be_visible(timeout=30_000)
            if admin:
                expect(page.locator("#annot-overlap")).to_be_visible(timeout=30_000)
            else:  # the settings, progress and adjudication are not there for her
                expect(page.locator("#annot-overlap")).to_be_hidden(timeout=30_000)
                expect(page.locator("#adj-next")).to_be_hidden()
            page.get_by_role("tab", name="Import / export").click()
            expect(page.locator("#annot-export")).to_be_visible(timeout=30_000)  # everyone may export
            if admin:
                expect(page.locator("#annot-import")).to_be_visible()
            else:
                expect(page.locator("#annot-import")).to_be_hidden()
        finally:
            ctx.close()
