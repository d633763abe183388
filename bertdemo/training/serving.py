"""Which path scores texts for a served version on the CPU (`Settings.serving`, BERTDEMO_SERVING):

- `auto` (default): the int8 graph (model/int8.py) when it passes its agreement gate and scores
  batches at least as fast as PyTorch, else PyTorch in bf16 where the CPU runs bf16 natively,
  else fp32;
- `int8`: the int8 graph even when its gate fails (the failure is logged and shown);
- `bf16` / `fp32`: PyTorch in that precision, nothing exported.

The export lives in the version's folder (`vN/int8/`: the int8 graph, model.int8.xml and .bin, and
`gate.json`). It is built once, in the background, when the version is first served (rebuilt when
missing), and a later start only opens it. On a GPU PyTorch always serves."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import examples
from bertdemo.model import int8
from bertdemo.model.classifier import Classifier, amp_dtype_for
from bertdemo.training.files import VALIDATION_FILE

log = logging.getLogger(__name__)

GateSet = Callable[[], tuple[list[str], list[int], str, list[str]]]  # texts, label ids, what they are, calibration
GATE_SAMPLE = 2000  # labelled examples the int8 gate uses for a version saved without its split
CALIBRATION_SAMPLE = 500  # texts that fix the int8 graph's activation scales (one at a time: ~8 s)


@dataclass(frozen=True)
class Serving:
    path: str  # int8 | bf16 | fp16 | fp32
    note: str  # one sentence for the Train tab, /training_status and the log
    gate: int8.Gate | None = None
    pending: bool = False  # the int8 graph is not built yet (it will be, in the background)


def precision_for(mode: str) -> str:
    """The PyTorch precision a Classifier is loaded with under `mode` (the fallback of int8)."""
    return {"fp32": "fp32", "bf16": "bf16"}.get(mode, "auto")


def reset_precision(clf: Classifier, mode: str) -> None:
    """Serve a freshly trained classifier as a freshly loaded one would (training sets its own)."""
    clf.use_amp(amp_dtype_for(precision_for(mode), clf.device))


def _torch(clf: Classifier, why: str, gate: int8.Gate | None = None, pending: bool = False) -> Serving:
    clf.use_graph(None)
    return Serving(clf.serving_path, f"PyTorch {clf.serving_path}: {why}", gate, pending)


def attach(clf: Classifier, folder: Path, mode: str) -> Serving:
    """Attach the version's cached int8 graph when `mode` and its gate allow; builds nothing."""
    if mode in ("bf16", "fp32"):
        return _torch(clf, f"BERTDEMO_SERVING={mode}.")
    if clf.device.type != "cpu":
        return _torch(clf, f"the model runs on {clf.device.type}; the int8 path is for CPUs.")
    if why := int8.missing_runtime():
        return _torch(clf, why + ".")
    d = folder / int8.FOLDER
    if not (d / int8.GATE_FILE).is_file() or not (d / int8.INT8_FILE).is_file():
        return _torch(clf, "the int8 graph is being built and checked.", pending=True)
    try:
        return _decide(clf, d, mode, int8.Gate.load(d / int8.GATE_FILE))
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        log.warning("the cached int8 graph in %s cannot be used (%s): rebuilding it", d, exc)
        return _torch(clf, "the int8 graph is being rebuilt.", pending=True)


def _decide(clf: Classifier, d: Path, mode: str, gate: int8.Gate, scorer: int8.Int8Scorer | None = None) -> Serving:
    """Attach `scorer` (the graph compiled for the gate, else compiled here) when the gate allows."""
    if (gate.passed and gate.faster) or mode == "int8":
        if getattr(clf.graph, "path", None) != d / int8.INT8_FILE:  # attached already: not compiled twice
            clf.use_graph(scorer or int8.Int8Scorer(d / int8.INT8_FILE, clf.max_threads))
        note = "int8 (OpenVINO). " + gate.summary() + (
            "." if gate.passed else "; served anyway (BERTDEMO_SERVING=int8).")
        if not gate.passed:
            log.warning("%s", note)
        return Serving("int8", note, gate)
    why = "" if not gate.passed else " It is slower on batches here, so PyTorch serves (BERTDEMO_SERVING=int8 forces it)."
    serving = _torch(clf, gate.summary() + "." + why, gate)
    (log.info if gate.passed else log.warning)("%s", serving.note)
    return serving


def build(clf: Classifier, folder: Path, mode: str, gate_set: GateSet) -> Serving:
    """Export, quantize and gate the version in `folder` if that is still to do, then attach (or
    not). Slow (about half a minute here): run it off the request path."""
    current = attach(clf, folder, mode)
    if not current.pending:
        return current
    d = folder / int8.FOLDER
    try:
        t0 = time.perf_counter()
        texts, y, on, calibration = gate_set()
        int8.export(folder, d, calibration)
        exported = time.perf_counter() - t0
        scorer = int8.Int8Scorer(d / int8.INT8_FILE, clf.max_threads)
        gate = int8.timed_gate(clf, scorer, texts, y, on)
        gate = replace(gate, extra=gate.extra | {"export_s": round(exported, 1), "calibration_texts": len(calibration)})
        gate.save(d / int8.GATE_FILE)
    except Exception as exc:
        log.exception("building the int8 graph of %s failed", folder.name)
        return _torch(clf, f"building the int8 graph failed ({type(exc).__name__}: {str(exc)[:200]}).")
    log.info("%s (export %.1f s, gate %.1f s)", gate.summary(), exported, gate.seconds)
    return _decide(clf, d, mode, gate, scorer)


def gate_set(engine: Engine, folder: Path, name: str, labels: Sequence[str]) -> tuple[list[str], list[int], str,
                                                                                     list[str]]:
    """The labelled texts the int8 gate of version `name` (in `folder`) compares on (its validation
    split, or for a version saved without it, a fixed sample of labelled examples) and the texts its
    activation scales are calibrated on (a fixed sample of the other examples)."""
    labels = list(labels)
    f = folder / VALIDATION_FILE
    with Session(engine) as s:  # one read of the database for both
        if f.is_file():
            with open(f, encoding="utf-8", newline="") as fh:
                rows = [(r["text"], r["label"]) for r in csv.DictReader(fh) if r["label"] in labels]
            on = f"the validation split of {name}"
        else:
            rows = [(t, lab) for _i, t, lab in examples.labeled_examples(s) if lab in labels]
            rows = rows[:: max(1, len(rows) // GATE_SAMPLE)][:GATE_SAMPLE]
            on = "a sample of the labelled examples"
        texts = [t for t, _ in rows]
        held_out = set(texts)
        others = [t for _i, t in examples.all_texts(s) if t not in held_out]
    calibration = (others[:: max(1, len(others) // CALIBRATION_SAMPLE)][:CALIBRATION_SAMPLE]
                   or texts[:CALIBRATION_SAMPLE])
    return texts, [labels.index(lab) for _, lab in rows], on, calibration
