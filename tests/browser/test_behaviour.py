"""The behaviour tests panel in a real browser (Debian chromium): the starter suite in the table,
a test made from a text (preview, save as must pass), the suite run on v1 with its results and
failing cases, a review's text handed to the form, and Annotate's form starting from the item on
screen. Screenshots go to BERTDEMO_SCREENSHOTS when it is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _shot(pg, name: str) -> None:
    folder = os.environ.get("BERTDEMO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _has(pg, selector: str, text: str, timeout: float = 60000) -> None:
    pg.wait_for_function(f"document.querySelector({selector!r})?.innerText.includes({text!r})", timeout=timeout)


def _box(pg, selector: str):  # noqa: ANN202 - a Locator
    """A text box's field: Gradio renders a textarea or an input."""
    return pg.locator(f"{selector} textarea, {selector} input").first


def _pick(pg, selector: str, option: str) -> None:
    pg.locator(f"{selector} input").click()
    pg.get_by_role("option", name=option, exact=True).click()


@pytest.mark.browser
def test_make_mark_and_run_a_behaviour_test(page):
    pg = page
    pg.get_by_role("tab", name="Train").click()
    _has(pg, "#versions-table", "v1")
    _has(pg, "#behaviour-tests", "mft_positive_adjective")  # the starter suite, seeded on first use
    pg.locator("#behaviour-maker").get_by_text("Make a behaviour test from a text").click()
    _box(pg, "#behaviour-text").fill("My flight is delayed again and nobody tells us why")
    _pick(pg, "#behaviour-expected", "negative")
    pg.locator("#behaviour-preview").click()
    _has(pg, "#behaviour-shown", "label negative")
    _box(pg, "#behaviour-name").fill("delays are negative")
    pg.locator("#behaviour-must-pass input").check()
    pg.locator("#behaviour-save").click()
    _has(pg, "#behaviour-message", "Saved behaviour test 'delays are negative'")
    _has(pg, "#behaviour-tests", "delays are negative")
    # the suite on v1 (PyTorch serves in the launched app: no int8 graph, the line says so)
    _pick(pg, "#behaviour-version", "v1")
    pg.locator("#behaviour-run").click()
    _has(pg, "#behaviour-run-message", "Ran the suite on v1: pytorch", timeout=180000)
    assert "The int8 path was not run" in pg.locator("#behaviour-run-message").inner_text()
    _has(pg, "#behaviour-results", "delays are negative")
    _has(pg, "#behaviour-tests", "(v1, pytorch)")  # the last failure rate, stored
    _shot(pg, "behaviour-train")
    # a review's text (a clicked flip fills it) becomes the form's text
    _box(pg, "#compare-text").fill("the crew was great")
    pg.locator("#behaviour-from-flip").click()
    pg.wait_for_function("document.querySelector('#behaviour-text textarea, #behaviour-text input')?.value"
                         " === 'the crew was great'", timeout=30000)
    # Annotate: the form starts from the item on screen
    pg.get_by_role("tab", name="Annotate").click()
    pg.locator("#annot-load").click()
    pg.wait_for_function("document.querySelector('#annot-text textarea')?.value.length > 0", timeout=60000)
    item = pg.locator("#annot-text textarea").input_value()
    pg.locator("#annot-behaviour-maker").get_by_text("Make a behaviour test from this example").click()
    pg.wait_for_function("document.querySelector('#annot-behaviour-text textarea, #annot-behaviour-text input')"
                         f"?.value === {item!r}", timeout=30000)
    _pick(pg, "#annot-behaviour-kind", "invariance (a perturbation must not change the label)")
    pg.locator("#annot-behaviour-preview").click()
    _has(pg, "#annot-behaviour-shown", "same label as the text")
    _shot(pg, "behaviour-annotate")
