"""The int8 serving path: a version converted to OpenVINO and quantized to int8 by NNCF (static,
calibrated activation scales; its transformer preset keeps the sensitive ops in fp32 and applies
SmoothQuant), run by OpenVINO's CPU plugin (VNNI int8 kernels), and a gate that decides whether
it may serve: argmax agreement with the fp32 model and per-class F1 on a labelled set, and its
batch speed against the PyTorch path's.

Only inference goes through here (predictions, CSV scoring, re-scoring, sentence embeddings);
training, attributions, attention maps and hidden states stay in PyTorch. The recipe was chosen by
measurement on this 2-core host (bench/README.md, "The int8 path"):

- ONNX Runtime's dynamic int8 (`quantize_dynamic`, its BERT optimizer) was fast but agreed with
  fp32 on only 98.3-99.3% of argmaxes whichever layers stayed fp32, and its activation scales are
  taken per batch, so a text's label could depend on the texts batched with it;
- ONNX Runtime's static int8 agreed on 99.8% but scored batches at 0.66x the PyTorch bf16 path;
- OpenVINO in bf16 matched PyTorch bf16 on batches;
- OpenVINO + NNCF int8 agreed on 99.8% at ~1.9x the PyTorch bf16 path, and one tweet in ~4.4 ms.

Texts the int8 graph scores too close to call are re-scored in fp32, under a guard fitted per
version on its gate set (model/margin_guard.py; the gate's agreement is measured on texts the guard
was not fitted on). One text on its own is scored on a copy of the graph compiled for a fixed
shape (FIXED_LENGTHS: ~1.5 ms less per prediction); its logits differ a little from the batch graph's,
so the gate also scores its set one text at a time and the guard covers the errors of both.

Needs `openvino` and `nncf` (requirements.txt); without them `missing_runtime()` says so and the
caller serves in PyTorch."""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from bertdemo.model.margin_guard import MARGIN_GUARD, cross_fitted, fit_guard, guarded, top_two_gap
from bertdemo.model.pooling import masked_mean, pooling_of, use_pooling

log = logging.getLogger(__name__)

FOLDER = "int8"  # inside a version's folder
INT8_FILE, GATE_FILE = "model.int8.xml", "gate.json"  # OpenVINO IR: the .xml graph and its .bin weights
MIN_AGREEMENT = 0.995  # argmax agreement with the fp32 model on the gate set
MAX_F1_CHANGE = 0.005  # per-class F1, absolute change from the fp32 model's
# one text is scored on a graph compiled for a fixed shape, [1, L], the text padded to the next of
# these lengths (longer texts: the dynamic-shape graph). Measured 2026-12-05 on AMD EPYC: p50 2.8-3.0
# ms against 4.1-4.8 ms on the dynamic graph (bench/README.md); its logits differ from the dynamic
# graph's by up to ~0.04 (other kernels), so the guard is fitted on both graphs' errors (timed_gate).
# Each length is one more compiled copy of the graph: measured 2026-12-05 (AMD EPYC, MiniLM, 23 MB of
# int8 weights) +307 MB RSS for the four (the two dynamic graphs: +243 MB), ready 1.4-1.6 s after the
# dynamic ones (bench/README.md). So they are compiled only for graphs whose weights are at most
# FIXED_MAX_WEIGHT_BYTES (a bert-base graph, ~110 MB, would cost ~1.5 GB for ~1.5 ms on a ~20 ms
# prediction); fixed_lengths=() turns them off.
FIXED_LENGTHS = (16, 32, 48, 64)
FIXED_MAX_WEIGHT_BYTES = 64 * 2**20
ONE_TEXT_GATE_MAX = 1000  # gate-set texts also scored one at a time on the fixed-shape graphs
RECIPE = ("OpenVINO + NNCF int8 (transformer preset, mixed, SmoothQuant; calibrated one text at a time), "
          "head and other ops fp32")


def missing_runtime() -> str | None:
    """None when OpenVINO and NNCF import; else what is missing, for the log and the UI."""
    try:
        import nncf  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"the int8 path needs openvino and nncf ({exc})"
    return None


