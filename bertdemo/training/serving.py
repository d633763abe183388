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
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import examples
from bertdemo.model import int8
from bertdemo.model.classifier import Classifier, amp_dtype_for
from bertdemo.training.files import VALIDATION_FILE
from bertdemo.training.follow_up import Abandoned, Ticket
from bertdemo.training.records import Phase, Report

log = logging.getLogger(__name__)

GateSet = Callable[[], tuple[list[str], list[int], str, list[str]]]  # texts, label ids, what they are, calibration
GATE_SAMPLE = 2000  # labelled examples the int8 gate uses for a version saved without its split
EXPORT_NICE = 10  # the export process's nice value: predictions (nice 0) win the cores
_EXPORT_CHILD = (f"import json, os, sys; os.nice({EXPORT_NICE}); from bertdemo.model.int8 import export; "
                 "a = json.load(sys.stdin); export(a['folder'], a['out'], a['calibration'])")
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


def quick_version(clf: Classifier) -> Serving:
    """The Serving of a quick first version (training/quick_first.py): PyTorch, no int8 build. Its
    logistic-regression head's weights are ~300x the fine-tuned head's, so int8's small encoder
    errors become 1-2 logits: 97.1% agreement unguarded, and the fitted guard re-scores ~47% of
    texts in fp32 (slower than bf16; bench/README.md, 2026-12-04). Building it would cost ~50 s of
    CPU beside the first fine-tune, for a version that serves a few minutes."""
    return _torch(clf, "a quick first version (its int8 graph cannot win; the fine-tune replaces it).")


def _pytorch_only(clf: Classifier, mode: str) -> Serving | None:
    """PyTorch's Serving when `mode`, the device or the runtime rule the int8 path out; else None."""
    if mode in ("bf16", "fp32"):
        return _torch(clf, f"BERTDEMO_SERVING={mode}.")
    if clf.device.type != "cpu":
        return _torch(clf, f"the model runs on {clf.device.type}; the int8 path is for CPUs.")
    if why := int8.missing_runtime():
        return _torch(clf, why + ".")
    return None


def pending(clf: Classifier, mode: str) -> Serving:
    """PyTorch serves now; the int8 graph is to build, gate (or open) in the background (an
    activation: predictions never wait for it)."""
    return _pytorch_only(clf, mode) or _torch(clf, "the int8 graph is being built and checked.", pending=True)


def attach(clf: Classifier, folder: Path, mode: str) -> Serving:
    """Attach the version's cached int8 graph when `mode` and its gate allow; builds nothing."""
    if torch_only := _pytorch_only(clf, mode):
        return torch_only
    d = folder / int8.FOLDER
    if not (d / int8.GATE_FILE).is_file() or not (d / int8.INT8_FILE).is_file():
        return _torch(clf, "the int8 graph is being built and checked.", pending=True)
    try:
        return _decide(clf, d, mode, int8.Gate.load(d / int8.GATE_FILE))
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        log.warning("the cached int8 graph in %s cannot be used (%s): rebuilding it", d, exc)
        return _torch(clf, "the int8 graph is being rebuilt.", pending=True)


def _may_serve(gate: int8.Gate, mode: str) -> bool:
    return (gate.passed and gate.faster and not gate.extra.get("behaviour_failed")) or mode == "int8"


def _decide(clf: Classifier, d: Path, mode: str, gate: int8.Gate, scorer: int8.Int8Scorer | None = None) -> Serving:
    """Attach `scorer` (the graph compiled for the gate, else compiled here) when the gate allows."""
    failed = gate.extra.get("behaviour_failed")
    if _may_serve(gate, mode):
        if getattr(clf.graph, "path", None) != d / int8.INT8_FILE:  # attached already: not compiled twice
            clf.use_graph(scorer or int8.Int8Scorer(d / int8.INT8_FILE, clf.max_threads, gate.margin_guard))
        ok = gate.passed and not failed
        note = "int8 (OpenVINO). " + gate.summary() + (f"; must-pass behaviour tests fail on it: {failed}" if failed
                                                       else "") + ("." if ok else "; served anyway (BERTDEMO_SERVING=int8).")
        if not ok:
            log.warning("%s", note)
        return Serving("int8", note, gate)
    if failed and gate.passed:
        why = f" But must-pass behaviour tests fail on the int8 graph ({failed}), so PyTorch serves."
    else:
        why = "" if not gate.passed else " It is slower on batches here, so PyTorch serves (BERTDEMO_SERVING=int8 forces it)."
    serving = _torch(clf, gate.summary() + "." + why, gate)
    (log.info if gate.passed and not failed else log.warning)("%s", serving.note)
    return serving


def _ignore(_phase: Phase) -> None:
    pass


@dataclass(frozen=True)
class Watch:
    """How a background build reports and stops: its phases go to `report`; `ticket.check()`
    raises Abandoned once another version serves; `behaviour(predict_proba)` runs the behaviour
    suite on the int8 graph, records it and returns the must-pass failures (None: they pass)."""

    report: Report = _ignore
    ticket: Ticket = field(default_factory=Ticket)
    behaviour: Callable[[Callable[[list[str]], np.ndarray]], str | None] | None = None


class _Stoppable:
    """`clf` as timed_gate uses it, scoring in chunks that check the ticket (the gate scores the
    validation split three times: an abandoned build stops within a chunk)."""

    CHUNK = 256

    def __init__(self, clf: Classifier, ticket: Ticket) -> None:
        self._clf, self._ticket = clf, ticket

    def __getattr__(self, name: str):
        return getattr(self._clf, name)

    def logits(self, texts: Sequence[str], batch_size: int = 64, path=None) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.CHUNK):
            self._ticket.check()
            out.append(self._clf.logits(texts[i:i + self.CHUNK], batch_size=batch_size, path=path))
        return np.concatenate(out) if out else np.zeros((0, len(self._clf.labels)), dtype=np.float32)


