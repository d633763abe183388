"""Fine-tuning loop: device-agnostic (bf16 autocast on CUDA and on CPUs that support it),
class-weighted cross-entropy, AdamW with linear warm-up and decay, length-grouped dynamic
padding, evaluation during training, and the weights with the best validation loss kept.

It knows nothing of the database or of versions: `bertdemo.training.runner` ties it to the
database and the registry. `python -m bertdemo train --help` runs the same training headless;
under `accelerate launch --num_processes N -m bertdemo.cli.train` the same loop runs
data-parallel (training/accelerator.py: `accelerate` is imported only then).
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, f1_score
from sklearn.utils.class_weight import compute_class_weight
from transformers import get_linear_schedule_with_warmup

from bertdemo.model.classifier import Classifier
from bertdemo.model.packing import attention_for_backward
from bertdemo.training.accelerator import (
    SingleProcess,
    any_process,
    device_setting,
    digest,
    gather_objects,
    make_accelerator,
    shard_batches,
)
from bertdemo.training.config import FitResult, Progress, TrainConfig, TrainingCancelled, TrainingError

if TYPE_CHECKING:  # accelerate is optional: imported only under `accelerate launch`
    from accelerate import Accelerator

log = logging.getLogger(__name__)


def _is_oom(exc: BaseException) -> bool:
    # torch.OutOfMemoryError on CUDA; some back ends (MPS, CPU allocators) raise a RuntimeError
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start_model(source: str, labels: Sequence[str], device: str | None, max_length: int,
                config: TrainConfig) -> Classifier:
    """The model a run trains: `source` loaded in the run's precision, with (from the base encoder)
    a new head whose initial weights come from `config.seed`, so that the same data and options
    give the same version."""
    set_seed(config.seed)
    return Classifier.load(source, labels, device, max_length, precision=config.precision,
                           pooling=config.new_head_pooling)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                           mega: int = 50) -> list[list[int]]:
    """Shuffle, cut into chunks of `mega` batches, sort each chunk by length, batch, shuffle the
    batches: padding stays small while every epoch still sees a new order."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches: list[list[int]] = []
    chunk = batch_size * mega
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start:start + chunk], key=lengths.__getitem__, reverse=True)
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def set_dropout(model: torch.nn.Module, p: float) -> int:
    """Give every dropout layer of `model` the rate `p` (for training; evaluation never drops);
    returns how many there are."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in layers:
        m.p = p
    return len(layers)


_LAYER_RE = re.compile(r"\.layer\.(\d+)\.")


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW's parameter groups: weight decay on matrices only (not biases and LayerNorms), and with
    layer_decay < 1 a learning rate per depth: the head (and pooler) at `lr`, encoder layer i of L at
    lr * layer_decay**(L - i), the embeddings at lr * layer_decay**(L + 1). Trainable parameters only."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_layers = 1 + max((int(m.group(1)) for n, _ in named if (m := _LAYER_RE.search(n))), default=-1)

    def depth(name: str) -> int:  # 0: the embeddings .. n_layers + 1: above the encoder
        if (m := _LAYER_RE.search(name)):
            return int(m.group(1)) + 1
        return 0 if "embeddings" in name else n_layers + 1

    groups: dict[tuple[int, bool], dict] = {}
    for name, p in named:
        d = depth(name) if layer_decay != 1.0 else n_layers + 1
        key = (d, p.ndim >= 2)
        g = groups.setdefault(key, {"params": [], "weight_decay": weight_decay if key[1] else 0.0,
                                    "lr": lr * layer_decay ** (n_layers + 1 - d)})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def check_labels(labels: Sequence[int], label_names: Sequence[str], min_per_class: int = 2) -> None:
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(label_names))
    missing = [name for name, n in zip(label_names, counts) if n < min_per_class]
    if missing:
        have = ", ".join(f"{n}: {c}" for n, c in zip(label_names, counts))
        raise TrainingError(
            f"every label needs at least {min_per_class} examples; too few for {', '.join(missing)} "
            f"(have {have}). Label more examples of those classes first."
        )


def _evaluate(clf: Classifier, enc: list[dict], labels: np.ndarray, loss_fn,
              acc: Accelerator | SingleProcess) -> tuple[float, np.ndarray]:
    """Validation loss and predictions. Under accelerate each process scores every N-th batch and
    the parts are gathered, so every process gets the same result (and keeps the same best step)."""
    model = clf.model
    model.eval()
    chunks = np.array_split(labels, len(enc))
    mine = range(acc.process_index, len(enc), acc.num_processes)
    parts = []  # (batch index, summed loss, predictions)
    with torch.inference_mode(), clf._autocast():
        for i in mine:
            batch = {k: v.to(clf.device) for k, v in enc[i].items()}
            logits = model(**batch).logits.float()
            loss = loss_fn(logits, torch.as_tensor(chunks[i], device=clf.device)).item() * len(chunks[i])
            parts.append((i, loss, logits.argmax(-1).cpu().numpy()))
    parts = sorted(gather_objects(acc, parts), key=lambda part: part[0])
    return sum(loss for _i, loss, _p in parts) / len(labels), np.concatenate([p for _i, _l, p in parts])


def fit(clf: Classifier, train_texts: Sequence[str], train_labels: Sequence[int],
        val_texts: Sequence[str], val_labels: Sequence[int], config: TrainConfig = TrainConfig(),
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        sample_weights: Sequence[float] | None = None) -> FitResult:
    """Fine-tune `clf.model` in place; on return it holds the weights with the best val loss.
    `sample_weights` (one per training example, e.g. how sure the labellers were) scale each
    example's share of the training loss; the validation loss is never weighted."""
    names = clf.labels
    if len(train_texts) != len(train_labels) or len(val_texts) != len(val_labels):
        raise ValueError("texts and labels must have the same length")
    check_labels(train_labels, names, 1)
    if len(val_texts) == 0:
        raise TrainingError("the validation split is empty; label more examples")
    if sample_weights is not None and (len(sample_weights) != len(train_texts) or min(sample_weights) <= 0):
        raise ValueError("sample_weights needs one weight above 0 per training example")
    set_seed(config.seed)
    rng = random.Random(config.seed)
    serving_dtype = clf.amp_dtype
    clf.amp_dtype = None if config.precision == "fp32" else (
        torch.bfloat16 if config.precision == "bf16" else clf.amp_dtype)
    try:
        return _fit(clf, train_texts, train_labels, val_texts, val_labels, config, on_progress, should_stop, rng,
                    sample_weights)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not _is_oom(exc):
            raise
        if clf.device.type == "cuda":
            torch.cuda.empty_cache()  # give the memory back to the serving model
        raise TrainingError(
            f"out of {clf.device.type.upper()} memory with batch size {config.batch_size} and max length "
            f"{config.max_length}; try a smaller batch size or max length (the serving model is unchanged)"
        ) from exc
    finally:
        clf.amp_dtype = serving_dtype  # the training precision is not the serving one
        clf.model.eval()
        clf.model.zero_grad(set_to_none=True)  # the last step's gradients: a model's size of memory, never used again


