"""What a run trains on, read from the database when it starts: the labelled examples with a final
label, split into training and validation (stratified, grouped by dataset), the loss weights, and
the model to start from. Writes nothing, so every process of a data-parallel launch can read it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.config import Settings
from bertdemo.datasets import stratified_split
from bertdemo.db import examples, runs
from bertdemo.db.decisions import awaiting_adjudication
from bertdemo.training.config import TrainConfig, TrainingData, TrainingError
from bertdemo.training.loop import check_labels
from bertdemo.training.quick_retrain import read_trained_labels, read_validation_texts, select
from bertdemo.training.registry import Registry
from bertdemo.training.splits import StartVersion, nested_split, read_start
from bertdemo.training.weights import example_weights

MIN_EXAMPLES = 20


@dataclass(frozen=True, eq=False)
class TrainingInputs:
    """What one run trains on."""

    snapshot: list[tuple[int, str, str]]  # (example id, text, label) of every labelled example trained on
    data: TrainingData  # the split, with each training example's loss weight (TrainConfig.confidence_weighted,
    # general_weight) or None: all 1
    source: str  # the start model: the base encoder's source or the active version's folder
    start_name: str  # "the base encoder" or the active version's name, for messages
    awaiting: int = 0  # labelled items left out: their annotators disagree and no admin decided yet
    val_datasets: tuple[str | None, ...] = ()  # the dataset of each validation example, in split order
    train_datasets: tuple[str | None, ...] = ()  # the dataset of each training example, in split order
    trained_on: str = ""  # a quick retrain's "quick retrain from v2: K changed labels + R replay rows"; "": all

    def validation_rows(self, labels: tuple[str, ...]) -> list[tuple[str, str]]:
        """The validation split as (text, label name) rows (saved beside the version)."""
        return [(t, labels[int(i)]) for t, i in zip(self.data.val_texts, self.data.val_labels)]


def read_inputs(settings: Settings, engine: Engine, registry: Registry, config: TrainConfig) -> TrainingInputs:
    """Read and check what a run with `config` trains on (TrainingError saying what to do when it
    cannot run: too few labels, a class without examples, no active version to start from). A run
    from the active version validates on a nested split (training/splits.py): never on an example
    that version trained on."""
    if config.train_on == "changed":
        return quick_inputs(settings, engine, registry, config)
    labels = settings.labels
    source, start_name, start = settings.model_source, "the base encoder", None
    if config.init_from == "active":
        current = registry.active_version()
        if current is None:
            raise TrainingError("'Start from the active version' needs an active version; "
                                "there is none yet. Start from the base encoder instead.")
        folder = registry.folder(current)
        source, start_name, start = str(folder), current.name, read_start(folder, current.name)
    with Session(engine) as s:
        snapshot = examples.labeled_examples(s)
        contested = set(awaiting_adjudication(s))
        dataset_of = examples.datasets_of(s, [row[0] for row in snapshot])
        confidence = examples.label_confidences(s, [row[0] for row in snapshot]) if config.confidence_weighted else {}
        start_val = ([found[0] for found in examples.review_rows(s, start.validation_texts).values()]
                     if start is not None and start.validation_texts else [])
    # the final label: an adjudicated item trains on the admin's label (its current one); an item
    # whose annotators disagree and that nobody adjudicated yet has no final label: left out
    before = len(snapshot)
    snapshot = [row for row in snapshot if row[0] not in contested]
    if len(snapshot) < MIN_EXAMPLES:
        raise TrainingError(f"Training needs at least {MIN_EXAMPLES} labelled examples; "
                            f"the database has {len(snapshot)}. Label or import more first.")
    y = np.array([labels.index(lab) for _i, _t, lab in snapshot])
    check_labels(y, labels, min_per_class=2)
    texts = [t for _i, t, _l in snapshot]
    groups = [dataset_of.get(i) for i, _t, _l in snapshot]
    tr, va, line = _split(snapshot, y, groups, config, start_name, start, start_val)
    check_labels(y[tr], labels, min_per_class=1)  # a nested split may leave a class in validation only
    weights = None
    if confidence or config.general_weight != 1.0:
        weights = example_weights([confidence.get(snapshot[i][0]) for i in tr], [groups[i] for i in tr], y[tr],
                                  config.general_weight, config.keep_class_shares)
    data = TrainingData([texts[i] for i in tr], y[tr], [texts[i] for i in va], y[va], weights)
    return TrainingInputs(snapshot, data, source, start_name, before - len(snapshot), tuple(groups[i] for i in va),
                          tuple(groups[i] for i in tr), line)


def _split(snapshot: list[tuple[int, str, str]], y: np.ndarray, groups: list[str | None], config: TrainConfig,
           start_name: str, start: StartVersion | None, start_val: list[int]) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices (train, validation) and the report's line: a fresh stratified split from the base
    encoder (line ""); from a version, the nested split (training/splits.py); from a version saved
    without its labels snapshot, a fresh split that says it may hold examples that version trained on."""
    if config.init_from != "active":
        return (*stratified_split(y, config.val_fraction, config.seed, groups), "")
    if start is None:
        tr, va = stratified_split(y, config.val_fraction, config.seed, groups)
        return tr, va, (f"every label, from {start_name}; validation: a fresh split ({start_name} was saved without "
                        f"its labels snapshot, so it may hold examples {start_name} trained on)")
    split = nested_split([row[0] for row in snapshot], y, groups, start, start_val, config.val_fraction, config.seed)
    if len(split.val) == 0:
        raise TrainingError(f"Starting from {start_name} leaves no validation example it never trained on: "
                            "label more examples, or start from the base encoder.")
    return split.train, split.val, split.line()


