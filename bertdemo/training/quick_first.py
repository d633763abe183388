"""A first model within a minute: on a first start, before the fine-tune of version 1, a logistic
regression fitted on what the classification head of the frozen packaged encoder sees (its own
pooling: tanh(dense(mean of the token vectors)) by default, model/pooling.py) for a stratified
sample of the bundled labelled tweets, saved as an ordinary version.

A logistic regression on the pooled vector *is* a linear head: the head's weights are the
regression's coefficients (the feature scaling folded in), so the saved folder is the base encoder
plus that head, and serving, attributions, the int8 path and the registry treat it as any version;
its probabilities are the regression's. The version records its kind ("quick", VersionInfo.kind)
and is scored on the validation split the fine-tune uses. When to build it (Settings.quick_first)
is Services.start's; the fine-tune of the same run replaces it (training/runner.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bertdemo.config import Settings
from bertdemo.model.classifier import Classifier, length_sorted_batches
from bertdemo.training import serving, stopping
from bertdemo.training.config import FitResult, TrainConfig
from bertdemo.training.evaluation import evaluate
from bertdemo.training.inputs import TrainingInputs
from bertdemo.training.registry import KIND_TEXTS, QUICK_KIND, Registry, VersionInfo

ABSENT_BIAS = -30.0  # the head's bias for a class the sample lacks: probability ~1e-13, as the LR gives none
BATCH = 64
C = 1.0  # the regression's inverse regularisation strength (scikit-learn's default) on standardised features
Progress = Callable[[int, int], None]  # (texts embedded so far, texts to embed)


def stratified_sample(keys: Sequence[object], size: int, seed: int = 0) -> np.ndarray:
    """Indices of about `size` of the items, sorted, each stratum (equal `keys`, e.g. (dataset,
    label)) kept at its share, and at least one item of every stratum; every index when `size`
    covers them all."""
    n = len(keys)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    strata: dict[object, list[int]] = {}
    for i, k in enumerate(keys):
        strata.setdefault(k, []).append(i)
    picked: list[int] = []
    for k in sorted(strata, key=repr):  # a fixed order: the same seed picks the same items
        members = np.asarray(strata[k])
        take = min(len(members), max(1, round(size * len(members) / n)))
        picked += rng.choice(members, take, replace=False).tolist()
    return np.sort(np.asarray(picked))


def head_inputs(clf: Classifier, texts: Sequence[str], on_batch: Progress | None = None) -> np.ndarray:
    """(N, hidden) float32: the vector `clf`'s classification head receives for each text (its
    pooling, dropout off), from the serving path's forward (the precision predictions use), so a
    head fitted on them scores exactly what serving will feed it."""
    model = clf.serving_model()
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Module):
        raise ValueError(f"{type(model).__name__} has no `classifier` head to fit")
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].float()))
    amp = torch.autocast(clf.device.type, dtype=clf.amp_dtype or torch.float32, enabled=clf.amp_dtype is not None)
    done = 0
    try:
        for idx, batch in length_sorted_batches(clf.tokenizer, texts, clf.max_length, BATCH):
            batch = {k: v.to(clf.device) for k, v in batch.items()}
            with clf.exclusive(batch["input_ids"].numel()), torch.inference_mode(), amp:
                seen.clear()
                model(**batch)
                out[idx] = seen[-1].cpu().numpy()
            done += len(idx)
            if on_batch is not None:
                on_batch(done, len(texts))
    finally:
        hook.remove()
    return out


@dataclass(frozen=True, eq=False)
class LinearHead:
    """The fitted regression as head weights: logits = x @ weight.T + bias over every label."""

    weight: np.ndarray  # (labels, hidden) float32
    bias: np.ndarray  # (labels,) float32
    model: object  # the fitted scikit-learn Pipeline (StandardScaler + LogisticRegression)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """The head's probabilities for head inputs `x` (N, hidden): softmax of its logits."""
        z = x.astype(np.float64) @ self.weight.T.astype(np.float64) + self.bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)


