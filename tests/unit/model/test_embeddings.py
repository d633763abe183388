"""Contextual embeddings (bertdemo.model.embeddings) on the packaged MiniLM BERT: occurrences,
pooling, per-layer similarity, the bat preset's sense separation, bad input, and the plots drawn
from them (bertdemo.ui.plots). Corpus neighbours (bertdemo.actions.embeddings) are in
tests/unit/actions/test_embeddings.py."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.actions import presets
from bertdemo.errors import BadInput
from bertdemo.model import embeddings, views
from bertdemo.model.classifier import Classifier
from bertdemo.ui import plots

LABELS = ("negative", "neutral", "positive")
SEED = "I encountered a bat when I went to buy a cricket bat."


def test_batched_hidden_states_equal_single(base_clf):
    texts = ["A bat flew out of the cave at dusk.", SEED, "ok"]
    batched = views.hidden_states_batch(base_clf, texts)
    for text, hb in zip(texts, batched):  # order kept although batches are length-sorted
        hs = views.hidden_states(base_clf, text)
        assert hb.view.tokens == hs.view.tokens
        assert hb.states.shape == hs.states.shape  # (L+1, T, H): padding cut off
        np.testing.assert_allclose(hb.states, hs.states, atol=1e-4)


def test_bat_preset_senses_separate_at_best_layer(base_clf):
    p = presets.PRESETS["bat"]
    assert p.senses.count("animal") >= 2 and p.senses.count("cricket") >= 2
    r = embeddings.compare(base_clf, p.text, p.word, senses=p.senses)
    assert r.senses == p.senses  # the preset's occurrences line up with its senses
    best = r.best_layer()
    assert best is not None and 1 <= best <= r.num_layers
    animal = [i for i, s in enumerate(r.senses) if s == "animal"]
    cricket = [i for i, s in enumerate(r.senses) if s == "cricket"]
    sims = r.layer_similarity[best]
    # the animal occurrences are more similar to each other than to any cricket bat ...
    for i in animal:
        for j in animal:
            if i != j:
                assert all(sims[i, j] > sims[i, k] for k in cricket), (best, sims.round(3))
    # ... and the same holds the other way round (the margin is positive)
    assert r.margin(best) > 0
    same, diff = r.sense_means(best)
    assert same > diff
    # while the static input embedding cannot tell them apart at all
    np.testing.assert_allclose(r.static_similarity, 1.0, atol=1e-5)


def test_occurrences_are_whole_words_case_insensitive(base_clf):
    r = embeddings.compare(base_clf, f"{SEED}\nBATMAN is not a BAT.\nno match here", "Bat")
    assert r.labels == ["S1.1", "S1.2", "S2.1"]  # 'batman' is not 'bat'
    assert [s.line_number for s in r.skipped] == [3]
    assert "not in it" in r.skipped[0].reason
    for o in r.occurrences:
        assert views.tokenize(base_clf, o.sentence).tokens[o.start:o.end] == ["bat"]
    assert r.vectors.shape == (views.num_layers(base_clf) + 1, 3, 384)  # (L+1, N, H)
    assert r.similarity.shape == (3, 3)
    np.testing.assert_allclose(np.diag(r.similarity), 1.0, atol=1e-5)
    # the same word in the same sentence gets different vectors: not 1.0 beyond layer 0
    assert r.layer_similarity[-1][0, 1] < 0.99


def test_multi_piece_word_is_mean_pooled(base_clf):
    texts = "Bats find insects by echolocation.\nDolphins also use echolocation to hunt."
    r = embeddings.compare(base_clf, texts, "echolocation", layer=3)
    assert r.pooled and r.pieces == ("echo", "##lo", "##cation")
    o = r.occurrences[1]
    hs = views.hidden_states(base_clf, o.sentence)
    np.testing.assert_allclose(r.vectors[3, 1], hs.states[3, o.start:o.end].mean(0), atol=1e-4)


def test_projection_and_json(base_clf):
    p = presets.PRESETS["bank"]
    r = embeddings.compare(base_clf, p.text, p.word, layer=4)
    xy = r.projection()
    assert xy.shape == (4, 2) and np.isfinite(xy).all()
    j = r.to_json()
    assert [o["label"] for o in j["occurrences"]] == r.labels
    assert np.allclose(j["similarity"], r.similarity, atol=1e-5)
    assert j["layer"] == 4


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_presets_line_up(base_clf, name):
    p = presets.PRESETS[name]
    assert len(set(p.senses)) == 2 and min(p.senses.count(s) for s in set(p.senses)) >= 2
    r = embeddings.compare(base_clf, p.text, p.word)
    assert len(r.occurrences) == len(p.senses) and not r.skipped
    assert presets.preset_senses(p.text, p.word.upper()) == p.senses
    assert presets.preset_senses(p.text + "\nAnother line.", p.word) is None


@pytest.mark.parametrize("sentences, word, match", [
    (SEED, "", "empty"),
    (SEED, "   ", "empty"),
    (SEED, "x" * 500, "limit is 100"),
    (SEED, "cricket bat", "one word"),
    ("A bat flew out of the cave.", "bat", "occurs once"),
    ("Nothing here.\nNor here.", "bat", "occurs nowhere"),
    ("\n\n", "bat", "at least one sentence"),
    ("\n".join(["A bat."] * 200), "bat", "200 sentences; the limit is 50"),
    ("\n".join(["bat, bat and bat."] * 40), "bat", "occurs 120 times; the limit is 100"),
])
def test_bad_input_has_clear_message(base_clf, sentences, word, match):
    with pytest.raises(BadInput, match=match):
        embeddings.compare(base_clf, sentences, word)


def test_layer_out_of_range(base_clf):
    with pytest.raises(BadInput, match="from 0 .* to 6"):
        embeddings.compare(base_clf, SEED, "bat", layer=7)


@pytest.mark.parametrize("layer", ["abc", 2.5, float("nan"), float("inf"), 1e30, -1, True, [2]])
def test_layer_that_is_not_a_whole_number_in_range(base_clf, layer):
    with pytest.raises(BadInput, match=r"The layer must be a whole number from 0 \(input embeddings\) to 6"):
        embeddings.compare(base_clf, SEED, "bat", layer=layer)


def test_layer_as_text_or_float_and_none_is_the_last(base_clf):
    assert embeddings.compare(base_clf, SEED, "bat", layer="2").layer == 2
    assert embeddings.compare(base_clf, SEED, "bat", layer=3.0).layer == 3
    assert embeddings.compare(base_clf, SEED, "bat", layer=None).layer == 6


def test_word_longer_than_max_length(base_clf):
    short = Classifier(base_clf.model, base_clf.tokenizer, LABELS, base_clf.device, max_length=8)
    # 6 pieces fit in 8 tokens with [CLS] and [SEP]; the long word does not
    embeddings.compare(short, "bats use echolocation.\nand echolocation", "echolocation")
    with pytest.raises(BadInput, match="WordPieces long; the model reads at most 6"):
        embeddings.compare(short, SEED, "supercalifragilisticexpialidocious")


def test_single_sentence_and_unusable_lines_are_reported(base_clf):
    r = embeddings.compare(base_clf, SEED, "bat")
    assert len(r.occurrences) == 2
    assert any("Only one sentence" in n for n in r.notes)
    r = embeddings.compare(base_clf, f"{SEED}\n@united\nA bat slept.", "bat")
    assert [s.line_number for s in r.skipped] == [2]  # nothing left once the @mention is removed
    assert "Nothing is left" in r.skipped[0].reason


def test_plots_show_every_occurrence_and_pair(base_clf):
    p = presets.PRESETS["bat"]
    r = embeddings.compare(base_clf, p.text, p.word, layer=2, senses=p.senses)
    heat = plots.similarity_heatmap(r)
    assert [t.get_text() for t in heat.axes[0].get_yticklabels()] == r.labels
    assert "layer 2" in heat.axes[0].get_title(loc="right")
    assert "static" in plots.similarity_heatmap(r, static=True).axes[0].get_title(loc="right")
    lines = plots.layer_lines(r).axes[0]
    pair_lines = [ln for ln in lines.get_lines() if "–" in ln.get_label()]
    assert len(pair_lines) == 6  # 4 occurrences -> 6 pairs, each from layer 0 to 6
    assert all(len(ln.get_xdata()) == r.num_layers + 1 for ln in pair_lines)
    pca = plots.projection(r).axes[0]
    assert len(pca.collections) >= 4
    two = embeddings.compare(base_clf, "My flight was late.\nThe flight was fine.", "flight")
    np.testing.assert_allclose(two.projection()[:, 1], 0.0)  # 2 points: one direction, no noise axis
