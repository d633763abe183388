"""Fine-tuning loop: device-agnostic (bf16 autocast on CUDA and on CPUs that support it),
class-weighted cross-entropy, AdamW with linear warm-up and decay, length-grouped dynamic
padding, evaluation during training, and the weights with the best validation loss kept.

It knows nothing of the database or of versions: `bertdemo.jobs` ties it to the store and the
registry. `python -m bertdemo.train --help` runs the same training headless; under
`accelerate launch --num_processes N` the same loop runs data-parallel (`accelerate` is imported
only then: it is no dependency of the app).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.metrics import classification_report, confusion_matrix, f1_score
from sklearn.utils.class_weight import compute_class_weight
from transformers import get_linear_schedule_with_warmup

from bertdemo.classifier import Classifier

if TYPE_CHECKING:  # accelerate is optional; the CLI imports the others at run time (they import this module)
    from accelerate import Accelerator, PartialState

    from bertdemo.config import Settings
    from bertdemo.jobs import Services

log = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training could not run or could not finish; the message is meant for the user."""


class TrainingCancelled(TrainingError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 2.0
    learning_rate: float = 8e-5  # MiniLM-size encoders like a larger rate than BERT-base's 2e-5
    batch_size: int = 32
    max_length: int = 64  # tweets are short: 99.9% of the bundled ones fit in 64 WordPieces
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 42
    freeze_encoder: bool = False  # True: train only the classification head (the seed's variant)
    class_weighted: bool = True  # compute_class_weight("balanced") on the training labels
    evals_per_epoch: int = 4
    precision: str = "auto"  # auto | fp32 | bf16
    val_fraction: float = 0.1
    max_steps: int | None = None  # stop after this many optimizer steps (tests, smoke runs)
    init_from: str = "base"  # base: the pre-trained encoder + a new head | active: the serving version

    def __post_init__(self) -> None:
        checks = [
            (self.epochs > 0, "epochs must be positive"),
            (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (1 <= self.batch_size <= 1024, "batch_size must be in [1, 1024]"),
            (8 <= self.max_length <= 512, "max_length must be in [8, 512]"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.evals_per_epoch >= 1, "evals_per_epoch must be >= 1"),
            (self.precision in ("auto", "fp32", "bf16"), "precision must be auto, fp32 or bf16"),
            (0 < self.val_fraction < 0.5, "val_fraction must be in (0, 0.5)"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1"),
            (self.init_from in ("base", "active"), "init_from must be base or active"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{msg}, got {self!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float
    train_loss: float
    val_loss: float | None = None
    val_macro_f1: float | None = None
    elapsed_s: float = 0.0
    samples_per_s: float = 0.0

    @property
    def fraction(self) -> float:
        return self.step / max(self.total_steps, 1)


@dataclass(frozen=True)
class FitResult:
    labels: tuple[str, ...]
    best_step: int
    best_val_loss: float
    macro_f1: float
    accuracy: float
    report: str  # sklearn classification_report, text
    report_dict: dict
    confusion: list[list[int]]  # rows = true label, columns = predicted, in label order
    history: list[dict] = field(default_factory=list)  # one dict per logged step
    train_size: int = 0
    val_size: int = 0
    seconds: float = 0.0
    samples_per_s: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    processes: int = 1  # data-parallel processes (accelerate launch); samples_per_s counts them all

    def metrics(self) -> dict:
        d = asdict(self)
        d.pop("history")
        return d


def zero_gpu() -> bool:
    """True when the Hugging Face `spaces` package is importable (a ZeroGPU Space)."""
    try:
        import spaces  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_task(fn: Callable, duration: int = 600) -> Callable:
    """Wrap `fn` with `spaces.GPU` when the Hugging Face `spaces` package is importable (ZeroGPU
    hardware attaches a GPU only for the duration of such a call); otherwise return it unchanged.
    The import is guarded: `spaces` is no dependency of the app."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


def fit_and_save(source: str, labels: Sequence[str], device: str, max_length: int, train_texts: Sequence[str],
                 train_labels: Sequence[int], val_texts: Sequence[str], val_labels: Sequence[int],
                 config: TrainConfig, out_dir: str) -> FitResult:
    """A whole run as one picklable call: load `source`, fine-tune, save the best weights to
    `out_dir`, return the metrics. ZeroGPU runs `spaces.GPU` functions in a worker process whose
    arguments and result cross by pickling, so in-place updates and callbacks would be lost there;
    this shape loses only the live progress and cancel."""
    clf = Classifier.load(source, labels, device, max_length, precision=config.precision)
    result = fit(clf, train_texts, train_labels, val_texts, val_labels, config)
    clf.save(out_dir)
    return result


def _is_oom(exc: BaseException) -> bool:
    # torch.OutOfMemoryError on CUDA; some back ends (MPS, CPU allocators) raise a RuntimeError
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def launch_state() -> PartialState | None:
    """accelerate's `PartialState` when this process is one of several started by
    `accelerate launch` (or torchrun); None for a plain single process, as in the app.

    torchrun-style launchers (what `accelerate launch` uses for several GPUs, or for several CPU
    processes with `--multi_gpu`) mark their workers; only then is `accelerate` imported."""
    if not (torch.distributed.is_available() and torch.distributed.is_torchelastic_launched()):
        return None
    try:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env
    except ImportError as exc:
        raise TrainingError("this process was started by a distributed launcher, but data-parallel training "
                            "needs the `accelerate` package (pip install accelerate)") from exc
    # `--cpu`, or no CUDA at all: gloo between CPU processes. PartialState is a singleton, so the
    # first call decides; Accelerator() later reuses it.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    return state if state.num_processes > 1 else None


def _accelerator(clf: Classifier) -> Accelerator | None:
    """An `accelerate.Accelerator` for a multi-process launch, None for a single process. Its mixed
    precision is the training precision already chosen for `clf` (TrainConfig.precision)."""
    state = launch_state()
    if state is None:
        return None
    from accelerate import Accelerator

    mixed = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(clf.amp_dtype, "no")
    # our schedule counts optimizer steps of one process; with step_scheduler_with_optimizer
    # accelerate would step it num_processes times per step (it assumes unsharded batch counts)
    return Accelerator(cpu=state.device.type == "cpu", mixed_precision=mixed, step_scheduler_with_optimizer=False)


def shard_batches(batches: list[list[int]], rank: int, world: int) -> list[list[int]]:
    """This process's share of one epoch: every `world`-th batch from `rank` on. Every process
    builds the same seeded order, so the shares are disjoint; the order is first cycled to a
    multiple of `world` because DDP needs the same number of steps on every process."""
    if world == 1:
        return batches
    n = math.ceil(len(batches) / world) * world
    return [batches[i % len(batches)] for i in range(n)][rank::world]


def _device_setting(device: torch.device) -> str:
    """`cuda:<local rank>`, or `cpu` (accelerate says cpu:0, which is the same device)."""
    return "cpu" if device.type == "cpu" else str(device)


def _any_process(acc: Accelerator | None, flag: bool) -> bool:
    """True when `flag` is true on any process: they must all stop at the same step."""
    if acc is None:
        return flag
    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), "sum").item())


def _gather(items: list) -> list:
    from accelerate.utils import gather_object

    return gather_object(items)


def _digest(*columns: Sequence) -> str:
    """A fingerprint of texts and label ids that is the same in every process (hash() is not)."""
    return hashlib.sha256(json.dumps([[x if isinstance(x, str) else int(x) for x in c] for c in columns])
                          .encode()).hexdigest()


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
              acc: Accelerator | None = None) -> tuple[float, np.ndarray]:
    """Validation loss and predictions. Under accelerate each process scores every N-th batch and
    the parts are gathered, so every process gets the same result (and keeps the same best step)."""
    model = clf.model
    model.eval()
    chunks = np.array_split(labels, len(enc))
    mine = range(len(enc)) if acc is None else range(acc.process_index, len(enc), acc.num_processes)
    parts = []  # (batch index, summed loss, predictions)
    with torch.inference_mode(), clf._autocast():
        for i in mine:
            batch = {k: v.to(clf.device) for k, v in enc[i].items()}
            logits = model(**batch).logits.float()
            loss = loss_fn(logits, torch.as_tensor(chunks[i], device=clf.device)).item() * len(chunks[i])
            parts.append((i, loss, logits.argmax(-1).cpu().numpy()))
    if acc is not None:
        parts = sorted(_gather(parts), key=lambda part: part[0])
    return sum(loss for _i, loss, _p in parts) / len(labels), np.concatenate([p for _i, _l, p in parts])


def fit(clf: Classifier, train_texts: Sequence[str], train_labels: Sequence[int],
        val_texts: Sequence[str], val_labels: Sequence[int], config: TrainConfig = TrainConfig(),
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Fine-tune `clf.model` in place; on return it holds the weights with the best val loss."""
    names = clf.labels
    if len(train_texts) != len(train_labels) or len(val_texts) != len(val_labels):
        raise ValueError("texts and labels must have the same length")
    check_labels(train_labels, names, 1)
    if len(val_texts) == 0:
        raise TrainingError("the validation split is empty; label more examples")
    set_seed(config.seed)
    rng = random.Random(config.seed)
    serving_dtype = clf.amp_dtype
    clf.amp_dtype = None if config.precision == "fp32" else (
        torch.bfloat16 if config.precision == "bf16" else clf.amp_dtype)
    try:
        return _fit(clf, train_texts, train_labels, val_texts, val_labels, config, on_progress, should_stop, rng)
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


def _fit(clf, train_texts, train_labels, val_texts, val_labels, config, on_progress, should_stop, rng):
    names = clf.labels
    precision = str(clf.amp_dtype).replace("torch.", "") if clf.amp_dtype else "fp32"
    # several processes (accelerate launch): the same loop, data-parallel; None in the app and a plain CLI
    acc = _accelerator(clf)
    rank, world = (acc.process_index, acc.num_processes) if acc else (0, 1)
    is_main = rank == 0
    if acc:
        clf.device = torch.device(_device_setting(acc.device))  # prepare() puts the model on this process's device
        # every process read the database itself: they must train on the same rows
        if len(set(_gather([_digest(train_texts, train_labels, val_texts, val_labels)]))) > 1:
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
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    if config.freeze_encoder:
        for p in model.base_model.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
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
    scaler = torch.amp.GradScaler("cuda") if clf.amp_dtype == torch.float16 and not acc else None
    net = model  # what the forward and backward go through: the model, or its DDP wrapper
    if acc:  # DDP: the start weights are broadcast from the main process, gradients averaged in backward
        net, opt, sched = acc.prepare(model, opt, sched)

    best_loss, best_step, best_state = math.inf, 0, None
    history: list[dict] = []
    step, seen, t0, running = 0, 0, time.perf_counter(), []
    if is_main:
        log.info("training on %d examples (%d validation), %d steps, %s on %s%s",
                 len(train_texts), len(val_texts), total, precision, device,
                 f", data-parallel over {world} processes (world size {world})" if acc else "")
    while step < total:
        # the same seeded order on every process; each takes its own share of the batches
        for batch_idx in shard_batches(length_grouped_batches(lengths, config.batch_size, rng), rank, world):
            if step >= total:
                break
            if _any_process(acc, bool(should_stop and should_stop())):
                raise TrainingCancelled(f"training was cancelled at step {step} of {total}")
            net.train()
            batch = tok.pad({"input_ids": [train_ids[i] for i in batch_idx]}, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items()}
            y = torch.as_tensor(y_train[batch_idx], device=device)
            # under accelerate, prepare() already wrapped the forward in the mixed-precision autocast
            with contextlib.nullcontext() if acc else clf._autocast():
                logits = net(**batch).logits.float()  # (B, C)
            loss = loss_fn(logits, y)
            # the mean over the processes: every process sees the same value and stops on the same NaN
            step_loss = acc.reduce(loss.detach(), "mean") if acc else loss.detach()
            if not torch.isfinite(step_loss):
                raise TrainingError(
                    f"the training loss became {step_loss.item()} at step {step + 1}; no version was saved and "
                    "the serving model is unchanged. Try a lower learning rate or precision fp32.")
            opt.zero_grad(set_to_none=True)
            if acc:  # DDP averages the gradients over the processes; fp16 loss scaling is accelerate's
                acc.backward(loss)
                acc.clip_grad_norm_(params, 1.0)
                opt.step()
            elif scaler:  # fp16 (CUDA without bf16): scale the loss so small gradients survive
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
            sched.step()
            step += 1
            seen += len(batch_idx)
            running.append(step_loss.item())
            elapsed = time.perf_counter() - t0
            row = {"step": step, "epoch": step / steps_per_epoch, "train_loss": float(np.mean(running[-20:]))}
            if step % eval_every == 0 or step == total:
                val_loss, pred = _evaluate(clf, val_enc, y_val_sorted, loss_fn, acc)
                if not math.isfinite(val_loss):
                    raise TrainingError(
                        f"the validation loss became {val_loss} at step {step}; no version was saved and the "
                        "serving model is unchanged. Try a lower learning rate or precision fp32.")
                row |= {"val_loss": val_loss, "val_macro_f1": float(f1_score(y_val_sorted, pred, average="macro"))}
                if val_loss < best_loss:  # keep the checkpoint with the best validation loss
                    best_loss, best_step = val_loss, step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if is_main:
                    log.info("step %d/%d epoch %.2f train_loss %.4f val_loss %.4f val_macro_f1 %.4f",
                             step, total, row["epoch"], row["train_loss"], val_loss, row["val_macro_f1"])
            history.append(row)
            if on_progress:  # examples/s estimated for all processes from this one's count
                on_progress(Progress(step, total, row["epoch"], row["train_loss"], row.get("val_loss"),
                                     row.get("val_macro_f1"), elapsed, seen * world / max(elapsed, 1e-9)))
    seconds = time.perf_counter() - t0
    if acc:
        # clf.model again, without the autocast wrapper prepare() put on its forward
        model = clf.model = acc.unwrap_model(net, keep_fp32_wrapper=False)
        per_process = _gather([seen])
        seen = sum(per_process)
        if is_main:
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


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m bertdemo.train",
        description="Fine-tune the classifier on the labels in the database and register the result "
                    "as a new model version (the same path as the Train tab).")
    p.add_argument("--epochs", type=float, default=d.epochs, help="passes over the training split")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="peak AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per optimizer step")
    p.add_argument("--max-length", type=int, default=d.max_length, help="WordPieces per example (truncated beyond)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for the split, shuffling and head init")
    p.add_argument("--freeze-encoder", action="store_true", help="train only the classification head")
    p.add_argument("--init-from", choices=("base", "active"), default=d.init_from,
                   help="base: the pre-trained encoder with a new head; active: continue from the serving version")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=d.precision,
                   help="auto = bf16 autocast where the hardware supports it")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help="stratified validation share")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    p.add_argument("--no-activate", action="store_true", help="register the version but keep serving the active one")
    p.add_argument("--user", default="cli", help="recorded as the run's owner")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
                             max_length=args.max_length, seed=args.seed, freeze_encoder=args.freeze_encoder,
                             precision=args.precision, val_fraction=args.val_fraction, max_steps=args.max_steps,
                             init_from=args.init_from)
    except ValueError as exc:
        build_parser().error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bertdemo.config import Settings  # the CLI is the top of the stack: wire it up here
    from bertdemo.jobs import Services

    settings = Settings.from_env()
    try:
        state = launch_state()
    except TrainingError as exc:
        log.error("training failed: %s", exc)
        return 1
    if state is None:  # one process: the path the app's Train tab takes
        services = Services.create(settings)
        services.ensure_dataset()
        return _train_and_register(services, config, args)

    # several processes (accelerate launch): all train, only the main one writes the database and
    # the models folder; each uses its own device (cuda:<local rank>, or the CPU)
    settings = replace(settings, device=_device_setting(state.device))
    try:
        if state.is_main_process:
            services = Services.create(settings)
            services.ensure_dataset()
        state.wait_for_everyone()  # the others read the examples the main process imported
        if state.is_main_process:
            return _train_and_register(services, config, args)
        return _follow(settings, config, state.process_index, state.num_processes)
    finally:
        state.destroy_process_group()


def _train_and_register(services: Services, config: TrainConfig, args: argparse.Namespace) -> int:
    try:
        run = services.jobs.run_sync(config, user=args.user, activate=not args.no_activate)
    except TrainingError as exc:
        log.error("training failed: %s", exc)
        return 1
    print(run.report)
    log.info("registered version %s (macro-F1 %.4f)", run.version_name, run.macro_f1)
    return 0


def _follow(settings: Settings, config: TrainConfig, rank: int, world: int) -> int:
    """A non-main process of a data-parallel launch: the same inputs and the same `fit` as the
    main process's run, read-only; nothing is registered or saved here."""
    from bertdemo import store
    from bertdemo.jobs import JobRunner
    from bertdemo.registry import Registry

    engine = store.make_engine(settings.database_url)  # the main process created the tables
    try:
        inputs = JobRunner(settings, engine, Registry(settings, engine)).training_inputs(config)
        clf = Classifier.load(inputs.source, settings.labels, settings.device, settings.max_length,
                              precision=config.precision)
        result = fit(clf, *inputs.split, config)
    except TrainingError as exc:
        log.error("process %d of %d: training failed: %s", rank, world, exc)
        return 1
    finally:
        engine.dispose()
    log.info("process %d of %d (world size %d) finished %d steps on %d training examples; "
             "the main process registers the version", rank, world, world,
             result.history[-1]["step"] if result.history else 0, result.train_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
