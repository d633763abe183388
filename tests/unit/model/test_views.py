"""The inspection views (bertdemo.model.views) on the packaged MiniLM BERT: the tokenization of one
text, every layer's hidden states, and attention maps that equal eager attention's."""

import numpy as np
import pytest
import torch

from bertdemo.config import packaged_model_path
from bertdemo.model import views
from bertdemo.model.classifier import Classifier


def test_tokenize_shows_specials_mask_and_padding(base_clf):
    v = views.tokenize(base_clf, "Jim Henson was a puppeteer", pad_to=10)
    assert v.tokens == ["[CLS]", "jim", "henson", "was", "a", "puppet", "##eer", "[SEP]", "[PAD]", "[PAD]"]
    assert v.ids[:2] == [101, 3958] and v.ids[-3:] == [102, 0, 0]
    assert v.attention_mask == [1] * 8 + [0] * 2
    assert v.special == [True] + [False] * 6 + [True] * 3
    assert v.word_ids[5:7] == [4, 4] and not v.truncated
    assert (v.length, v.real_tokens) == (8, 8)


def test_tokenize_marks_truncation(base_clf):
    v = views.tokenize(base_clf, "word " * 300)
    assert v.truncated and v.length == 302 and len(v.ids) == base_clf.max_length == 128
    with pytest.raises(ValueError, match="The padded length must be a whole number from 2 to 512, got 1000"):
        views.tokenize(base_clf, "x", pad_to=1000)


def test_hidden_states_per_layer(base_clf):
    hs = views.hidden_states(base_clf, "a bat flew")
    assert hs.states.shape == (7, len(hs.view.tokens), 384) and hs.states.dtype == np.float32


def test_attention_matches_eager_attention(base_clf):
    view, maps = views.attentions(base_clf, "Jim Henson was a puppeteer")
    assert view.tokens == ["[CLS]", "jim", "henson", "was", "a", "puppet", "##eer", "[SEP]"]
    assert maps.shape == (6, 12, 8, 8)
    np.testing.assert_allclose(maps.sum(-1), 1, atol=1e-5)
    eager = Classifier.load(packaged_model_path(), base_clf.labels)
    eager.model.set_attn_implementation("eager")
    enc = eager.tokenizer("Jim Henson was a puppeteer", return_tensors="pt")
    with torch.no_grad():
        ref = eager.model(**enc, output_attentions=True).attentions
    for layer in range(6):
        np.testing.assert_allclose(maps[layer], ref[layer][0].numpy(), atol=1e-5)


def test_hidden_states_batch_keeps_the_order_and_each_texts_own_length(base_clf):
    texts = ["a much longer sentence about a bat that flew", "a bat"]
    out = views.hidden_states_batch(base_clf, texts, batch_size=1)
    assert [hs.view.tokens for hs in out] == [views.tokenize(base_clf, t).tokens for t in texts]
    assert [hs.states.shape for hs in out] == [(7, 11, 384), (7, 4, 384)]
    assert views.hidden_states_batch(base_clf, []) == []
    assert (views.num_layers(base_clf), views.num_heads(base_clf)) == (6, 12)
