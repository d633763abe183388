"""The Predict tab end to end: `python app.py` launched on a fresh data dir (first start trains
version 1), driven through gradio_client and through a real browser."""

import pandas as pd
import pytest
from gradio_client import Client, handle_file

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_api_lists_the_documented_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/predict", "/explain", "/predict_csv", "/tokenize"} <= names


def test_api_predict_returns_label_confidences(client):
    r = client.predict("@united worst service ever, lost my bag", api_name="/predict")
    assert r["label"] in ("negative", "neutral", "positive")
    confs = {c["label"]: c["confidence"] for c in r["confidences"]}
    assert set(confs) == {"negative", "neutral", "positive"} and sum(confs.values()) == pytest.approx(1, abs=1e-4)
    assert r["label"] == max(confs, key=confs.get)


def test_api_explain_returns_tokens_with_attributions(client):
    highlighted, raw = client.predict("thanks for the great flight", "predicted", False, api_name="/explain")
    assert [h["token"] for h in highlighted] == ["thanks", "for", "the", "great", "flight"]
    assert raw["tokens"][0] == {"token": "[CLS]", "attribution": 0.0} or raw["tokens"][0]["token"] == "[CLS]"
    assert max(abs(t["attribution"]) for t in raw["tokens"]) == pytest.approx(1.0)


@pytest.mark.parametrize("text, fragment", [
    ("   ", "empty"), ("x" * 100_000, "limit is 2,000"), ("http://t.co/abc", "Nothing is left"),
])
def test_api_bad_text_gets_the_message_not_a_crash(client, text, fragment):
    with pytest.raises(Exception, match=fragment):
        client.predict(text, api_name="/predict")
    assert client.predict("still alive?", api_name="/predict")["label"]  # the app keeps serving


def test_api_predict_csv(client, tmp_path):
    src = tmp_path / "tweets.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": ["lovely crew", "late again", ""]}).to_csv(src, index=False)
    path, summary = client.predict(handle_file(str(src)), api_name="/predict_csv")
    out = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False)
    assert out["predicted_label"][:2].isin(["negative", "neutral", "positive"]).all()
    assert out["error"][2] != "" and "Classified 2 of 3 rows" in summary


def test_api_csv_over_the_cap_is_refused(client, tmp_path):
    big = tmp_path / "big.csv"  # the test app runs with BERTDEMO_MAX_UPLOAD_MB=1
    big.write_text("text\n" + ("y" * 99 + "\n") * 30_000)
    with pytest.raises(Exception, match="limit is 1 MB"):
        client.predict(handle_file(str(big)), api_name="/predict_csv")


@pytest.mark.browser
def test_browser_predict_shows_label_and_token_views(page):
    page.fill("#predict-text textarea", "Jim Henson was a puppeteer")
    page.click("#predict-button")
    label = page.locator("#predict-label")
    label.locator(".output-class").wait_for(timeout=60_000)
    assert label.inner_text().split("\n")[1] in ("negative", "neutral", "positive")
    expect(page.locator("#predict-info")).to_contain_text("cleaned text", timeout=30_000)
    # tokenization table: WordPieces with [CLS]/[SEP]
    table = page.locator("#token-table")
    table.get_by_text("##eer").first.wait_for(timeout=30_000)
    expect(table).to_contain_text("[CLS]")
    expect(table).to_contain_text("[SEP]")
    # attributions tab: highlighted words
    page.get_by_role("tab", name="Attributions").click()
    page.locator("#attributions").get_by_text("puppeteer").first.wait_for(timeout=60_000)
    # attention tab: a heatmap is drawn
    page.get_by_role("tab", name="Attention").click()
    page.locator("#attention-plot img, #attention-plot svg, #attention-plot canvas").first.wait_for(timeout=60_000)


@pytest.mark.browser
def test_browser_empty_text_shows_an_error(page):
    page.fill("#predict-text textarea", "   ")
    page.click("#predict-button")
    page.get_by_text("The text is empty").first.wait_for(timeout=30_000)
