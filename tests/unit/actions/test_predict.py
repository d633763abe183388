"""The Predict tab's adapters, with every bad input the issue lists."""

from dataclasses import replace

import pandas as pd
import pytest

from bertdemo.actions.predict import PredictActions
from bertdemo.datasets import CSVError
from bertdemo.errors import BadInput, UserError
from bertdemo.text import EmptyTextError, TextTooLongError
from bertdemo.training.registry import NoModelError


@pytest.fixture(scope="module")
def actions(trained_services):
    return PredictActions(trained_services)


def test_predict_returns_label_format(actions):
    r = actions.predict("@united the crew was wonderful http://t.co/x")
    assert set(r.confidences) == {"negative", "neutral", "positive"}
    assert sum(r.confidences.values()) == pytest.approx(1, abs=1e-5)
    assert r.label == max(r.confidences, key=r.confidences.get)
    assert r.cleaned == "the crew was wonderful" and r.version == "v1" and r.warnings == []
    api = r.as_label()  # what the HTTP API's /predict returns: gr.Label's client format
    assert api["label"] == r.label
    assert [c["label"] for c in api["confidences"]] == sorted(r.confidences, key=r.confidences.get, reverse=True)
    assert [c["confidence"] for c in api["confidences"]] == sorted(r.confidences.values(), reverse=True)


@pytest.mark.parametrize("text, error, fragment", [
    ("", EmptyTextError, "empty"), ("  \n\t ", EmptyTextError, "empty"),
    ("x" * 100_000, TextTooLongError, "100,000 characters"),
    ("https://example.com/page", EmptyTextError, "Nothing is left"),
    ("@united", EmptyTextError, "Nothing is left"),
])
def test_bad_text_gets_a_user_error(actions, text, error, fragment):
    with pytest.raises(error, match=fragment):
        actions.predict(text)
    assert issubclass(error, UserError)


def test_control_characters_are_cleaned_not_fatal(actions):
    r = actions.predict("bad\x00 service\x1b[31m \u202eagain")
    assert "\x00" not in r.cleaned and r.label in r.confidences


def test_only_emoji_predicts_with_a_warning(actions):
    r = actions.predict("😡😡😡")
    assert any("[UNK]" in w for w in r.warnings)


@pytest.mark.parametrize("pad_to", [-5, 1e9, "abc", 2.5, float("nan"), True, [6]])
def test_tokens_refuses_a_padded_length_that_is_not_a_whole_number_in_range(actions, pad_to):

    with pytest.raises(BadInput, match="padded length must be a whole number from 0 .no padding. to 128"):
        actions.tokens("hello world", pad_to)


def test_tokens_padded_length_none_zero_or_text(actions):
    assert len(actions.tokens("hello world", None)) == len(actions.tokens("hello world", 0)) == 4
    assert len(actions.tokens("hello world", "6")) == len(actions.tokens("hello world", 6.0)) == 6


def test_tokens_table_with_padding(actions):
    t = actions.tokens("hello world", 6)
    assert t["token"].tolist() == ["[CLS]", "hello", "world", "[SEP]", "[PAD]", "[PAD]"]
    with pytest.raises(ValueError, match="The text has 4 tokens; choose a padded length of at least 4"):
        actions.tokens("hello world", 3)
    with pytest.raises(ValueError, match="choose a padded length of at least 4"):
        actions.tokens("hello world", 1)  # under [CLS] + [SEP]: the same answer, not the view's 2..512 bound


