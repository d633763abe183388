"""The fine-tuning loop on a few tiny batches: config validation, batching (and its sharding for
data-parallel runs; tests/unit/training/test_distributed.py runs two processes), progress and
history, frozen encoder, cancel, NaN loss and out-of-memory messages, the ZeroGPU wrapper, the
CLI, and (with a GPU only) the CUDA path."""

from __future__ import annotations

import random
import sys
import types
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sqlalchemy.orm import Session

from bertdemo.cli import train as train_cli
from bertdemo.config import packaged_model_path
from bertdemo.db import runs
from bertdemo.model.classifier import Classifier
from bertdemo.training.accelerator import launch_state, shard_batches
from bertdemo.training.config import TrainConfig, TrainingCancelled, TrainingData, TrainingError
from bertdemo.training.loop import check_labels, fit, length_grouped_batches, param_groups, start_model
from bertdemo.training.losses import AdjustedLoss, logit_offset
from bertdemo.training.zerogpu import gpu_task
from tests.support import LABELS, TINY_TRAIN

TWO_STEPS = TrainConfig(epochs=1, max_length=32, batch_size=16, evals_per_epoch=1, max_steps=2, precision="fp32")


@pytest.fixture(scope="module")
def data(tiny_csv):
    df = pd.read_csv(tiny_csv, keep_default_na=False).sample(frac=1, random_state=1)
    y = [LABELS.index(lab) for lab in df["label"]]
    texts = df["text"].tolist()
    return TrainingData(texts[:60], y[:60], texts[60:90], y[60:90])


@pytest.fixture
def clf() -> Classifier:
    return Classifier.load(packaged_model_path(), LABELS, precision="fp32")


def test_config_rejects_bad_values_quoting_them():
    with pytest.raises(ValueError, match=r"Learning rate \(learning_rate\) must be a number above 0 and up to 0.5, got 3.0"):
        TrainConfig(learning_rate=3.0)
    with pytest.raises(ValueError, match=r"init_from must be one of \['base', 'active'\], got 'latest'"):
        TrainConfig(init_from="latest")
    assert TrainConfig().to_dict()["init_from"] == "base"


def test_length_grouped_batches_cover_every_index_once_with_little_padding():
    lengths = [random.Random(i).randint(5, 60) for i in range(1000)]
    batches = length_grouped_batches(lengths, 32, random.Random(0), mega=10)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 10  # random batches of 32 would spread ~50 tokens


def test_shard_batches_gives_each_process_its_own_equal_share():
    batches = [[i] for i in range(7)]
    shares = [shard_batches(batches, rank, 3) for rank in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]  # DDP needs the same number of steps everywhere
    assert sorted(b[0] for s in shares for b in s) == sorted([*range(7), 0, 1])  # cycled to 9
    assert shard_batches(batches, 0, 1) is batches


def test_a_plain_process_is_not_distributed():
    assert launch_state() is None  # the app and `bertdemo train`: no accelerate at all


def test_check_labels_names_the_missing_class():
    with pytest.raises(TrainingError, match=r"too few for neutral \(have negative: 3, neutral: 0, positive: 2\)"):
        check_labels([0, 0, 0, 2, 2], LABELS, 2)


def test_fit_reports_progress_history_and_metrics(clf, data):
    seen = []
    r = fit(clf, data, TWO_STEPS, on_progress=seen.append)
    assert [p.step for p in seen] == [1, 2] and seen[-1].total_steps == 2
    assert seen[-1].val_loss is not None and seen[-1].fraction == 1.0
    assert [h["step"] for h in r.history] == [1, 2] and "val_loss" in r.history[-1]
    assert np.asarray(r.confusion).shape == (3, 3) and np.asarray(r.confusion).sum() == 30
    assert r.train_size == 60 and r.val_size == 30 and 0 <= r.macro_f1 <= 1
    assert r.best_step in (1, 2) and r.precision == "fp32"
    assert not clf.model.training  # back in eval mode for serving


def test_frozen_encoder_trains_only_the_head(clf, data):
    enc_before = clf.model.base_model.embeddings.word_embeddings.weight.detach().clone()
    head = [p for n, p in clf.model.named_parameters() if n.startswith("classifier")]
    head_before = [p.detach().clone() for p in head]
    fit(clf, data, TrainConfig(**(TWO_STEPS.to_dict() | {"freeze_encoder": True, "evals_per_epoch": 1})))
    assert torch.equal(enc_before, clf.model.base_model.embeddings.word_embeddings.weight)
    assert any(not torch.equal(a, b) for a, b in zip(head_before, head))


