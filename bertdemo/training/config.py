"""Training options, data and results: TrainConfig (which owns its limits), TrainingData, Progress,
FitResult, and the training errors. Shared by the loop, the runner, the registry, the Train tab and the CLI, so it
imports nothing of theirs (the registry reads TrainConfig without pulling in the loop)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from bertdemo.errors import BadInput, UserError
from bertdemo.validate import choice, number, range_text


class TrainingError(UserError):
    """Training could not run or could not finish (too few labels, out of memory, a NaN loss); the
    message says why and what to try."""


class TrainingCancelled(TrainingError):
    pass


@dataclass(frozen=True)
class Limit:
    """The values a numeric option takes: [low, high] ((low, high] with low_open), whole or not."""

    low: float
    high: float
    whole: bool = False
    low_open: bool = False
    label: str = ""  # the form's name for it (the CLI uses --flag-names)

    def describe(self) -> str:
        return range_text(self.low, self.high, whole=self.whole, low_open=self.low_open)


def _opt(default: object, low: float, high: float, label: str, *, whole: bool = False, low_open: bool = False,
         nullable: bool = False):
    # nullable: None is a value too (options whose default is None are nullable anyway)
    return field(default=default, metadata={"limit": Limit(low, high, whole, low_open, label),
                                            "nullable": nullable or default is None})


PRECISIONS = ("auto", "fp32", "bf16")
STARTS = ("base", "active")  # base: the pre-trained encoder + a new head | active: the serving version
TRAIN_SETS = ("all", "changed")  # all: every labelled example | changed: a quick retrain from the active version,
# on the labels changed since it was trained plus a replay sample of the rest (training/quick_retrain.py)


@dataclass(frozen=True)
class TrainConfig:
    """Options of one fine-tuning run, validated once here: the Train tab and the CLI read their
    defaults and bounds from it (`TrainConfig.limit("epochs")`) and pass values through it, so
    a value is refused in one place with one message (BadInput naming the option and its range).
    Numbers may come as text ("2"); they are stored as int or float."""

    epochs: float = _opt(1.0, 0.01, 100.0, "Epochs")  # one pass over airline + general tweets (bench/README.md,
    # "The default recipe"): as good as 1.5 and about 4.5 minutes on 2 CPU cores
    learning_rate: float = _opt(8e-5, 0.0, 0.5, "Learning rate", low_open=True)  # MiniLM-size encoders like
    # a larger rate than BERT-base's 2e-5
    batch_size: int = _opt(32, 1, 1024, "Batch size", whole=True)
    max_length: int = _opt(64, 8, 512, "Max length", whole=True)  # tweets are short: 99.9% of the bundled
    # ones fit in 64 WordPieces
    warmup_ratio: float = _opt(0.06, 0.0, 0.99, "Warm-up ratio")
    weight_decay: float = _opt(0.01, 0.0, 1.0, "Weight decay")
    seed: int = _opt(42, 0, 2**32 - 1, "Seed", whole=True)  # the split, the batch order and a new head (numpy,
    # scikit-learn, torch)
    freeze_encoder: bool = False  # True: train only the classification head (the seed's variant)
    freeze_word_embeddings: bool = False  # True: the WordPiece embedding matrix stays as pre-trained
    pooling: str = "mean"  # the head's input for a new head (model/pooling.py): "mean" (measured better for the
    # packaged encoder, which was trained with mean pooling) or "cls"
    class_weighted: bool = False  # True: compute_class_weight("balanced") on the training labels. Off since
    # issue 13: on airline + general tweets the plain loss scored higher macro-F1 and calibration (bench/README.md)
    label_smoothing: float = _opt(0.0, 0.0, 0.5, "Label smoothing")  # of the cross-entropy targets
    logit_adjustment: float = _opt(1.0, 0.0, 3.0, "Logit adjustment")  # tau of the logit-adjusted loss (Menon
    # et al., ICLR 2021, training/losses.py): the loss sees logits + tau * log(training class prior), predictions the
    # plain logits, so the model learns the classes' evidence without the training set's class shares (tau 1: as for
    # balanced classes). 1 since issue 23: +0.033 macro-F1 on topics never trained on (bench/ood.py, bench/README.md)
    confidence_weighted: bool = True  # each imported example's loss weighs its labellers' agreement
    # (label_confidence, 0.26-1.0); a label a person set weighs 1. +0.010 airline macro-F1 (bench/README.md, issue 13)
    keep_class_shares: bool = True  # the confidence weights are divided by their mean within each (dataset,
    # class): a class whose crowd agreed less (airline neutral) keeps its share of the loss (training/weights.py)
    general_weight: float = _opt(0.5, 0.0, 1.0, "General tweets' weight", low_open=True)  # a factor on the loss
    # weight of each example from the bundled general tweets, the auxiliary data; the airline tweets (the
    # annotation target), imports and labels typed in weigh 1. With keep_class_shares: airline macro-F1
    # 0.8185 on average over 5 seeds, against 0.8144 without both (bench/README.md, round three)
    dropout: float | None = _opt(0.0, 0.0, 0.9, "Dropout", nullable=True)  # of every dropout layer (embeddings, attention,
    # hidden states, head) while training; None: the model's own (0.1 for BERT). 0 since issue 14: one epoch
    # needs no regularizing; +0.020 macro-F1 over 5 seeds in bench_training, +0.005 airline in recipes.py
    layer_lr_decay: float = _opt(1.0, 0.0, 1.0, "Layer-wise learning-rate decay", low_open=True)  # each layer
    # below the head learns at this factor of the one above it (embeddings lowest); 1.0: one rate for all
    evals_per_epoch: int = _opt(4, 1, 1000, "Evaluations per epoch", whole=True)
    precision: str = "auto"  # auto | fp32 | bf16
    val_fraction: float = _opt(0.1, 0.01, 0.49, "Validation fraction")
    max_steps: int | None = _opt(None, 1, 10_000_000, "Max steps", whole=True)  # stop after this many optimizer
    # steps (tests, smoke runs); None = no limit
    init_from: str = "base"  # see STARTS
    train_on: str = "all"  # see TRAIN_SETS; "changed" needs init_from "active"

    def __post_init__(self) -> None:
        for f in fields(self):
            limit: Limit | None = f.metadata.get("limit")
            value = getattr(self, f.name)
            if limit is None or (value is None and f.metadata["nullable"]):
                continue
            x = number(value, f"{limit.label} ({f.name})", limit.low, limit.high, whole=limit.whole,
                       low_open=limit.low_open)
            object.__setattr__(self, f.name, int(x) if limit.whole else x)
        choice(self.precision, "precision", PRECISIONS)
        choice(self.init_from, "init_from", STARTS)
        choice(self.train_on, "train_on", TRAIN_SETS)
        if self.train_on == "changed" and self.init_from != "active":
            raise BadInput("A quick retrain (train_on 'changed') starts from the active version: set init_from to "
                           f"'active', not {self.init_from!r}.")
        choice(self.pooling, "pooling", ("cls", "mean"))

    @property
    def new_head_pooling(self) -> str | None:
        """The pooling to give the model a run starts from: this config's for a new head on the
        base encoder; None (as it was trained) when starting from the active version."""
        return self.pooling if self.init_from == "base" else None

    @staticmethod
    def limit(name: str) -> Limit:
        """The bounds of a numeric option, for the UI's inputs and the CLI's help."""
        return {f.name: f.metadata["limit"] for f in fields(TrainConfig) if "limit" in f.metadata}[name]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class TrainingData:
    """What one run trains and validates on. The sequences are parallel: `texts[i]` has the label id
    `labels[i]` and the loss weight `weights[i]` (None: every example weighs 1); likewise
    `val_texts` and `val_labels`, whose loss is never weighted. Picklable (a ZeroGPU worker gets it)."""

    texts: Sequence[str]
    labels: Sequence[int]
    val_texts: Sequence[str]
    val_labels: Sequence[int]
    weights: Sequence[float] | None = None

    def check(self) -> None:
        """ValueError when the parallel sequences differ in length or a weight is not above 0."""
        if len(self.texts) != len(self.labels) or len(self.val_texts) != len(self.val_labels):
            raise ValueError("texts and labels must have the same length")
        if self.weights is not None and (len(self.weights) != len(self.texts) or min(self.weights) <= 0):
            raise ValueError("sample_weights needs one weight above 0 per training example")


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
    # training/evaluation.py, filled in by the runner on the validation split
    per_dataset: dict = field(default_factory=dict)  # dataset -> {"macro_f1", "accuracy", "n"}
    ece: float | None = None  # expected calibration error
    reliability: list = field(default_factory=list)  # per confidence bin: n, mean confidence, accuracy
    trained_on: str = ""  # what the run trained on when not every label: "quick retrain from v2: 280 changed
    # labels + 2,000 replay rows" (training/quick_retrain.py); "" for every labelled example

    def metrics(self) -> dict:
        d = asdict(self)
        d.pop("history")
        return d
