"""The accelerator the training loop always has: `accelerate.Accelerator` when `accelerate launch`
(or torchrun) started several processes, else `SingleProcess`, a stand-in with the same few
methods for one process. So the loop is written once, with no `if acc` branches (as
transformers' run_glue_no_trainer always creates an Accelerator); `accelerate` is imported only
for a multi-process launch, so it is no dependency of the app.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from bertdemo.training.config import TrainingError

if TYPE_CHECKING:
    from accelerate import Accelerator, PartialState


class _ScaledOptimizer:
    """An optimizer whose step() goes through a GradScaler (as accelerate's AcceleratedOptimizer
    does): with fp16 the step is skipped when the gradients overflowed, and the scale adapts.
    With the scaler disabled it is a plain step."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self.optimizer, self.scaler = optimizer, scaler

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:  # param_groups, state_dict, ... (what schedulers read)
        return getattr(self.optimizer, name)


class SingleProcess:
    """What the loop uses of `accelerate.Accelerator`, for one process: autocast in the training
    precision and a `GradScaler(enabled=fp16)` that does nothing unless the precision is fp16
    (CUDA without bf16), as nanoGPT sets precision up once before its loop."""

    process_index = 0
    num_processes = 1
    is_main_process = True

    def __init__(self, device: torch.device, amp_dtype: torch.dtype | None) -> None:
        self.device = device
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self._optimizer: torch.optim.Optimizer | None = None

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple:
        self._optimizer = optimizer
        return model, _ScaledOptimizer(optimizer, self.scaler), scheduler

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.amp_dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def clip_grad_norm_(self, params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
        self.scaler.unscale_(self._optimizer)  # clip the true gradients, not the scaled ones
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def reduce(self, tensor: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return tensor  # one process: its value is the total and the mean

    def unwrap_model(self, model: torch.nn.Module, keep_fp32_wrapper: bool = True) -> torch.nn.Module:
        return model


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


def make_accelerator(device: torch.device, amp_dtype: torch.dtype | None) -> Accelerator | SingleProcess:
    """An `accelerate.Accelerator` for a multi-process launch, else a `SingleProcess` on `device`.
    The mixed precision is the training precision already chosen (TrainConfig.precision)."""
    state = launch_state()
    if state is None:
        return SingleProcess(device, amp_dtype)
    from accelerate import Accelerator

    mixed = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "no")
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


def device_setting(device: torch.device) -> str:
    """`cuda:<local rank>`, or `cpu` (accelerate says cpu:0, which is the same device)."""
    return "cpu" if device.type == "cpu" else str(device)


def any_process(acc: Accelerator | SingleProcess, flag: bool) -> bool:
    """True when `flag` is true on any process: they must all stop at the same step."""
    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), "sum").item())


def gather_objects(acc: Accelerator | SingleProcess, items: list) -> list:
    """Every process's `items`, concatenated in process order (one process: `items` itself)."""
    if acc.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


def digest(*columns: Sequence) -> str:
    """A fingerprint of texts and label ids that is the same in every process (hash() is not)."""
    return hashlib.sha256(json.dumps([[x if isinstance(x, str) else int(x) for x in c] for c in columns])
                          .encode()).hexdigest()
