"""The int8 graph (model/int8.py): the gate's arithmetic, and an export of the packaged encoder
that scores like the PyTorch model, hands texts under its margin guard to fp32, and does not
depend on the batch a text is in."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.model import int8
from tests.support import LABELS

pytest.importorskip("openvino")
pytest.importorskip("nncf")

TEXTS = ["@united worst service ever, lost my bag", "thanks @SouthwestAir, the crew was lovely",
         "my flight is at 6pm", "delayed again. great.", "ok", "I love this song so much!!!",
         "the meeting moved to thursday", "never flying with them again, rude staff and dirty seats"]


def test_the_gate_counts_agreement_and_per_class_f1_changes():
    ref = np.array([[2, 0, 0], [0, 2, 0], [0, 0, 2], [2, 0, 0]], dtype=np.float32)
    same = int8.gate(ref, ref + 0.01, [0, 1, 2, 0], LABELS, "four texts")
    assert same.agreement == 1.0 and same.passed and same.worst_change[1] == 0.0 and same.n == 4
    flipped = ref.copy()
    flipped[3] = [0, 3, 0]  # one of four argmaxes changes: 75% agreement, negative and neutral F1 move
    g = int8.gate(ref, flipped, [0, 1, 2, 0], LABELS, "four texts")
    assert g.agreement == 0.75 and not g.passed
    assert g.f1_fp32 == {"negative": 1.0, "neutral": 1.0, "positive": 1.0}
    assert g.f1_int8["negative"] == pytest.approx(2 / 3, abs=1e-6) and g.f1_int8["neutral"] == pytest.approx(2 / 3, abs=1e-6)
    assert "failed on four texts (4 texts): argmax agreement 75.00% (needs 99.5%)" in g.summary()


def test_the_gate_fails_on_an_f1_change_alone_and_reads_back(tmp_path):
    g = int8.Gate(agreement=0.999, f1_fp32={"negative": 0.9, "neutral": 0.7, "positive": 0.8},
                  f1_int8={"negative": 0.9, "neutral": 0.694, "positive": 0.8}, n=1000, on="x",
                  extra={"int8_per_s": 300.0, "torch_per_s": 500.0})
    assert not g.passed and g.worst_change == ("neutral", pytest.approx(-0.006)) and not g.faster
    assert "largest per-class F1 change -0.0060 (neutral" in g.summary() and "300/s against 500/s" in g.summary()
    g.save(tmp_path / "gate.json")
    assert int8.Gate.load(tmp_path / "gate.json") == g
    assert int8.Gate(**{**g.__dict__, "f1_int8": g.f1_fp32}).passed  # same F1, 99.9% agreement


@pytest.fixture(scope="module")
def exported(tmp_path_factory, base_clf):
    """The packaged encoder with its fresh head, saved and exported."""
    folder = tmp_path_factory.mktemp("int8") / "v1"
    base_clf.save(folder)
    int8.export(folder, folder / int8.FOLDER, TEXTS * 4)
    return folder


def test_the_export_leaves_only_the_int8_graph(exported):
    assert sorted(p.name for p in (exported / int8.FOLDER).iterdir()) == ["model.int8.bin", int8.INT8_FILE]
    assert not list(exported.glob(".int8-*"))  # the temporary folder is gone


def test_the_int8_graph_scores_like_the_fp32_model(exported, base_clf):
    bare = int8.Int8Scorer(exported / int8.FOLDER / int8.INT8_FILE, threads=2, margin_guard=0)
    ref = base_clf.logits(TEXTS, path="fp32")
    q = base_clf.logits(TEXTS, path=bare)
    assert np.abs(q - ref).max() < 0.1 * np.abs(ref).max() + 1e-3
    # the margin guard: a text whose int8 top-two gap is under it takes the fp32 model's logits
    scorer = int8.Int8Scorer(exported / int8.FOLDER / int8.INT8_FILE, threads=2, margin_guard=1e9)
    np.testing.assert_allclose(base_clf.logits(TEXTS, path=scorer), ref, atol=1e-4)
    assert (scorer.scored, scorer.rescored) == (len(TEXTS), len(TEXTS))
    _, ref_vec = base_clf._forward(TEXTS, 64, embed=True, path="fp32")
    _, q_vec = base_clf._forward(TEXTS, 64, embed=True, path=scorer)
    assert np.all((ref_vec * q_vec).sum(1) > 0.97)  # the sentence embeddings re-scoring stores (cosine)
    # the gate on the packaged model: its figures are those of the two sets of logits
    g = int8.timed_gate(base_clf, bare, TEXTS, [0, 2, 1, 0, 1, 2, 1, 0], "eight tweets")
    assert g.agreement == float((q.argmax(1) == ref.argmax(1)).mean()) and g.n == 8
    assert g.extra["int8_per_s"] > 0 and g.extra["torch_per_s"] > 0 and g.extra["guarded_share"] == 0
    guarded = int8.timed_gate(base_clf, scorer, TEXTS, [0, 2, 1, 0, 1, 2, 1, 0], "eight tweets")
    assert guarded.agreement == 1.0 and guarded.extra["guarded_share"] == 1.0 and guarded.passed


def test_a_texts_scores_do_not_depend_on_its_batch(exported, base_clf):
    """Static activation scales: alone, or padded in a batch with longer texts, the same logits."""
    scorer = int8.Int8Scorer(exported / int8.FOLDER / int8.INT8_FILE, threads=1, margin_guard=0)
    alone = np.concatenate([base_clf.logits([t], path=scorer) for t in TEXTS])
    together = base_clf.logits(TEXTS, path=scorer)
    np.testing.assert_allclose(alone, together, atol=1e-4)