def test_dropout_is_set_for_training_or_left_as_the_model_has_it(clf, data):
    rates = lambda: {m.p for m in clf.model.modules() if isinstance(m, torch.nn.Dropout)}  # noqa: E731
    assert rates() == {0.1}  # BERT's own
    fit(clf, data, TrainConfig(**(TWO_STEPS.to_dict() | {"dropout": None})))
    assert rates() == {0.1}
    fit(clf, data, TrainConfig(**(TWO_STEPS.to_dict() | {"dropout": 0.0})))
    assert rates() == {0.0}
    clf.model.train()  # no dropout: two passes in training mode agree
    batch = clf.tokenizer(data.texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(clf.model(**batch).logits, clf.model(**batch).logits)
    clf.model.eval()
    with pytest.raises(ValueError, match=r"Dropout \(dropout\) must be"):
        TrainConfig(dropout=0.95)


def test_layer_wise_decay_gives_each_depth_its_learning_rate(clf):
    model = clf.model  # 6 encoder layers
    lr_of = {id(p): g["lr"] for g in param_groups(model, 1e-4, 0.01, 0.5) for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == pytest.approx(1e-4)
    assert lr_of[id(named["bert.encoder.layer.5.output.dense.weight"])] == pytest.approx(1e-4 * 0.5)
    assert lr_of[id(named["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(1e-4 * 0.5**6)
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1e-4 * 0.5**7)
    assert len(lr_of) == len(named)  # every parameter once
    decays = {id(p): g["weight_decay"] for g in param_groups(model, 1e-4, 0.01, 0.5) for p in g["params"]}
    assert decays[id(named["bert.encoder.layer.3.output.dense.weight"])] == 0.01
    assert decays[id(named["bert.encoder.layer.3.output.LayerNorm.weight"])] == 0.0  # not on norms and biases
    plain = param_groups(model, 1e-4, 0.01)  # no decay: two groups, one rate
    assert [(g["lr"], g["weight_decay"]) for g in plain] == [(1e-4, 0.0), (1e-4, 0.01)]


def test_layer_wise_decay_slows_the_lower_layers_in_training(data):
    def change(decay):
        clf = start_model(str(packaged_model_path()), LABELS, "cpu", 32, TWO_STEPS)
        before = clf.model.bert.encoder.layer[0].output.dense.weight.detach().clone()
        fit(clf, data, TrainConfig(**(TWO_STEPS.to_dict() | {"layer_lr_decay": decay, "warmup_ratio": 0.0})))
        return (clf.model.bert.encoder.layer[0].output.dense.weight - before).abs().max().item()

    assert change(0.1) < change(1.0) / 100  # layer 0 of 6 learns at 0.1**6 of the top's rate
    with pytest.raises(ValueError, match=r"Layer-wise learning-rate decay \(layer_lr_decay\) must be"):
        TrainConfig(layer_lr_decay=0.0)


def test_evaluations_are_spread_over_the_run_and_not_repeated_at_its_end(clf, data):
    # 60 examples in batches of 4: 15 steps; 2 evaluations per epoch: every 7 steps and at the end,
    # where step 14 would evaluate a second time one step before it
    r = fit(clf, data, TrainConfig(**(TWO_STEPS.to_dict() | {"batch_size": 4, "max_steps": None,
                                                              "evals_per_epoch": 2})))
    assert [h["step"] for h in r.history if "val_loss" in h] == [7, 15]


def test_a_run_starts_from_the_same_new_head_for_the_same_seed():
    def head(seed):
        clf = start_model(str(packaged_model_path()), LABELS, "cpu", 32, TrainConfig(seed=seed))
        return clf.model.classifier.weight.detach().clone()

    assert torch.equal(head(3), head(3))
    assert not torch.equal(head(3), head(4))


def test_sample_weights_scale_each_examples_share_of_the_loss(data):
    one_step = TrainConfig(**(TWO_STEPS.to_dict() | {"max_steps": 1}))

    def first_loss(weights):
        clf = start_model(str(packaged_model_path()), LABELS, "cpu", 32, one_step)  # the same head each time
        return fit(clf, replace(data, weights=weights), one_step).history[0]["train_loss"]

    plain = first_loss(None)
    assert first_loss([1.0] * len(data.texts)) == pytest.approx(plain, rel=1e-5)  # all 1: the plain mean
    assert first_loss([0.5] * len(data.texts)) == pytest.approx(plain, rel=1e-5)  # a weighted mean: the scale cancels
    skewed = [1.0 if y == 0 else 0.01 for y in data.labels]
    assert abs(first_loss(skewed) - plain) > 1e-3
    with pytest.raises(ValueError, match="one weight above 0 per training example"):
        fit(Classifier.load(packaged_model_path(), LABELS, precision="fp32"), replace(data, weights=[1.0]), TWO_STEPS)


def test_logit_offset_is_tau_times_the_weighted_log_prior():
    y = np.array([0, 0, 0, 1])
    assert logit_offset(y, None, 3, 0.0) is None  # off
    off = logit_offset(y, None, 3, 1.0).numpy()
    # an absent class counts as the rarest present one (1 here), not -inf: counts 3, 1, 1
    assert off == pytest.approx(np.log([0.6, 0.2, 0.2]), rel=1e-6)
    assert logit_offset(y, None, 2, 1.0).numpy() == pytest.approx(np.log([0.75, 0.25]), rel=1e-6)
    weighted = logit_offset(y, np.array([1.0, 1.0, 1.0, 3.0]), 2, 0.5).numpy()  # weights 3 : 3
    assert weighted == pytest.approx(0.5 * np.log([0.5, 0.5]), rel=1e-6)


def test_logit_adjusted_loss_does_not_push_an_uninformed_model_toward_the_majority():
    y = torch.tensor([0] * 6 + [1] * 3 + [2])  # shares 0.6 / 0.3 / 0.1

    def gradient(tau):
        logits = torch.zeros(10, 3, requires_grad=True)  # no evidence for any class
        loss = AdjustedLoss(torch.nn.CrossEntropyLoss(), logit_offset(y.numpy(), None, 3, tau))(logits, y)
        loss.backward()
        return logits.grad.sum(0)  # what every example's shared bias would learn

    assert gradient(1.0).abs().max() < 1e-6  # tau 1: the prior is already in the offset, nothing to learn
    plain = gradient(0.0)
    assert plain[0] < -0.03 and plain[2] > 0.02  # the plain loss raises the majority's logit, lowers the rarest
    with pytest.raises(ValueError, match=r"Logit adjustment \(logit_adjustment\)"):
        TrainConfig(logit_adjustment=5)


def test_a_logit_adjusted_run_trains_and_scores_its_validation_with_the_offset(data):
    def run(tau):
        cfg = replace(TWO_STEPS, logit_adjustment=tau, max_steps=1)
        clf = start_model(str(packaged_model_path()), LABELS, "cpu", 32, cfg)  # the same head each time
        return fit(clf, data, cfg).history

    plain, adjusted = run(0.0), run(1.0)
    assert adjusted[0]["train_loss"] != pytest.approx(plain[0]["train_loss"], abs=1e-4)
    assert adjusted[-1]["val_loss"] != pytest.approx(plain[-1]["val_loss"], abs=1e-4)


def test_should_stop_cancels(clf, data):
    with pytest.raises(TrainingCancelled, match="cancelled at step 0"):
        fit(clf, data, TWO_STEPS, should_stop=lambda: True)


def test_nan_loss_is_a_clear_error(clf, data, monkeypatch):
    real = torch.nn.CrossEntropyLoss.forward
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", lambda self, x, y: real(self, x, y) * float("nan"))
    serving = clf.amp_dtype
    with pytest.raises(TrainingError, match="training loss became nan at step 1.*serving model is unchanged"):
        fit(clf, data, TWO_STEPS)
    assert clf.amp_dtype == serving and not clf.model.training


def test_out_of_memory_is_a_clear_error(clf, data, monkeypatch):
    def oom(self, x, y):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", oom)
    with pytest.raises(TrainingError, match="out of CPU memory with batch size 16 and max length 32; try a smaller"):
        fit(clf, data, TWO_STEPS)


def test_other_runtime_errors_are_not_mistaken_for_oom(clf, data, monkeypatch):
    def boom(self, x, y):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        fit(clf, data, TWO_STEPS)


def test_gpu_task_wraps_with_spaces_gpu_only_when_spaces_is_importable(monkeypatch):
    def f(x):
        return x + 1

    monkeypatch.setitem(sys.modules, "spaces", None)  # import fails
    assert gpu_task(f) is f
    calls = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: (lambda fn: calls.append(duration) or (lambda *a: fn(*a) * 10))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu_task(f, duration=120)(1) == 20 and calls == [120]


def test_cli_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--epochs", "--learning-rate", "--batch-size", "--max-length", "--seed", "--freeze-encoder",
                 "--init-from", "--max-steps", "--no-activate", "--general-weight", "--logit-adjustment",
                 "--train-on"):
        assert flag in out


def test_cli_rejects_bad_values(capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--learning-rate", "5"])
    assert exc.value.code == 2 and "Learning rate (learning_rate) must be a number above 0 and up to 0.5, got 5.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_cli.main(["--general-weight", "2"])
    assert exc.value.code == 2 and "General tweets' weight (general_weight) must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a quick retrain continues the active version
        train_cli.main(["--train-on", "changed"])
    assert exc.value.code == 2 and "starts from the active version" in capsys.readouterr().err


def test_cli_trains_and_registers_a_version(tmp_path, tiny_csv, monkeypatch):
    monkeypatch.setenv("BERTDEMO_DATA_DIR", str(tmp_path / "rt"))
    monkeypatch.setenv("BERTDEMO_DATASET", str(tiny_csv))
    monkeypatch.setenv("BERTDEMO_DATASETS", "airline")
    assert train_cli.main(["--max-steps", "2", "--max-length", "32", "--batch-size", "16", "--no-activate",
                       "--user", "cron"]) == 0
    from bertdemo.config import Settings
    from bertdemo.services import Services

    services = Services.create(Settings.from_env())
    [v] = services.registry.versions()
    assert v.name == "v1" and v.created_by == "cron" and not v.is_active
    assert v.train_config["max_steps"] == 2
    with Session(services.engine) as s:
        assert runs.latest_run(s).status == "succeeded"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_uses_mixed_precision(data):
    gpu = Classifier.load(packaged_model_path(), LABELS, device="cuda")
    r = fit(gpu, data, TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 3})))
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"  # fp16 runs with GradScaler
    assert r.device.startswith("cuda") and r.precision == expected
    assert np.isfinite(r.best_val_loss)
    assert next(gpu.model.parameters()).device.type == "cuda"
