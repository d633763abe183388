"""Hugging Face ZeroGPU: a Space attaches a GPU only inside a `spaces.GPU` call, run in a worker
process whose arguments and result are pickled; `fit_and_save` is the whole run as one such call."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bertdemo.training.config import FitResult, TrainConfig, TrainingData
from bertdemo.training.loop import fit, start_model


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


def fit_and_save(source: str, labels: Sequence[str], device: str, max_length: int, data: TrainingData,
                 config: TrainConfig, out_dir: str) -> FitResult:
    """A whole run as one picklable call: load `source`, fine-tune on `data`, save the best weights
    to `out_dir`, return the metrics. ZeroGPU runs `spaces.GPU` functions in a worker process whose
    arguments and result cross by pickling, so in-place updates and callbacks would be lost there;
    this shape loses only the live progress and cancel."""
    clf = start_model(source, labels, device, max_length, config)
    result = fit(clf, data, config)
    clf.save(out_dir)
    return result