def _fit(clf, train_texts, train_labels, val_texts, val_labels, config, on_progress, should_stop, rng,
         sample_weights=None):
    names = clf.labels
    precision = str(clf.amp_dtype).replace("torch.", "") if clf.amp_dtype else "fp32"
    # several processes (accelerate launch): the same loop, data-parallel; else a SingleProcess stand-in
    acc = make_accelerator(clf.device, clf.amp_dtype)
    rank, world = acc.process_index, acc.num_processes
    clf.device = torch.device(device_setting(acc.device))  # prepare() puts the model on this process's device
    if world > 1:
        # every process read the database itself: they must train on the same rows
        if len(set(gather_objects(acc, [digest(train_texts, train_labels, val_texts, val_labels)]))) > 1:
            raise TrainingError("the processes read different labelled data (did the labels change while they "
                                "started?); no version was saved. Run it again.")
    device, model = clf.device, clf.model

    tok = clf.tokenizer
    train_ids = tok(list(train_texts), truncation=True, max_length=config.max_length)["input_ids"]
    lengths = [len(x) for x in train_ids]
    y_train = np.asarray(train_labels, dtype=np.int64)
    y_val = np.asarray(val_labels, dtype=np.int64)
    # validation batches: length-sorted once, labels permuted the same way
    order = np.argsort([len(t) for t in val_texts])
    val_sorted = [val_texts[i] for i in order]
    y_val_sorted = y_val[order]
    n_val_batches = max(1, math.ceil(len(val_sorted) / 64))
    val_enc = [tok(list(chunk), truncation=True, max_length=config.max_length, padding=True,
                   return_tensors="pt") for chunk in np.array_split(np.array(val_sorted, dtype=object), n_val_batches)]

    if config.class_weighted:
        present = np.unique(y_train)
        w = np.ones(len(names), dtype=np.float32)
        w[present] = compute_class_weight("balanced", classes=present, y=y_train)
        weight = torch.tensor(w, device=device)
    else:
        weight = None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    w_train = None if sample_weights is None else np.asarray(sample_weights, dtype=np.float32)
    per_example = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing, reduction="none")

    if config.freeze_encoder:
        for p in model.base_model.parameters():
            p.requires_grad_(False)
    elif config.freeze_word_embeddings:  # half of MiniLM's weights: no gradient, no optimizer state
        model.get_input_embeddings().weight.requires_grad_(False)
    if config.dropout is not None:
        set_dropout(model, config.dropout)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = param_groups(model, config.learning_rate, config.weight_decay, config.layer_lr_decay)
    try:
        opt = torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(groups, lr=config.learning_rate)
    # batch_size is per process: N processes take N batches per optimizer step
    steps_per_epoch = math.ceil(math.ceil(len(train_texts) / config.batch_size) / world)
    total = max(1, int(round(config.epochs * steps_per_epoch)))
    if config.max_steps:
        total = min(total, config.max_steps)
    sched = get_linear_schedule_with_warmup(opt, int(config.warmup_ratio * total), total)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    net = model  # what the forward and backward go through: the model, or its DDP wrapper
    # several processes: DDP, the start weights broadcast from the main process and gradients
    # averaged in backward; one process: the optimizer steps through the GradScaler
    net, opt, sched = acc.prepare(model, opt, sched)

    best_loss, best_step, best_state = math.inf, 0, None
    history: list[dict] = []
    step, seen, t0, running = 0, 0, time.perf_counter(), []
    if acc.is_main_process:
        log.info("training on %d examples (%d validation), %d steps, %s on %s%s",
                 len(train_texts), len(val_texts), total, precision, device,
                 f", data-parallel over {world} processes (world size {world})" if world > 1 else "")
    while step < total:
        # the same seeded order on every process; each takes its own share of the batches
        for batch_idx in shard_batches(length_grouped_batches(lengths, config.batch_size, rng), rank, world):
            if step >= total:
                break
            if any_process(acc, bool(should_stop and should_stop())):
                raise TrainingCancelled(f"training was cancelled at step {step} of {total}")
            net.train()
            batch = tok.pad({"input_ids": [train_ids[i] for i in batch_idx]}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            y = torch.as_tensor(y_train[batch_idx], device=device)
            with acc.autocast(), attention_for_backward(device):
                logits = net(**batch).logits.float()  # (B, C)
            if w_train is None:
                loss = loss_fn(logits, y)
            else:  # the weighted mean over the batch
                w = torch.as_tensor(w_train[batch_idx], device=device)
                loss = (per_example(logits, y) * w).sum() / w.sum()
            # the mean over the processes: every process sees the same value and stops on the same NaN
            step_loss = acc.reduce(loss.detach(), "mean")
            if not torch.isfinite(step_loss):
                raise TrainingError(
                    f"the training loss became {step_loss.item()} at step {step + 1}; no version was saved and "
                    "the serving model is unchanged. Try a lower learning rate or precision fp32.")
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)  # fp16: the loss is scaled so that small gradients survive
            acc.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            seen += len(batch_idx)
            running.append(step_loss.item())
            elapsed = time.perf_counter() - t0
            row = {"step": step, "epoch": step / steps_per_epoch, "train_loss": float(np.mean(running[-20:]))}
            # evaluate every eval_every steps and at the end, not a second time just before it
            if (step % eval_every == 0 and total - step >= eval_every // 2) or step == total:
                val_loss, pred = _evaluate(clf, val_enc, y_val_sorted, loss_fn, acc)
                if not math.isfinite(val_loss):
                    raise TrainingError(
                        f"the validation loss became {val_loss} at step {step}; no version was saved and the "
                        "serving model is unchanged. Try a lower learning rate or precision fp32.")
                row |= {"val_loss": val_loss, "val_macro_f1": float(f1_score(y_val_sorted, pred, average="macro"))}
                if val_loss < best_loss:  # keep the checkpoint with the best validation loss
                    best_loss, best_step = val_loss, step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if acc.is_main_process:
                    log.info("step %d/%d epoch %.2f train_loss %.4f val_loss %.4f val_macro_f1 %.4f",
                             step, total, row["epoch"], row["train_loss"], val_loss, row["val_macro_f1"])
            history.append(row)
            if on_progress:  # examples/s estimated for all processes from this one's count
                on_progress(Progress(step, total, row["epoch"], row["train_loss"], row.get("val_loss"),
                                     row.get("val_macro_f1"), elapsed, seen * world / max(elapsed, 1e-9)))
    seconds = time.perf_counter() - t0
    # clf.model again, without the DDP and autocast wrappers prepare() put on it
    model = clf.model = acc.unwrap_model(net, keep_fp32_wrapper=False)
    per_process = gather_objects(acc, [seen])
    seen = sum(per_process)
    if world > 1 and acc.is_main_process:
        log.info("data-parallel over %d processes: %d steps each, training examples per process %s",
                 world, step, per_process)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    val_loss, pred = _evaluate(clf, val_enc, y_val_sorted, loss_fn, acc)
    ids = list(range(len(names)))
    report = classification_report(y_val_sorted, pred, labels=ids, target_names=list(names), digits=4, zero_division=0)
    rdict = classification_report(y_val_sorted, pred, labels=ids, target_names=list(names), output_dict=True,
                                  zero_division=0)
    return FitResult(
        labels=tuple(names), best_step=best_step, best_val_loss=float(val_loss),
        macro_f1=float(rdict["macro avg"]["f1-score"]), accuracy=float(rdict["accuracy"]),
        report=report, report_dict=rdict,
        confusion=confusion_matrix(y_val_sorted, pred, labels=ids).tolist(), history=history,
        train_size=len(train_texts), val_size=len(val_texts), seconds=seconds,
        samples_per_s=seen / max(seconds, 1e-9), device=str(device), precision=precision, processes=world,
    )