def fit_head(x: np.ndarray, y: np.ndarray, n_labels: int, seed: int = 0) -> LinearHead:
    """A multinomial logistic regression on standardised `x` (the pooled vectors are tiny: the
    packaged pooler's weights were never trained), folded into one linear map on raw `x`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000, random_state=seed))
    with threadpool_limits(1):  # two BLAS threads on two shared cores spin against each other (training/quick.py)
        pipe.fit(x, y)
    scaler, lr = pipe[0], pipe[-1]
    coef, intercept = lr.coef_, lr.intercept_
    if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row, p(second) = sigmoid(row); softmax of [0, row]
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    w = coef / scaler.scale_  # (x - mean) / scale . c  =  x . (c / scale) - mean . (c / scale)
    b = intercept - w @ scaler.mean_
    weight = np.zeros((n_labels, x.shape[1]))
    bias = np.full(n_labels, ABSENT_BIAS)
    weight[lr.classes_], bias[lr.classes_] = w, b
    return LinearHead(weight.astype(np.float32), bias.astype(np.float32), pipe)


def install_head(clf: Classifier, head: LinearHead) -> None:
    """Put `head`'s weights into `clf`'s classification layer (the serving copy follows)."""
    layer = clf.model.classifier
    if not isinstance(layer, torch.nn.Linear) or tuple(layer.weight.shape) != head.weight.shape:
        raise ValueError(f"the model's classifier is not a Linear of shape {head.weight.shape}")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.weight))
        layer.bias.copy_(torch.from_numpy(head.bias))
    clf.adopt()


@dataclass(frozen=True, eq=False)
class QuickVersion:
    """The registered quick version and its classifier, ready to serve."""

    info: VersionInfo
    clf: Classifier


def build(settings: Settings, registry: Registry, inputs: TrainingInputs, config: TrainConfig,
          on_batch: Progress | None = None) -> QuickVersion:
    """Embed a stratified sample (Settings.quick_first_sample, by dataset and label) of the run's
    training split and its whole validation split with the frozen base encoder, fit the head, and
    register the version (kind "quick"), scored on that validation split; not activated here."""
    started = time.perf_counter()
    data, labels = inputs.data, settings.labels
    keys = list(zip(inputs.train_datasets or [None] * len(data.texts), np.asarray(data.labels).tolist()))
    picked = stratified_sample(keys, settings.quick_first_sample, config.seed)
    texts = [data.texts[i] for i in picked] + list(data.val_texts)
    clf = Classifier.load(settings.model_source, labels, settings.device, settings.max_length, name="quick",
                          precision=serving.precision_for(settings.serving), pooling=config.pooling)
    x = head_inputs(clf, texts, on_batch)
    n = len(picked)
    head = fit_head(x[:n], np.asarray(data.labels)[picked], len(labels), config.seed)
    install_head(clf, head)
    result = _result(head.proba(x[n:]), inputs, labels, n, time.perf_counter() - started, clf)
    row_of = {row[1]: row for row in inputs.snapshot}  # texts are unique: imports skip duplicates
    snapshot = [row_of[data.texts[i]] for i in picked if data.texts[i] in row_of]
    quick_config = TrainConfig(**(config.to_dict() | {"freeze_encoder": True, "init_from": "base"}))
    info = registry.save(clf, result, quick_config, None, "system", snapshot, inputs.validation_rows(labels),
                         kind=QUICK_KIND)
    clf.rename(info.name)
    serving.reset_precision(clf, settings.serving)  # serve as a freshly loaded version would
    stopping.record_pool_quietly(registry.engine, settings, info.id, clf.predict_proba)  # logs a failure
    return QuickVersion(info, clf)


def _result(probs: np.ndarray, inputs: TrainingInputs, labels: tuple[str, ...], n: int, seconds: float,
            clf: Classifier) -> FitResult:
    """The quick version's figures on the validation split, as a run's: pooled, per dataset,
    calibration, and a report that says what it is."""
    from sklearn.metrics import classification_report, confusion_matrix, f1_score, log_loss

    y, ids = np.asarray(inputs.data.val_labels), list(range(len(labels)))
    pred = probs.argmax(axis=1)
    ev = evaluate(probs, y, inputs.val_datasets, labels)
    text = classification_report(y, pred, labels=ids, target_names=list(labels), digits=4, zero_division=0)
    header = (f"Quick version ({KIND_TEXTS[QUICK_KIND]}): a logistic regression on the frozen base encoder's "
              f"pooled sentence vectors (the head's own input), fitted on {n:,} training tweets sampled by dataset "
              f"and label, in {seconds:.0f} s with scoring; the fine-tune that follows replaces it.")
    return FitResult(
        labels=labels, best_step=0, best_val_loss=round(float(log_loss(y, probs, labels=ids)), 4),
        macro_f1=float(f1_score(y, pred, labels=ids, average="macro", zero_division=0)),
        accuracy=float((pred == y).mean()), report=f"{header}\n\n{text}\n\n{ev.lines()}\n",
        report_dict=classification_report(y, pred, labels=ids, target_names=list(labels), output_dict=True,
                                          zero_division=0),
        confusion=confusion_matrix(y, pred, labels=ids).tolist(), train_size=n, val_size=len(y),
        seconds=round(seconds, 2), samples_per_s=round((n + len(y)) / max(seconds, 1e-9), 1),
        device=clf.device.type, precision=clf.amp_path, per_dataset=ev.per_dataset, ece=ev.ece,
        reliability=ev.reliability)
