import numpy as np
import pytest

from bertdemo.model import explain, views


@pytest.fixture(scope="module")
def clf(trained_services):
    return trained_services.registry.active()


def test_integrated_gradients_is_complete_and_normalised(clf):
    a = explain.integrated_gradients(clf, "the crew was rude and the flight was late")
    assert a.tokens[0] == "[CLS]" and a.tokens[-1] == "[SEP]"
    assert len(a.tokens) == len(a.scores) == len(a.word_ids) == len(a.spans)
    assert max(abs(s) for s in a.scores) == pytest.approx(1.0)
    assert a.delta < 0.05  # attributions sum to the logit difference from the baseline
    assert a.target == max(a.probs, key=a.probs.get)


def test_target_class_can_be_chosen(clf):
    a = explain.integrated_gradients(clf, "great crew", target="negative")
    b = explain.integrated_gradients(clf, "great crew", target="positive")
    assert a.target == "negative" and b.target == "positive"
    assert not np.allclose(a.scores, b.scores)


def test_merge_words_uses_the_original_text(clf):
    a = explain.integrated_gradients(clf, "Jim Henson was a puppeteer")
    words, scores = explain.merge_words(a)
    assert words == ["[CLS]", "Jim", "Henson", "was", "a", "puppeteer", "[SEP]"]
    assert max(abs(s) for s in scores) == pytest.approx(1.0)
    # the word's score is the sum of its pieces (before renormalisation)
    pieces = a.scores[5] + a.scores[6]
    raw = [a.scores[0], a.scores[1], a.scores[2], a.scores[3], a.scores[4], pieces, a.scores[7]]
    np.testing.assert_allclose(scores, np.array(raw) / max(abs(x) for x in raw), atol=1e-6)


def test_highlighted_drops_specials_unless_asked(clf):
    a = explain.integrated_gradients(clf, "puppeteer")
    assert [t for t, _ in explain.highlighted(a)] == ["puppet", "##eer"]
    assert [t for t, _ in explain.highlighted(a, merge=True)] == ["puppeteer"]
    assert explain.highlighted(a, show_special=True)[0][0] == "[CLS]"


def test_attention_map_mean_and_head(clf):
    mean = explain.attention_map(clf, "a short text", layer=2)
    head = explain.attention_map(clf, "a short text", layer=2, head=3)
    assert mean.weights.shape == head.weights.shape == (5, 5)
    np.testing.assert_allclose(mean.weights.sum(1), 1, atol=1e-5)
    assert not np.allclose(mean.weights, head.weights)
    with pytest.raises(ValueError, match="The layer must be a whole number from 1 to 6, got 7"):
        explain.attention_map(clf, "x", layer=7)
    with pytest.raises(ValueError, match="The head must be a whole number from 1 to 12, got 13"):
        explain.attention_map(clf, "x", layer=1, head=13)


def test_token_table_columns(clf):
    t = explain.token_table(views.tokenize(clf, "hi", pad_to=5))
    assert list(t.columns) == ["position", "token", "id", "special", "attention_mask", "segment", "word"]
    assert t["token"].tolist() == ["[CLS]", "hi", "[SEP]", "[PAD]", "[PAD]"]
    assert t["attention_mask"].tolist() == [1, 1, 1, 0, 0]


def test_integrated_gradients_computes_no_weight_gradients_and_restores_flags(clf):
    flags = [p.requires_grad for p in clf.model.parameters()]
    assert all(p.grad is None for p in clf.model.parameters())  # fit() frees the last step's gradients
    explain.integrated_gradients(clf, "the crew was rude")
    assert [p.requires_grad for p in clf.model.parameters()] == flags
    assert all(p.grad is None for p in clf.model.parameters())


def test_bf16_attributions_match_exact_fp32_ones(clf):
    text = "the crew was rude and the flight was late"
    fast, exact = explain.integrated_gradients(clf, text), explain.integrated_gradients(clf, text, exact=True)
    assert fast.target == exact.target
    assert np.corrcoef(fast.scores, exact.scores)[0, 1] > 0.999
    assert exact.delta < 0.01