def test_tokens_tokenizes_the_text_once(actions, monkeypatch):
    from bertdemo.model import views

    calls = []
    real = views.tokenize
    monkeypatch.setattr(views, "tokenize", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    assert actions.tokens("hello world", 6)["attention_mask"].tolist() == [1, 1, 1, 1, 0, 0]
    assert calls == [{"pad_to": 6}]


def test_explain_api_shape(actions):
    r = actions.explain("delayed again", "negative", True)
    api = r.as_api()
    assert api["target"] == "negative" and api["tokens"][0]["token"] == "[CLS]"
    assert [w for w, _ in r.highlighted] == ["delayed", "again"]
    with pytest.raises(ValueError, match="Unknown class 'angry'"):
        actions.explain("x", "angry", False)


def test_explain_first_view_is_gradient_x_input_of_the_predicted_label(actions):
    quick = actions.explain("delayed again, lost my bag", None, True, quick=True)
    full = actions.explain("delayed again, lost my bag", None, True)
    predicted = actions.predict("delayed again, lost my bag")
    assert quick.attribution.target == full.attribution.target == predicted.label
    assert quick.attribution.probs == full.attribution.probs == predicted.confidences
    q, f = quick.as_api(), full.as_api()
    assert (q["method"], q["steps"], q["convergence_delta"]) == ("gradient_x_input", None, None)
    assert (f["method"], f["steps"]) == ("integrated_gradients", 16) and f["convergence_delta"] >= 0
    assert [w for w, _ in quick.highlighted] == [w for w, _ in full.highlighted]
    assert max(abs(s) for s in quick.attribution.scores) == pytest.approx(1.0)  # normalised, [CLS]/[SEP] included


def test_predict_batch_matches_one_by_one_and_refuses_bad_lists(actions):
    texts = ["lovely crew", "lost my bag again", "flight 123 is at 6pm"]
    out = actions.predict_batch(texts)
    assert [r.label for r in out] == [actions.predict(t).label for t in texts]
    assert out[1].as_label()["confidences"][0]["confidence"] == max(out[1].confidences.values())
    for bad, fragment in [("one string", "Send a list"), ([], "empty"), (["ok", None], "Text 2 of 2 is not a string"),
                          (["ok", "   "], "Text 2 of 2: The text is empty"), (["x"] * 257, "At most 256")]:
        with pytest.raises(BadInput, match=fragment):
            actions.predict_batch(bad)


def test_predict_csv_round_trip(actions, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3, 4], "text": ["great flight", "", "=cmd|' /C calc'!A0", "http://only.link"]}).to_csv(
        src, index=False)
    r = actions.predict_csv(str(src))
    out = pd.read_csv(r.path, encoding="utf-8-sig", keep_default_na=False)
    assert out.columns.tolist() == ["id", "text", "predicted_label", "p_negative", "p_neutral", "p_positive", "error"]
    assert (r.rows, r.predicted, r.problems) == (4, 2, 2)
    assert out["predicted_label"][0] in ("negative", "neutral", "positive") and out["error"][0] == ""
    assert "empty" in out["error"][1] and "Nothing is left" in out["error"][3]
    assert out["text"][2].startswith("'=")  # formula injection escaped in the download
    assert "Classified 2 of 4 rows" in r.summary()


@pytest.mark.parametrize("content, fragment", [
    (b"tweet\nhello\n", "needs a 'text' column"), (b"", "empty"),
    ("text\nvoil\xe0 \x81\n".encode("latin-1"), "not UTF-8"),
])
def test_predict_csv_bad_files(actions, tmp_path, content, fragment):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(CSVError, match=fragment):
        actions.predict_csv(str(p))


def test_predict_csv_50_mb_is_refused_before_parsing(actions, tmp_path):
    p = tmp_path / "big.csv"
    with open(p, "wb") as f:
        f.write(b"text\n")
        f.write((b"x" * 99 + b"\n") * (50 * 2**20 // 100))
    with pytest.raises(CSVError, match=r"The file is 50.0 MB; the limit is 20 MB"):
        actions.predict_csv(str(p))


def test_no_model_yet_says_training_is_running(services):
    with pytest.raises(NoModelError, match="No model version is active"):
        PredictActions(services).predict("hello")


def test_predict_csv_over_the_row_cap_is_refused_with_what_to_do(trained_services, tmp_path):
    capped = PredictActions(replace(trained_services, settings=trained_services.settings.with_(max_csv_rows=3)))
    src = tmp_path / "five.csv"
    pd.DataFrame({"text": [f"flight {i}" for i in range(5)]}).to_csv(src, index=False)
    with pytest.raises(BadInput, match=r"The file has 5 rows; one batch prediction takes at most 3 "
                                       r"\(BERTDEMO_MAX_CSV_ROWS\)\. Split the file"):
        capped.predict_csv(str(src))
    src.write_text("text\nflight 1\nflight 2\nflight 3\n")
    assert capped.predict_csv(str(src)).rows == 3  # at the cap: scored


def test_batch_jobs_score_one_at_a_time_while_single_predictions_go_on(actions, monkeypatch):
    import threading

    clf = actions.model()
    real_predict, busy, most = clf.predict, [0], [0]
    lock, inside, release = threading.Lock(), threading.Event(), threading.Event()

    def held_predict(texts, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if len(texts) > 1:  # a batch job: count how many run at once, and hold the first until released
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            inside.set()
            release.wait(30)
            with lock:
                busy[0] -= 1
        return real_predict(texts, *a, **k)

    monkeypatch.setattr(clf, "predict", held_predict)
    jobs = [threading.Thread(target=actions.predict_batch, args=(["great crew", "lost my bag"],)) for _ in range(3)]
    for t in jobs:
        t.start()
    assert inside.wait(30)
    single = actions.predict("thanks for the flight")  # answered while a batch job is mid-way
    answered_while_busy = busy[0] == 1
    release.set()
    for t in jobs:
        t.join(30)
    assert single.label in single.confidences and answered_while_busy
    assert most[0] == 1  # never two batch jobs at once