def build(clf: Classifier, folder: Path, mode: str, gate_set: GateSet, watch: Watch | None = None) -> Serving:
    """Export, quantize and gate the version in `folder` if that is still to do, run the behaviour
    suite on the graph that would serve, then attach it (or not). Slow (about half a minute here):
    run it off the request path; `watch` reports its steps and stops it (Abandoned)."""
    w = watch or Watch()
    if torch_only := _pytorch_only(clf, mode):
        return torch_only
    d = folder / int8.FOLDER
    gate, scorer = _cached_gate(d), None
    if gate is None:
        try:
            gate, scorer = _export_and_gate(clf, folder, gate_set, w)
        except Abandoned:
            raise
        except Exception as exc:
            log.exception("building the int8 graph of %s failed", folder.name)
            return _torch(clf, f"building the int8 graph failed ({type(exc).__name__}: {str(exc)[:200]}).")
    if w.behaviour is not None and (gate.passed and gate.faster or mode == "int8"):
        w.ticket.check()
        w.report(Phase("behaviour"))
        attached = clf.graph if getattr(clf.graph, "path", None) == d / int8.INT8_FILE else None
        scorer = scorer or attached or int8.Int8Scorer(d / int8.INT8_FILE, clf.max_threads, gate.margin_guard)
        failed = w.behaviour(lambda texts: _softmax(clf.logits(texts, batch_size=64, path=scorer)))
        gate = replace(gate, extra={k: v for k, v in gate.extra.items() if k != "behaviour_failed"}
                       | ({"behaviour_failed": failed} if failed else {}))
        gate.save(d / int8.GATE_FILE)  # the verdict holds at the next start, which opens the graph without a check
    w.ticket.check()  # abandoned: never attach
    return _decide(clf, d, mode, gate, scorer)


def _cached_gate(d: Path) -> int8.Gate | None:
    """The gate of a graph built before (None when not built, or damaged: rebuilt)."""
    if not (d / int8.GATE_FILE).is_file() or not (d / int8.INT8_FILE).is_file():
        return None
    try:
        return int8.Gate.load(d / int8.GATE_FILE)
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        log.warning("the cached int8 gate in %s cannot be read (%s): rebuilding the graph", d, exc)
        return None


def _export_and_gate(clf: Classifier, folder: Path, gate_set: GateSet, w: Watch
                     ) -> tuple[int8.Gate, int8.Int8Scorer]:
    """Export and quantize the graph (steps 1-2 of 3), then gate it against `clf` (step 3)."""
    d = folder / int8.FOLDER
    phase = Phase("int8", 0, 3, "steps")
    w.report(phase)
    t0 = time.perf_counter()
    texts, y, on, calibration = gate_set()
    w.ticket.check()
    w.report(phase.advanced(1))
    export_graph(folder, d, calibration, w.ticket)
    exported = time.perf_counter() - t0
    w.ticket.check()
    w.report(phase.advanced(2))
    scorer = int8.Int8Scorer(d / int8.INT8_FILE, clf.max_threads)
    # the gate scores the split three times on a private copy of the model: the serving one's lock
    # stays free for people's predictions
    own = Classifier.load(folder, clf.labels, clf.device.type, clf.max_length, name=clf.name)
    own.use_amp(clf.amp_dtype)
    gate = int8.timed_gate(_Stoppable(own, w.ticket), scorer, texts, y, on)  # fits and sets scorer's guard
    gate = replace(gate, extra=gate.extra | {"export_s": round(exported, 1), "calibration_texts": len(calibration)})
    gate.save(d / int8.GATE_FILE)
    w.report(phase.advanced(3))
    log.info("%s (export %.1f s, gate %.1f s)", gate.summary(), exported, gate.seconds)
    return gate, scorer


def export_graph(folder: Path, out: Path, calibration: Sequence[str], ticket: Ticket) -> None:
    """int8.export in a child Python process at a lower CPU priority (EXPORT_NICE): the conversion
    and NNCF's calibration, Python-heavy for half a minute, share no GIL with people's predictions,
    and an abandoned build stops at once (the child is killed, its temporary folder removed).
    RuntimeError with the end of the child's log when the export fails."""
    root = Path(__file__).resolve().parents[2]  # the folder that holds the bertdemo package: `-c` imports from it
    args = json.dumps({"folder": str(folder.resolve()), "out": str(out.resolve()), "calibration": list(calibration)})
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log_file:
        child = subprocess.Popen([sys.executable, "-c", _EXPORT_CHILD], stdin=subprocess.PIPE, cwd=root,
                                 stdout=subprocess.DEVNULL, stderr=log_file, text=True)
        child.stdin.write(args)
        child.stdin.close()
        while child.poll() is None:
            if ticket.abandoned:
                child.kill()
                child.wait()
                for partial in folder.glob(".int8-*"):  # int8.export's temporary folder
                    shutil.rmtree(partial, ignore_errors=True)
                ticket.check()
            time.sleep(0.2)
        if child.returncode != 0:
            log_file.seek(0)
            tail = [line for line in log_file.read().splitlines() if line.strip()][-1:] or ["no message"]
            raise RuntimeError(f"the export process failed (exit code {child.returncode}): {tail[0][:300]}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


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
