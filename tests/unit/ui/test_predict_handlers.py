"""The Predict tab's handlers (bertdemo.ui.predict, bertdemo.ui.predict_tokens) called as plain
functions on the packaged MiniLM BERT (its untrained head: the handlers are tested, not the model),
and the tab's wiring read from the Blocks config: the headers of the empty token table, the
attention plot's listeners, what an error clears. No server, no browser."""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace

import gradio as gr
import pandas as pd
import pytest

from bertdemo.actions.predict import PredictActions
from bertdemo.config import Settings
from bertdemo.model.classifier import Classifier
from bertdemo.model.explain import TOKEN_COLUMNS
from bertdemo.training.registry import NoModelError
from bertdemo.ui import predict, predict_tokens
from bertdemo.ui.binding import bind


@pytest.fixture(scope="module")
def clf(base_clf) -> Classifier:
    return Classifier(base_clf.model, base_clf.tokenizer, base_clf.labels, base_clf.device, name="v7")


def actions_for(clf, tmp_path) -> PredictActions:
    """PredictActions on a stand-in for Services whose registry serves `clf`."""
    def active():
        if clf is None:
            raise NoModelError("No model version is active.")
        return clf

    services = SimpleNamespace(settings=Settings(data_dir=tmp_path, serving="bf16"),
                               registry=SimpleNamespace(active=active, problem=None),
                               jobs=SimpleNamespace(status=lambda: SimpleNamespace(running=False)))
    return PredictActions(services)


@pytest.fixture
def actions(clf, tmp_path) -> PredictActions:
    return actions_for(clf, tmp_path)


def test_classify_gives_the_label_and_the_note_on_what_the_model_saw(actions, clf):
    r = predict.classify(actions, "@united the crew was wonderful http://t.co/x")
    assert r.confidences == pytest.approx(clf.predict(["the crew was wonderful"])[0].probs)
    assert r.info == "Model version **v7** saw the cleaned text:\n\n> the crew was wonderful"


def test_an_error_clears_the_note_the_label_and_every_view(actions):
    with pytest.raises(gr.Error, match="The text is empty"):
        predict.classify(actions, "   ")
    assert predict.cleared() == (None, "", None, None, None, "", None, "")  # label, note, 6 token views


def test_api_handlers_answer_in_label_format(actions, clf):
    expected = clf.predict(["lovely crew"])[0]
    one = predict.predict_api(actions, "lovely crew")
    assert one["label"] == expected.label
    assert [c["label"] for c in one["confidences"]] == sorted(expected.probs, key=expected.probs.get, reverse=True)
    assert predict.predict_batch(actions, ["lovely crew", "lovely crew"]) == [one, one]
    with pytest.raises(gr.Error, match="Send a list of texts"):
        predict.predict_batch(actions, "lovely crew")


def test_predict_csv_returns_the_file_and_its_summary(actions, clf, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["lovely crew", "http://t.co/abc"]}).to_csv(src, index=False)
    out = predict.predict_csv(actions, str(src))
    counts = ", ".join(f"{lab}: {int(lab == clf.predict(['lovely crew'])[0].label)}" for lab in clf.labels)
    assert re.fullmatch(rf"Classified 1 of 2 rows in \d+\.\d s \({counts}\)\. 1 rows could not be "
                        r"classified: see the `error` column\.", out.summary)
    assert pd.read_csv(out.path, encoding="utf-8-sig").columns.tolist() == [
        "text", "predicted_label", "p_negative", "p_neutral", "p_positive", "error"]
    with pytest.raises(gr.Error, match="Choose a CSV file first"):
        predict.predict_csv(actions, None)


def test_tokens_table_has_the_headers_the_empty_table_shows(actions):
    table = predict_tokens.tokens(actions, "Jim Henson was a puppeteer", 10)
    assert tuple(table.columns) == TOKEN_COLUMNS
    assert table["token"].tolist() == ["[CLS]", "jim", "henson", "was", "a", "puppet", "##eer", "[SEP]", "[PAD]", "[PAD]"]
    with pytest.raises(gr.Error, match="choose a padded length of at least 8"):
        predict_tokens.tokens(actions, "Jim Henson was a puppeteer", 5)


def test_the_caption_names_the_method_on_screen(actions, clf):
    label = clf.predict(["thanks for the great flight"])[0].label
    quick = predict_tokens.quick_explain(actions, "thanks for the great flight", "predicted", True)
    assert [w for w, _ in quick.highlighted] == ["thanks", "for", "the", "great", "flight"]
    assert predict_tokens.method_caption(quick.raw) == (
        f"Showing **Gradient × Input** towards **{label}**: the instant first view (one backward pass); "
        "Integrated Gradients replaces it when it is ready.")
    full = predict_tokens.explain(actions, "thanks for the great flight", "neutral", False)
    delta = full.raw["convergence_delta"]
    assert predict_tokens.method_caption(full.raw) == (
        f"Showing **Integrated Gradients** towards **neutral** (16 steps, convergence delta {delta:.3g}).")
    assert predict_tokens.method_caption(None) == predict_tokens.method_caption({}) == ""


