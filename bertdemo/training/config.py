"""Training options and results: TrainConfig (which owns its limits), Progress, FitResult, and the
training errors. Shared by the loop, the runner, the registry, the Train tab and the CLI, so it
imports nothing of theirs (the registry reads TrainConfig without pulling in the loop)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
