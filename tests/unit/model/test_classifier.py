import copy

import numpy as np
import pytest
import torch

from bertdemo.model.classifier import Classifier, PackedLinear, autocast_dtype, resolve_device

SENTENCES = ["I love this airline", "the flight was late", "ok", "what time is boarding for the flight to boston?"]


def test_packaged_model_is_a_real_bert(base_clf):
    cfg = base_clf.model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.vocab_size) == (
        "bert", 6, 384, 12, 30522)
    assert base_clf.labels == ("negative", "neutral", "positive")


def test_predict_returns_probabilities_in_input_order(base_clf):
    preds = base_clf.predict(SENTENCES)
    assert [p.text for p in preds] == SENTENCES
    for p in preds:
        assert list(p.probs) == ["negative", "neutral", "positive"]
        assert sum(p.probs.values()) == pytest.approx(1, abs=1e-5)
        assert p.label == max(p.probs, key=p.probs.get) and p.confidence == p.probs[p.label]


def test_length_sorted_batching_matches_one_at_a_time(base_clf):
    fp32 = Classifier(base_clf.model, base_clf.tokenizer, base_clf.labels, base_clf.device, precision="fp32")
    batched = fp32.logits(SENTENCES, batch_size=2)  # sorted by length, padded per batch
    single = np.stack([fp32.logits([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_bf16_autocast_agrees_with_fp32(base_clf):
    if autocast_dtype(torch.device("cpu")) is None:
        pytest.skip("this CPU has no native bf16")
    fp32 = Classifier(base_clf.model, base_clf.tokenizer, base_clf.labels, base_clf.device, precision="fp32")
    bf16 = Classifier(base_clf.model, base_clf.tokenizer, base_clf.labels, base_clf.device, precision="bf16")
    np.testing.assert_allclose(bf16.predict_proba(SENTENCES), fp32.predict_proba(SENTENCES), atol=0.02)


def test_empty_batch(base_clf):
    assert base_clf.predict_proba([]).shape == (0, 3)


def test_wrong_head_size_is_refused(base_clf):
    with pytest.raises(ValueError, match="model has 3 output labels, expected 2"):
        Classifier(base_clf.model, base_clf.tokenizer, ("a", "b"), base_clf.device)


def test_missing_model_gives_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="could not load model"):
        Classifier.load(tmp_path / "nothing-here", ("a", "b"))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")


def test_bf16_serving_copy_gives_autocast_numbers_and_follows_weight_changes(base_clf):
    """predict() runs a copy with bf16 (on the CPU: pre-packed) Linear weights; it must give what
    autocast over the fp32 weights gives, share everything else, and be rebuilt when the weights
    change."""
    if autocast_dtype(torch.device("cpu")) is None:
        pytest.skip("this CPU has no native bf16")
    clf = Classifier(base_clf.model, base_clf.tokenizer, base_clf.labels, base_clf.device, precision="bf16")
    enc = clf.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = clf.model(**enc).logits.float().numpy()
        served = clf.serving_model()(**enc).logits.float().numpy()
    np.testing.assert_allclose(served, reference, atol=2e-2)  # bf16 logits: 8-bit mantissa
    assert (served.argmax(1) == reference.argmax(1)).all()
    fast = clf.serving_model()
    assert fast is clf.serving_model()  # cached while the weights stay the same
    assert fast.base_model.embeddings.word_embeddings.weight is clf.model.base_model.embeddings.word_embeddings.weight
    assert clf.model.classifier.weight.dtype == torch.float32  # the model itself is untouched
    if PackedLinear.available():
        assert isinstance(fast.classifier, PackedLinear)
    else:
        assert fast.classifier.weight.dtype == torch.bfloat16

    head = Classifier(copy.deepcopy(base_clf.model), base_clf.tokenizer, base_clf.labels, base_clf.device,
                      precision="bf16")
    before = head.logits(SENTENCES)
    with torch.no_grad():
        head.model.classifier.bias.add_(torch.tensor([5.0, 0.0, 0.0]))  # an in-place update, like an optimizer step
    after = head.logits(SENTENCES)
    np.testing.assert_allclose(after[:, 0] - before[:, 0], 5.0, atol=0.1)
    np.testing.assert_allclose(after[:, 1:], before[:, 1:], atol=1e-6)
    state = {k: v.clone() for k, v in head.model.state_dict().items()}
    state["classifier.weight"].zero_()
    state["classifier.bias"].zero_()
    head.model.load_state_dict(state)  # restoring the best checkpoint copies in place too
    np.testing.assert_allclose(head.logits(SENTENCES), 0.0)


def test_small_inputs_run_on_one_thread_large_ones_on_every_core(base_clf):
    before = torch.get_num_threads()
    with base_clf.exclusive(30):
        assert torch.get_num_threads() == 1
    with base_clf.exclusive(64 * 32):
        assert torch.get_num_threads() == base_clf.max_threads
    assert torch.get_num_threads() == before