def test_attention_draws_the_layer_and_head_asked_for(actions):
    mean = predict_tokens.attention(actions, "a bat flew", 2, 0)
    assert mean.caption == "Attention of layer 2, mean over heads."
    assert mean.plot.axes[0].get_title() == "layer 2, mean over heads"
    one = predict_tokens.attention(actions, "a bat flew", 6.0, 12.0)
    assert one.caption == "Attention of layer 6, head 12."
    with pytest.raises(gr.Error, match="The layer"):
        predict_tokens.attention(actions, "a bat flew", 7, 0)


def test_slider_bounds_follow_the_serving_model(actions, tmp_path):
    assert predict_tokens.slider_bounds(actions) == (gr.update(maximum=6), gr.update(maximum=12))
    assert predict_tokens.slider_bounds(actions_for(None, tmp_path)) == (gr.update(), gr.update())


def test_bind_shows_gradio_the_remaining_parameters_docstring_and_defaults(actions):
    bound = bind(predict_tokens.tokens, actions)
    assert list(inspect.signature(bound).parameters) == ["text", "padded_length"]
    assert bound.__doc__ == predict_tokens.tokens.__doc__
    assert "actions" not in bound.__annotations__
    assert bound("hello world", 0)["token"].tolist() == ["[CLS]", "hello", "world", "[SEP]"]

    def layered(who: str, text: str, layer: int = 0) -> str:
        return f"{who} {text} {layer}"

    six = bind(layered, "me", layer=6)
    assert inspect.signature(six).parameters["layer"].default == 6
    assert six("hi") == "me hi 6" and six("hi", layer=2) == "me hi 2"
    with pytest.raises(TypeError, match="no parameter"):
        bind(layered, "me", depth=1)


@pytest.fixture
def tab_config(actions) -> dict:
    with gr.Blocks() as demo:
        load = predict.build(actions)
    assert list(inspect.signature(load.handler).parameters) == []
    return demo.get_config_file()


def _component(config: dict, elem_id: str) -> dict:
    return next(c for c in config["components"] if c["props"].get("elem_id") == elem_id)


def test_the_empty_token_table_shows_real_headers(tab_config):
    table = _component(tab_config, "token-table")
    assert table["props"]["value"]["headers"] == list(TOKEN_COLUMNS)


def test_layer_and_head_redraw_on_typing_and_dragging_and_the_last_value_wins(tab_config):
    plot = _component(tab_config, "attention-plot")["id"]
    layer = _component(tab_config, "attention-layer")["id"]
    head = _component(tab_config, "attention-head")["id"]
    redraw = [d for d in tab_config["dependencies"] if plot in d["outputs"] and len(d["targets"]) > 1]
    assert len(redraw) == 1
    assert sorted(map(tuple, redraw[0]["targets"])) == sorted(
        [(layer, "input"), (layer, "release"), (head, "input"), (head, "release")])
    assert redraw[0]["trigger_mode"] == "always_last"


def test_an_error_in_classify_clears_the_note_and_clear_empties_it(tab_config):
    info = _component(tab_config, "predict-info")["id"]
    classify = next(d for d in tab_config["dependencies"] if d["api_name"] == "classify")
    failure = [d for d in tab_config["dependencies"] if d.get("trigger_only_on_failure") and info in d["outputs"]]
    assert len(failure) == 1 and failure[0]["trigger_after"] == classify["id"]
    ids = [_component(tab_config, e)["id"] for e in ("predict-label", "predict-info", "token-table", "attributions",
                                                      "attributions-method", "attention-plot", "attention-caption")]
    assert set(ids) <= set(failure[0]["outputs"]) and len(failure[0]["outputs"]) == len(predict.cleared())
    clear = next(c for c in tab_config["components"] if c["type"] == "button" and c["props"].get("value") == "Clear")
    clear_deps = [d for d in tab_config["dependencies"] if (clear["id"], "click") in map(tuple, d["targets"])]
    assert any(info in d["outputs"] for d in clear_deps)


def test_the_method_caption_follows_both_attribution_views(tab_config):
    method = _component(tab_config, "attributions-method")["id"]
    explain = next(d for d in tab_config["dependencies"] if d["api_name"] == "explain")
    captions = [d for d in tab_config["dependencies"] if d["outputs"] == [method]]
    after = {d["trigger_after"] for d in captions}
    assert explain["id"] in after  # the refined view
    assert explain["trigger_after"] in after  # the instant view it follows