class _Graph(torch.nn.Module):
    """What is exported: logits, and the unit-length mean of the last layer's token vectors (the
    sentence embedding that re-scoring stores), from input ids and the attention mask."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.logits, torch.nn.functional.normalize(masked_mean(out.hidden_states[-1], attention_mask), dim=-1)


def export(model_dir: str | Path, out_dir: str | Path, calibration: Sequence[str]) -> Path:
    """Convert the saved model in `model_dir` to OpenVINO, quantize it to int8 with NNCF (activation
    scales calibrated on `calibration` texts), and save it as `out_dir`/model.int8.xml (+ .bin).
    Written to a temporary folder and renamed, so `out_dir` is complete or absent."""
    import nncf
    import openvino as ov
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not calibration:
        raise ValueError("the int8 export needs some texts to calibrate on")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    use_pooling(model, pooling_of(model))
    tok = AutoTokenizer.from_pretrained(model_dir)

    def feed(texts: Sequence[str]) -> dict[str, np.ndarray]:
        enc = tok(list(texts), truncation=True, max_length=128, padding=True, return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}

    sample = feed(["an example", "a slightly longer example sentence"])
    tmp = Path(tempfile.mkdtemp(prefix=".int8-", dir=out_dir.parent))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's warnings are about shapes it handles
            graph = ov.convert_model(
                _Graph(model), example_input={k: torch.from_numpy(v) for k, v in sample.items()},
                input=[("input_ids", ov.PartialShape([-1, -1]), ov.Type.i64),
                       ("attention_mask", ov.PartialShape([-1, -1]), ov.Type.i64)])
        nncf.set_log_level(logging.WARNING)  # not its list of every node it leaves in fp32
        # one text per sample: padding would widen the activation ranges the scales are fitted to
        data = nncf.Dataset([feed([t]) for t in calibration])
        quantized = nncf.quantize(graph, data, subset_size=len(calibration), model_type=nncf.ModelType.TRANSFORMER,
                                  preset=nncf.QuantizationPreset.MIXED,
                                  ignored_scope=nncf.IgnoredScope(patterns=[".*pooler.*", ".*classifier.*"],
                                                                  validate=False))  # the head stays fp32
        ov.save_model(quantized, str(tmp / INT8_FILE))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


_compiling: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _join_compiles() -> None:
    """A daemon thread still inside OpenVINO's compile when the interpreter exits aborts the process
    ("terminate called without an active exception"): let running compiles finish (a few seconds)."""
    for t in list(_compiling):
        t.join(timeout=30)


class Int8Scorer:
    """The int8 model compiled by OpenVINO: one thread for small inputs, every core for batches (the
    same policy as the PyTorch path, `classifier.PARALLEL_MIN_TOKENS`), and for one text a copy
    compiled per fixed length (FIXED_LENGTHS, for a graph of at most FIXED_MAX_WEIGHT_BYTES, compiled in
    a background thread; until then, and for longer texts, the dynamic-shape graph). Ops that stay out
    of int8 run in fp32 (measured faster here than the bf16 hint, and exact). Not thread-safe: the
    Classifier calls it under its lock. (One compiled model with a stream per core, a batch split
    across the streams, scored batches ~10% faster but one tweet ~1 ms slower, the hand-over to a
    stream's thread: single predictions won.)"""

    def __init__(self, path: str | Path, threads: int, margin_guard: float = MARGIN_GUARD,
                 fixed_lengths: Sequence[int] | None = None) -> None:
        import openvino as ov

        self.path = Path(path)
        self.margin_guard = margin_guard  # read by Classifier._forward
        self.scored = self.rescored = 0  # texts scored, and of them re-scored in fp32 (the guard)
        self.fixed_scored = 0  # of the texts scored, those scored on a fixed-shape graph
        core = ov.Core()
        model = core.read_model(str(self.path))
        cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        self._one = core.compile_model(model, "CPU", cfg | {"INFERENCE_NUM_THREADS": 1}).create_infer_request()
        self._all = (core.compile_model(model, "CPU", cfg | {"INFERENCE_NUM_THREADS": threads}).create_infer_request()
                     if threads > 1 else self._one)
        self._fixed: dict[int, object] = {}  # replaced, never changed in place: run() reads it unlocked
        self._fixed_done = threading.Event()
        if fixed_lengths is None:  # the default: FIXED_LENGTHS for a small graph
            weights = self.path.with_suffix(".bin")
            small = weights.is_file() and weights.stat().st_size <= FIXED_MAX_WEIGHT_BYTES
            fixed_lengths = FIXED_LENGTHS if small else ()
        if fixed_lengths:
            t = threading.Thread(target=self._compile_fixed, args=(core, model, sorted(set(fixed_lengths)), cfg),
                                 name="int8-fixed-shapes", daemon=True)
            _compiling.add(t)
            t.start()
        else:
            self._fixed_done.set()

    def _compile_fixed(self, core, model, lengths: list[int], cfg: dict) -> None:
        try:
            for n in lengths:
                m = model.clone()  # its constants shared with `model`'s: ~20 MB less per length than a re-read
                m.reshape({"input_ids": [1, n], "attention_mask": [1, n]})
                req = core.compile_model(m, "CPU", cfg | {"INFERENCE_NUM_THREADS": 1}).create_infer_request()
                self._fixed = {**self._fixed, n: req}
        except Exception as exc:  # noqa: BLE001 - the dynamic graph still serves
            log.warning("fixed-shape int8 graphs not compiled (%s): one text uses the dynamic graph", exc)
        finally:
            self._fixed_done.set()

    def wait_fixed(self, timeout: float | None = None) -> bool:
        """Block until the fixed-shape graphs are compiled (or failed); True when any serve."""
        self._fixed_done.wait(timeout)
        return bool(self._fixed)

    @property
    def fixed_lengths(self) -> list[int]:
        return list(self._fixed)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, parallel: bool,
            embed: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        ids = input_ids.astype(np.int64, copy=False)
        mask = attention_mask.astype(np.int64, copy=False)
        req = self._all if parallel else self._one
        fixed = self._fixed
        if fixed and not parallel and ids.shape[0] == 1:
            n = next((k for k in fixed if k >= ids.shape[1]), None)  # ascending: compiled in that order
            if n is not None:  # padding is masked out: it changes no real token's vector
                req, pad = fixed[n], ((0, 0), (0, n - ids.shape[1]))
                ids, mask = np.pad(ids, pad), np.pad(mask, pad)
                self.fixed_scored += 1
        req.infer({"input_ids": ids, "attention_mask": mask})
        logits = req.get_output_tensor(0).data.copy()
        return logits, (req.get_output_tensor(1).data.copy() if embed else None)


@dataclass(frozen=True)
class Gate:
    """The int8 model against the fp32 one on one labelled set."""

    agreement: float  # share of identical argmaxes
    f1_fp32: dict[str, float]  # per class, against the labels
    f1_int8: dict[str, float]
    n: int
    on: str  # what the set was ("the validation split of v3", ...)
    seconds: float = 0.0
    recipe: str = RECIPE
    min_agreement: float = MIN_AGREEMENT
    max_f1_change: float = MAX_F1_CHANGE
    extra: dict = field(default_factory=dict)

    @property
    def worst_change(self) -> tuple[str, float]:
        lab = max(self.f1_fp32, key=lambda k: abs(self.f1_int8[k] - self.f1_fp32[k]))
        return lab, self.f1_int8[lab] - self.f1_fp32[lab]

    @property
    def faster(self) -> bool:
        """int8 scored the gate set's batches at least as fast as the PyTorch serving path."""
        rates = self.extra.get("int8_per_s"), self.extra.get("torch_per_s")
        return None not in rates and rates[0] >= rates[1]

    @property
    def margin_guard(self) -> float:
        """The guard the graph serves with: fitted on the gate set, or the fixed one of older gates."""
        return float(self.extra.get("margin_guard", MARGIN_GUARD))

    @property
    def passed(self) -> bool:
        return (self.agreement >= self.min_agreement and abs(self.worst_change[1]) <= self.max_f1_change + 1e-12
                and self.extra.get("one_text_agreement", 1.0) >= self.min_agreement)

    def summary(self) -> str:
        lab, d = self.worst_change
        verdict = "passed" if self.passed else "failed"
        speed = ""
        if "guarded_share" in self.extra:
            fitted = " fitted on this set" if "unguarded_agreement" in self.extra else ""
            speed += (f"; {self.extra['guarded_share']:.1%} of texts were under the {self.margin_guard:.3g} "
                      f"logit margin{fitted} and re-scored in fp32")
        if "unguarded_agreement" in self.extra:
            speed += f" (without it {self.extra['unguarded_agreement']:.2%} agreement)"
        if "one_text_agreement" in self.extra:
            speed += (f"; one text at a time on the fixed-shape graphs ({self.extra['one_text_n']:,} texts): "
                      f"agreement {self.extra['one_text_agreement']:.2%}, logits within "
                      f"{self.extra['one_text_max_diff']:.3g} of the batch graph's")
        if "int8_per_s" in self.extra:
            speed += (f"; batches {self.extra['int8_per_s']:.0f}/s against {self.extra['torch_per_s']:.0f}/s "
                     f"in PyTorch {self.extra.get('torch_path', '')}".rstrip())
        return (f"int8 gate {verdict} on {self.on} ({self.n:,} texts): argmax agreement {self.agreement:.2%} "
                f"(needs {self.min_agreement:.1%}), largest per-class F1 change {d:+.4f} ({lab}; "
                f"allowed ±{self.max_f1_change}){speed}")

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Gate:
        return cls(**json.loads(path.read_text()))


def gate(ref_logits: np.ndarray, int8_logits: np.ndarray, y: Sequence[int], labels: Sequence[str], on: str,
         seconds: float = 0.0, min_agreement: float = MIN_AGREEMENT, max_f1_change: float = MAX_F1_CHANGE) -> Gate:
    """Compare the two models' predictions on texts with known labels `y` (label indices)."""
    ref, q, y = ref_logits.argmax(1), int8_logits.argmax(1), np.asarray(y)
    idx = list(range(len(labels)))
    f_ref = f1_score(y, ref, labels=idx, average=None, zero_division=0)
    f_q = f1_score(y, q, labels=idx, average=None, zero_division=0)
    return Gate(agreement=float((ref == q).mean()) if len(y) else 0.0,
                f1_fp32={lab: round(float(v), 6) for lab, v in zip(labels, f_ref)},
                f1_int8={lab: round(float(v), 6) for lab, v in zip(labels, f_q)}, n=len(y), on=on,
                seconds=round(seconds, 2), min_agreement=min_agreement, max_f1_change=max_f1_change)


def timed_gate(clf, scorer: Int8Scorer, texts: Sequence[str], y: Sequence[int], on: str,
               guard: float | None = None) -> Gate:
    """Score `texts` with `clf`'s PyTorch model in fp32 and with `scorer` unguarded, fit the margin
    guard on the difference (`guard` None; else that fixed guard) and set it on `scorer`, gate the
    served result, and time the int8 path (its batches plus the fp32 re-score of the rows under the
    guard, as `Classifier._forward` does) against the PyTorch serving path on the same batches."""
    t0 = time.perf_counter()
    ref = clf.logits(texts, batch_size=64, path="fp32")
    scorer.margin_guard = 0.0  # the raw int8 logits: the guard is fitted on them
    t1 = time.perf_counter()
    q = clf.logits(texts, batch_size=64, path=scorer)
    t2 = time.perf_counter()
    # one text at a time, as single predictions are scored: on the fixed-shape graphs, whose logits
    # differ a little from the batch graph's, so the guard is fitted on both graphs' errors
    idx, q1 = np.zeros(0, dtype=int), q[:0]  # none when no fixed-shape graph serves
    if len(texts) > 1 and scorer.wait_fixed():
        idx = np.arange(0, len(texts), max(1, -(-len(texts) // ONE_TEXT_GATE_MAX)))
        q1 = np.concatenate([clf.logits([texts[i]], path=scorer) for i in idx])
    t2b = time.perf_counter()
    fitted = guard is None
    guard = fit_guard(np.concatenate([ref, ref[idx]]), np.concatenate([q, q1])) if fitted else guard
    rows = np.flatnonzero(top_two_gap(q) < guard)
    clf.logits([texts[i] for i in rows], batch_size=64, path="fp32")
    scorer.margin_guard = guard
    t3 = time.perf_counter()
    clf.logits(texts, batch_size=64, path="torch")
    t4 = time.perf_counter()
    served, served1 = (cross_fitted(ref, q, one=(idx, q1)) if fitted
                       else (guarded(ref, q, guard), guarded(ref[idx], q1, guard)))
    g = gate(ref, served, y, clf.labels, on, t4 - t0)
    n, flips = max(len(texts), 1), ref.argmax(1) != q.argmax(1)
    extra = {"margin_guard": guard, "guarded_share": round(len(rows) / n, 4),
             "int8_per_s": round(n / max(t2 - t1 + t3 - t2b, 1e-9), 1),
             "unguarded_per_s": round(n / max(t2 - t1, 1e-9), 1),
             "torch_per_s": round(n / max(t4 - t3, 1e-9), 1),
             "torch_path": clf.amp_path}
    if fitted:  # what the fit saw: the raw flips and how close they were
        extra |= {"unguarded_agreement": round(1 - float(flips.mean()) if len(texts) else 1.0, 4),
                  "flips": int(flips.sum()), "largest_flip_gap": round(float(top_two_gap(q)[flips].max()), 4)
                  if flips.any() else 0.0}
    if len(idx):
        extra |= {"one_text_n": len(idx), "fixed_lengths": scorer.fixed_lengths,
                  "one_text_agreement": round(float((served1.argmax(1) == ref[idx].argmax(1)).mean()), 4),
                  "one_text_max_diff": round(float(np.abs(q1 - q[idx]).max()), 4)}
    return replace(g, extra=extra)


def open_scorer(folder: Path, threads: int) -> Int8Scorer:
    """The int8 graph in a version's `folder` (vN/int8/) with the guard its gate fitted (the fixed
    MARGIN_GUARD when it has no gate yet, or one saved before guards were fitted)."""
    gate_file = folder / GATE_FILE
    guard = Gate.load(gate_file).margin_guard if gate_file.is_file() else MARGIN_GUARD
    return Int8Scorer(folder / INT8_FILE, threads, margin_guard=guard)