def quick_inputs(settings: Settings, engine: Engine, registry: Registry, config: TrainConfig) -> TrainingInputs:
    """A quick retrain's inputs (training/quick_retrain.py): from the active version, on the labels changed
    since it was trained plus a replay sample, validated on its validation split with today's labels.
    TrainingError when there is no active version, it is a quick first version or was fine-tuned from
    another base encoder, or no label changed since it was trained."""
    active = registry.active_version()
    if active is None:
        raise TrainingError("A quick retrain starts from the active version; there is none yet. "
                            "Train from the base encoder first.")
    if active.quick:
        raise TrainingError(f"The active version {active.name} is a quick first version (a frozen encoder and a "
                            "logistic regression), not a fine-tuned one: a quick retrain needs a fine-tuned version "
                            "to start from. Train on every label first.")
    folder = registry.folder(active)
    trained, val_texts = read_trained_labels(folder, active.name), read_validation_texts(folder, active.name)
    with Session(engine) as s:
        base = runs.base_model_of(s, active.id)
        contested = set(awaiting_adjudication(s))
        labelled = examples.labeled_examples(s)
        snapshot = [row for row in labelled if row[0] not in contested]  # as read_inputs: a final label only
        ids = [row[0] for row in snapshot]
        dataset_of = examples.datasets_of(s, ids)
        confidence = examples.label_confidences(s, ids) if config.confidence_weighted else {}
        val_ids = [found[0] for found in examples.review_rows(s, val_texts).values()]
    if base != settings.model_source:
        raise TrainingError(f"The active version {active.name} was fine-tuned from another base encoder ({base}) "
                            f"than the one configured now ({settings.model_source}): a quick retrain would mix "
                            "them. Train from the base encoder instead.")
    current = {i: lab for i, _t, lab in snapshot}
    text_of = {i: t for i, t, _l in snapshot}
    strata = {i: f"{dataset_of.get(i)}|{lab}" for i, lab in current.items()}
    pick = select(active.name, current, trained, val_ids, strata, settings.quick_retrain_replay, config.seed)
    labels = settings.labels
    tr, va = pick.training_ids(), list(pick.validation)
    y_tr = np.array([labels.index(current[i]) for i in tr])
    check_labels(y_tr, labels, min_per_class=1)
    weights = None
    if confidence or config.general_weight != 1.0:
        weights = example_weights([confidence.get(i) for i in tr], [dataset_of.get(i) for i in tr], y_tr,
                                  config.general_weight, config.keep_class_shares)
    data = TrainingData([text_of[i] for i in tr], y_tr, [text_of[i] for i in va],
                        np.array([labels.index(current[i]) for i in va]), weights)
    return TrainingInputs(snapshot, data, str(folder), active.name, len(labelled) - len(snapshot),
                          tuple(dataset_of.get(i) for i in va),
                          tuple(dataset_of.get(i) for i in tr), pick.line())
