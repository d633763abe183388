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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from bertdemo.training.config import (
    FitResult,
    Progress,
    TrainConfig,
    TrainingCancelled,
    TrainingData,
    TrainingError,
)
from bertdemo.training.losses import AdjustedLoss, logit_offset
from bertdemo.training.optim import param_groups, set_dropout

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
    # the classifier's own precision (the run set it with use_amp): autocast off for fp32
    with torch.inference_mode(), torch.autocast(clf.device.type, dtype=clf.amp_dtype,
                                                enabled=clf.amp_dtype is not None):
        for i in mine:
            batch = {k: v.to(clf.device) for k, v in enc[i].items()}
            logits = model(**batch).logits.float()
            loss = loss_fn(logits, torch.as_tensor(chunks[i], device=clf.device)).item() * len(chunks[i])
            parts.append((i, loss, logits.argmax(-1).cpu().numpy()))
    parts = sorted(gather_objects(acc, parts), key=lambda part: part[0])
    return sum(loss for _i, loss, _p in parts) / len(labels), np.concatenate([p for _i, _l, p in parts])


def fit(clf: Classifier, data: TrainingData, config: TrainConfig = TrainConfig(),
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Fine-tune `clf.model` on `data` in place; on return it holds the weights with the best
    validation loss. `data.weights` (one per training example, e.g. how sure the labellers were)
    scale each example's share of the training loss; the validation loss is never weighted."""
    data.check()
    check_labels(data.labels, clf.labels, 1)
    if len(data.val_texts) == 0:
        raise TrainingError("the validation split is empty; label more examples")
    set_seed(config.seed)
    # the run's precision; the serving one is given back below
    serving_dtype = clf.use_amp(None if config.precision == "fp32" else (
        torch.bfloat16 if config.precision == "bf16" else clf.amp_dtype))
    try:
        return _fit(clf, data, config, on_progress, should_stop)
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
        clf.use_amp(serving_dtype)  # the training precision is not the serving one
        clf.model.eval()
        clf.model.zero_grad(set_to_none=True)  # the last step's gradients: a model's size of memory, never used again


def _fit(clf: Classifier, data: TrainingData, config: TrainConfig, on_progress: Callable[[Progress], None] | None,
         should_stop: Callable[[], bool] | None) -> FitResult:
    """The run as a story: set up (device, data, loss, optimizer), train step by step with an
    evaluation every `eval_every` steps, then put the best weights back and measure them."""
    precision = str(clf.amp_dtype).replace("torch.", "") if clf.amp_dtype else "fp32"
    # several processes (accelerate launch): the same loop, data-parallel; else a SingleProcess stand-in
    acc = make_accelerator(clf.device, clf.amp_dtype)
    clf.adopt(device=torch.device(device_setting(acc.device)))  # prepare() puts the model on this process's device
    _check_same_data(acc, data)
    run = _set_up(clf, acc, _encode(clf.tokenizer, data, config.max_length), config)
    if acc.is_main_process:
        log.info("training on %d examples (%d validation), %d steps, %s on %s%s",
                 len(data.texts), len(data.val_texts), run.total, precision, clf.device,
                 f", data-parallel over {acc.num_processes} processes (world size {acc.num_processes})"
                 if acc.num_processes > 1 else "")
    state = _train(run, config, on_progress, should_stop)
    return _result(run, state, precision)


# ------------------------------------------------------------------------------ set up
@dataclass(frozen=True)
class _Encoded:
    """The run's data, tokenized once."""

    train_ids: list[list[int]]  # WordPieces of each training text, unpadded (batches pad on the fly)
    y_train: np.ndarray  # (N,) label ids
    w_train: np.ndarray | None  # (N,) loss weights; None: all 1
    val_batches: list[dict]  # padded validation batches, the texts sorted by length
    y_val: np.ndarray  # (M,) label ids, in the validation batches' order
    n_val: int


def _encode(tok, data: TrainingData, max_length: int) -> _Encoded:
    train_ids = tok(list(data.texts), truncation=True, max_length=max_length)["input_ids"]
    # validation batches: length-sorted once, labels permuted the same way
    order = np.argsort([len(t) for t in data.val_texts])
    val_sorted = [data.val_texts[i] for i in order]
    n_batches = max(1, math.ceil(len(val_sorted) / 64))
    val_batches = [tok(list(chunk), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
                   for chunk in np.array_split(np.array(val_sorted, dtype=object), n_batches)]
    return _Encoded(train_ids, np.asarray(data.labels, dtype=np.int64),
                    None if data.weights is None else np.asarray(data.weights, dtype=np.float32),
                    val_batches, np.asarray(data.val_labels, dtype=np.int64)[order], len(data.val_texts))


@dataclass
class _Run:
    """What every step uses, set up once before the loop (nanoGPT's train.py), so the step is
    written once for one process or several."""

    clf: Classifier
    acc: Accelerator | SingleProcess
    net: torch.nn.Module  # what the forward and backward go through: the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    params: list[torch.nn.Parameter]  # the trainable ones (gradient clipping)
    loss_fn: AdjustedLoss  # the batch mean: validation, and training without weights
    per_example: AdjustedLoss  # one loss per example: weighted training
    data: _Encoded
    total: int  # optimizer steps of the run
    steps_per_epoch: int
    eval_every: int


def _set_up(clf: Classifier, acc: Accelerator | SingleProcess, data: _Encoded, config: TrainConfig) -> _Run:
    weight = None
    if config.class_weighted:
        present = np.unique(data.y_train)
        w = np.ones(len(clf.labels), dtype=np.float32)
        w[present] = compute_class_weight("balanced", classes=present, y=data.y_train)
        weight = torch.tensor(w, device=clf.device)
    offset = logit_offset(data.y_train, data.w_train, len(clf.labels), config.logit_adjustment, clf.device)
    loss_fn = AdjustedLoss(torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing), offset)
    per_example = AdjustedLoss(torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing,
                                                         reduction="none"), offset)
    model = clf.model
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
    steps_per_epoch = math.ceil(math.ceil(len(data.train_ids) / config.batch_size) / acc.num_processes)
    total = max(1, int(round(config.epochs * steps_per_epoch)))
    if config.max_steps:
        total = min(total, config.max_steps)
    sched = get_linear_schedule_with_warmup(opt, int(config.warmup_ratio * total), total)
    # several processes: DDP, the start weights broadcast from the main process and gradients
    # averaged in backward; one process: the optimizer steps through the GradScaler
    net, opt, sched = acc.prepare(model, opt, sched)
    return _Run(clf, acc, net, opt, sched, params, loss_fn, per_example, data, total, steps_per_epoch,
                eval_every=max(1, steps_per_epoch // config.evals_per_epoch))


def _check_same_data(acc: Accelerator | SingleProcess, data: TrainingData) -> None:
    """Every process read the database itself: they must train on the same rows."""
    if acc.num_processes == 1:
        return
    if len(set(gather_objects(acc, [digest(data.texts, data.labels, data.val_texts, data.val_labels)]))) > 1:
        raise TrainingError("the processes read different labelled data (did the labels change while they "
                            "started?); no version was saved. Run it again.")


# ------------------------------------------------------------------------------ the loop
@dataclass
class _State:
    """How far the run got: advanced by every step."""

    step: int = 0
    seen: int = 0  # training examples this process went through
    losses: list[float] = field(default_factory=list)  # every step's training loss
    history: list[dict] = field(default_factory=list)  # one row per step (FitResult.history)
    best_loss: float = math.inf
    best_step: int = 0
    best_weights: dict | None = None  # a copy of the state dict at the best validation loss
    started: float = field(default_factory=time.perf_counter)


def _train(run: _Run, config: TrainConfig, on_progress: Callable[[Progress], None] | None,
           should_stop: Callable[[], bool] | None) -> _State:
    acc, state = run.acc, _State()
    rng = random.Random(config.seed)
    lengths = [len(x) for x in run.data.train_ids]
    while state.step < run.total:
        # the same seeded order on every process; each takes its own share of the batches
        batches = length_grouped_batches(lengths, config.batch_size, rng)
        for batch_idx in shard_batches(batches, acc.process_index, acc.num_processes):
            if state.step >= run.total:
                break
            if any_process(acc, bool(should_stop and should_stop())):
                raise TrainingCancelled(f"training was cancelled at step {state.step} of {run.total}")
            state.losses.append(_step(run, batch_idx, state.step))
            state.step += 1
            state.seen += len(batch_idx)
            elapsed = time.perf_counter() - state.started
            row = {"step": state.step, "epoch": state.step / run.steps_per_epoch,
                   "train_loss": float(np.mean(state.losses[-20:]))}
            # evaluate every eval_every steps and at the end, not a second time just before it
            step, total, every = state.step, run.total, run.eval_every
            if (step % every == 0 and total - step >= every // 2) or step == total:
                row |= _validate(run, state)
            state.history.append(row)
            if on_progress:  # examples/s estimated for all processes from this one's count
                on_progress(Progress(step, total, row["epoch"], row["train_loss"], row.get("val_loss"),
                                     row.get("val_macro_f1"), elapsed,
                                     state.seen * acc.num_processes / max(elapsed, 1e-9)))
    return state


def _step(run: _Run, batch_idx: list[int], step: int) -> float:
    """One optimizer step on the examples `batch_idx`; returns the loss, averaged over the processes."""
    acc, device, d = run.acc, run.clf.device, run.data
    run.net.train()
    batch = run.clf.tokenizer.pad({"input_ids": [d.train_ids[i] for i in batch_idx]}, return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    y = torch.as_tensor(d.y_train[batch_idx], device=device)
    with acc.autocast(), attention_for_backward(device):
        logits = run.net(**batch).logits.float()  # (B, C)
    if d.w_train is None:
        loss = run.loss_fn(logits, y)
    else:  # the weighted mean over the batch
        w = torch.as_tensor(d.w_train[batch_idx], device=device)
        loss = (run.per_example(logits, y) * w).sum() / w.sum()
    # the mean over the processes: every process sees the same value and stops on the same NaN
    step_loss = acc.reduce(loss.detach(), "mean")
    if not torch.isfinite(step_loss):
        raise TrainingError(
            f"the training loss became {step_loss.item()} at step {step + 1}; no version was saved and "
            "the serving model is unchanged. Try a lower learning rate or precision fp32.")
    run.opt.zero_grad(set_to_none=True)
    acc.backward(loss)  # fp16: the loss is scaled so that small gradients survive
    acc.clip_grad_norm_(run.params, 1.0)
    run.opt.step()
    run.sched.step()
    return step_loss.item()


def _validate(run: _Run, state: _State) -> dict:
    """Validation loss and macro-F1 now; keeps a copy of the weights when the loss is the best yet."""
    val_loss, pred = _evaluate(run.clf, run.data.val_batches, run.data.y_val, run.loss_fn, run.acc)
    if not math.isfinite(val_loss):
        raise TrainingError(
            f"the validation loss became {val_loss} at step {state.step}; no version was saved and the "
            "serving model is unchanged. Try a lower learning rate or precision fp32.")
    out = {"val_loss": val_loss, "val_macro_f1": float(f1_score(run.data.y_val, pred, average="macro"))}
    if val_loss < state.best_loss:  # keep the checkpoint with the best validation loss
        state.best_loss, state.best_step = val_loss, state.step
        state.best_weights = {k: v.detach().clone() for k, v in run.clf.model.state_dict().items()}
    if run.acc.is_main_process:
        log.info("step %d/%d epoch %.2f train_loss %.4f val_loss %.4f val_macro_f1 %.4f", state.step, run.total,
                 state.step / run.steps_per_epoch, float(np.mean(state.losses[-20:])), val_loss, out["val_macro_f1"])
    return out


# ------------------------------------------------------------------------------ the result
def _result(run: _Run, state: _State, precision: str) -> FitResult:
    """The best weights back in `run.clf`, measured once more on the validation split."""
    acc, clf, d = run.acc, run.clf, run.data
    seconds = time.perf_counter() - state.started
    # clf.model again, without the DDP and autocast wrappers prepare() put on it
    model = acc.unwrap_model(run.net, keep_fp32_wrapper=False)
    clf.adopt(model=model)
    per_process = gather_objects(acc, [state.seen])
    seen = sum(per_process)
    if acc.num_processes > 1 and acc.is_main_process:
        log.info("data-parallel over %d processes: %d steps each, training examples per process %s",
                 acc.num_processes, state.step, per_process)
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    model.eval()
    val_loss, pred = _evaluate(clf, d.val_batches, d.y_val, run.loss_fn, acc)
    names, ids = list(clf.labels), list(range(len(clf.labels)))
    report = classification_report(d.y_val, pred, labels=ids, target_names=names, digits=4, zero_division=0)
    rdict = classification_report(d.y_val, pred, labels=ids, target_names=names, output_dict=True, zero_division=0)
    return FitResult(
        labels=tuple(names), best_step=state.best_step, best_val_loss=float(val_loss),
        macro_f1=float(rdict["macro avg"]["f1-score"]), accuracy=float(rdict["accuracy"]),
        report=report, report_dict=rdict, confusion=confusion_matrix(d.y_val, pred, labels=ids).tolist(),
        history=state.history, train_size=len(d.train_ids), val_size=d.n_val, seconds=seconds,
        samples_per_s=seen / max(seconds, 1e-9), device=str(clf.device), precision=precision,
        processes=acc.num_processes,
    )
