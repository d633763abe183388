"""The Embeddings tab end to end on the launched app.py: the `compare_word` HTTP API with
gradio_client, and the tab in Debian chromium with playwright (plots drawn, presets switch)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bertdemo.actions.presets import PRESETS

BAT = PRESETS["bat"]


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def test_compare_word_api(client):
    text = BAT.text + "\nThis line has no such word."
    out = client.predict(text, "BAT", 2, api_name="/compare_word")
    assert out["word"] == "bat" and out["layer"] == 2 and out["model"].startswith("fine-tuned")
    assert [o["label"] for o in out["occurrences"]] == ["S1.1", "S1.2", "S2.1", "S3.1"]
    assert [s["line"] for s in out["skipped"]] == [4]
    sims = np.array(out["similarity"])
    assert sims.shape == (4, 4)
    np.testing.assert_allclose(sims, sims.T, atol=1e-5)
    np.testing.assert_allclose(np.diag(sims), 1.0, atol=1e-5)
    assert sims[0, 1] < 0.99  # one word, two contexts, two vectors
    np.testing.assert_allclose(out["static_similarity"], 1.0, atol=1e-5)
    default = client.predict(BAT.text, "bat", api_name="/compare_word")  # layer defaults to the last
    assert default["layer"] == default["num_layers"] == 6


@pytest.mark.parametrize("sentences, word, message", [
    (BAT.text, "", "The word is empty"),
    ("\n".join(["A bat."] * 200), "bat", "200 sentences; the limit is 50"),
    ("A bat flew out of the cave.", "bat", "occurs once"),
    (BAT.text, "cricket bat", "one word"),
    (BAT.text, "bat" * 200, "600 characters long; the limit is 100"),
])
def test_compare_word_api_bad_input(client, sentences, word, message):
    with pytest.raises(Exception, match=re.escape(message)):
        client.predict(sentences, word, 2, api_name="/compare_word")


def test_browser_tab_plots_and_preset_switch(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Embeddings").click()
    summary = page.locator("#emb-summary")
    # opening the tab draws the bat preset on the active fine-tuned version
    expect(summary).to_contain_text("Best layer for telling the senses apart", timeout=60_000)
    expect(summary).to_contain_text("4 occurrences")
    for plot in ("#emb-heatmap", "#emb-static", "#emb-pca", "#emb-lines"):
        expect(page.locator(f"{plot} img")).to_be_visible(timeout=30_000)
    first = page.locator("#emb-heatmap img").get_attribute("src")

    page.locator("#emb-preset input").click()
    page.get_by_role("option", name="apple").click()
    expect(page.locator("#emb-word :is(input, textarea)")).to_have_value("apple")
    expect(page.locator("#emb-sentences textarea")).to_have_value(PRESETS["apple"].text)
    expect(page.locator("#emb-explanation")).to_contain_text("uncased")
    expect(summary).to_contain_text("of apple", timeout=30_000)
    expect(page.locator("#emb-heatmap img")).not_to_have_attribute("src", first or "", timeout=30_000)

    # bad input answers with a message, and the tab keeps working
    page.locator("#emb-word :is(input, textarea)").fill("")
    page.locator("#emb-compare").click()
    expect(page.get_by_text("The word is empty").first).to_be_visible(timeout=30_000)

    # corpus neighbours for the first occurrence
    page.locator("#emb-word :is(input, textarea)").fill("apple")
    page.locator("#emb-compare").click()
    page.get_by_text("Corpus neighbours").click()
    page.locator("#emb-neighbours-button").click()
    expect(page.locator("#emb-neighbours-info")).to_contain_text("stored examples", timeout=60_000)


def test_summary_names_best_layer_pooling_and_skipped_lines(base_clf):
    from bertdemo.model.embeddings import compare
    from bertdemo.ui.embeddings import summary_markdown

    c = compare(base_clf, BAT.text, "bat", layer=5, senses=BAT.senses)
    md = summary_markdown(c)
    assert f"apart: layer {c.best_layer()}**" in md and "At the chosen layer 5" in md
    md = summary_markdown(compare(base_clf, "Bats use echolocation.\nNo word here.\nDolphins use echolocation.",
                                  "echolocation"))
    assert "3 WordPieces (echo ##lo ##cation)" in md and "**mean**" in md
    assert "line 2: the word 'echolocation' is not in it" in md
    assert "Best layer" not in md  # no senses known for free text
