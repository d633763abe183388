"""Classifier: the one place that loads a tokenizer and a sequence-classification model.

Knows nothing of versions or the database. Texts given to it are already cleaned
(`bertdemo.text.clean_text`); it tokenizes, runs the model and returns small frozen dataclasses.
This is the serving path (predictions, sentence embeddings, precision, an int8 graph); the
inspection views of the same model (tokenization, hidden states, attention maps) are
model/views.py, which run through `Classifier.exclusive`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from bertdemo.model.packing import PackedLinear, cast_linear
from bertdemo.model.pooling import masked_mean, pooling_of, use_pooling

log = logging.getLogger(__name__)

# CPU forward passes over fewer tokens than this run on one thread. OpenMP threads meet at a
# barrier after every op: when another process keeps the second core busy, a 2-thread forward of
# one tweet waits for a scheduler time slice at each barrier, and its p95 grows more than tenfold
# (bench/README.md). Big batches (re-scoring, CSV, Integrated Gradients' 50 steps) have enough
# work per op to gain from every core.
PARALLEL_MIN_TOKENS = 512


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Prediction:
    text: str  # the (cleaned) text the model saw
    label: str
    probs: dict[str, float]  # every label -> probability, in label order

    @property
    def confidence(self) -> float:
        return self.probs[self.label]


def length_sorted_batches(tokenizer, texts: Sequence[str], max_length: int,
                          batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(indices into `texts`, padded batch) pairs, sorted by length: similar lengths share a batch,
    so padding is minimal. The texts are tokenized once; each batch is padded to its longest member."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {setting!r} was asked for, but torch sees no CUDA device")
    return torch.device(setting)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware runs it natively (CUDA Ampere+, CPUs with AVX512-BF16/AMX), else
    fp16 on older CUDA, else None (fp32)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    except (AttributeError, RuntimeError):
        return None


def amp_dtype_for(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision setting: "fp32" none, "bf16", or "auto" (`autocast_dtype`)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return None if precision == "fp32" else torch.bfloat16 if precision == "bf16" else autocast_dtype(device)


class Classifier:
    """A tokenizer and an `AutoModelForSequenceClassification`, in eval mode on one device."""

    def __init__(self, model, tokenizer, labels: Sequence[str], device: torch.device,
                 max_length: int = 128, name: str = "", precision: str = "auto") -> None:
        if model.config.num_labels != len(labels):
            raise ValueError(
                f"model has {model.config.num_labels} output labels, expected {len(labels)} ({list(labels)})"
            )
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.device = device
        self.max_length = max_length
        self.name = name
        self.amp_dtype = amp_dtype_for(precision, device)
        self._lock = threading.Lock()  # forward passes are serialised: the cores are shared anyway
        self.max_threads = min(torch.get_num_threads(), cpu_cores())
        self._serving: tuple[tuple, torch.nn.Module] | None = None  # (weights key, bf16 copy)
        # an exported graph that serves inference instead of PyTorch (model/int8.py): anything with
        # `run(input_ids, attention_mask, parallel, embed) -> (logits, embeddings)`; set by `use_graph`
        self.graph = None

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, source: str | Path, labels: Sequence[str], device: str = "auto",
             max_length: int = 128, name: str = "", precision: str = "auto",
             pooling: str | None = None) -> Classifier:
        """Load from a hub id or a directory. A base encoder (no head yet) gets a new head
        with `len(labels)` outputs, which must be fine-tuned before its predictions mean anything.
        `pooling` (model/pooling.py): None = as the model was saved ([CLS] for an encoder)."""
        source = str(source)
        id2label = dict(enumerate(labels))
        label2id = {v: k for k, v in id2label.items()}
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=len(labels), id2label=id2label, label2id=label2id
            )
        except OSError as exc:
            raise RuntimeError(f"could not load model {source!r}: {exc}") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
        use_pooling(model, pooling or pooling_of(model))
        return cls(model, tokenizer, labels, resolve_device(device), max_length, name or source, precision)

    # ----------------------------------------------------------------- helpers
    @property
    def serving_path(self) -> str:
        """What scores texts: "int8" (an exported graph), else the PyTorch precision."""
        return "int8" if self.graph is not None else self.amp_path

    @property
    def amp_path(self) -> str:
        """The PyTorch inference precision: "bf16", "fp16" or "fp32"."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.amp_dtype, "fp32")

    def use_amp(self, dtype: torch.dtype | None) -> torch.dtype | None:
        """Run forwards under autocast to `dtype` (None: fp32); returns the dtype it replaces, so
        training can set its own precision and give the serving one back."""
        before, self.amp_dtype = self.amp_dtype, dtype
        return before

    def adopt(self, model: torch.nn.Module | None = None, device: torch.device | None = None) -> None:
        """Take a module trained outside (the training loop's unwrapped model) and/or the device it
        is on now; the serving copy is rebuilt on the next forward."""
        with self._lock:
            if model is not None:
                self.model = model
            if device is not None:
                self.device = device
            self._serving = None

    def rename(self, name: str) -> None:
        """The version name the views show (the registry names a classifier when it serves)."""
        self.name = name

    def use_graph(self, graph) -> None:
        """Serve inference from `graph` (None: back to PyTorch). Swapped under the lock, so a
        batch runs wholly on one path."""
        with self._lock:
            self.graph = graph

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @contextlib.contextmanager
    def exclusive(self, tokens: int) -> Iterator[None]:
        """Run a forward pass of `tokens` tokens outside the serving path (the inspection views in
        model/views.py, attributions in model/explain.py): under the classifier's lock, so it never
        overlaps a prediction or a model swap, and with the thread count `_threads_for` picks."""
        with self._lock, self._threads_for(tokens):
            yield

    @contextlib.contextmanager
    def _threads_for(self, tokens: int) -> Iterator[None]:
        """Run the block with 1 CPU thread for small inputs, all cores for large ones (see
        PARALLEL_MIN_TOKENS). torch's thread count is per calling thread once it has run an op, so
        it is set here, in the thread that runs the forward, and restored afterwards."""
        want = 1 if tokens < PARALLEL_MIN_TOKENS else self.max_threads
        before = torch.get_num_threads()
        if self.device.type != "cpu" or want == before:
            yield
            return
        torch.set_num_threads(want)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def serving_model(self) -> torch.nn.Module:
        """The module that predictions run: `self.model` in fp32, or under bf16/fp16 autocast a
        copy whose Linear layers hold their weights in that dtype, on the CPU pre-packed in
        oneDNN's blocked layout (`PackedLinear`). Otherwise autocast casts every Linear weight on
        every call and oneDNN re-packs it, a quarter of a one-tweet forward (bench/README.md).
        The numbers are the same, since autocast rounds those weights to the same dtype. Every
        other parameter (embeddings, LayerNorm) is shared, not copied. Inference only (no
        gradients through packed weights). The copy is rebuilt when the weights change (training
        steps and state-dict loads bump parameter versions)."""
        if self.amp_dtype is None:
            return self.model
        key = (self.amp_dtype, self.device, sum(p._version for p in self.model.parameters()))
        if self._serving is None or self._serving[0] != key:
            with torch.no_grad():
                shared = {id(t): t for t in list(self.model.parameters()) + list(self.model.buffers())}
                fast = copy.deepcopy(self.model, memo=shared).eval()
                pack = self.device.type == "cpu" and self.amp_dtype == torch.bfloat16 and PackedLinear.available()
                for mod in list(fast.modules()):
                    for name, child in list(mod.named_children()):
                        if isinstance(child, torch.nn.Linear):
                            setattr(mod, name, PackedLinear(child) if pack else cast_linear(child, self.amp_dtype))
            self._serving = (key, fast)
        return self._serving[1]

    # ----------------------------------------------------------------- inference
    def logits(self, texts: Sequence[str], batch_size: int = 64, path=None) -> np.ndarray:
        """(N, num_labels) float32 logits, in the order of `texts`. `path`: None = the serving
        path; "fp32" = the PyTorch model in fp32; or a graph (as in `use_graph`)."""
        return self._forward(texts, batch_size, embed=False, path=path)[0]

    def scores_and_embeddings(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(N, num_labels) probabilities and (N, hidden) sentence embeddings from the same pass: the
        last layer's token vectors averaged over the attention mask (padding excluded), scaled to
        unit length, so a dot product is the cosine similarity."""
        logits, vectors = self._forward(texts, batch_size, embed=True)
        return _softmax(logits), vectors

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.scores_and_embeddings(texts, batch_size)[1]

    def _forward(self, texts: Sequence[str], batch_size: int, embed: bool,
                 path=None) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        vectors = np.zeros((len(texts), self.model.config.hidden_size if embed else 0), dtype=np.float32)
        if not texts:
            return out, vectors
        # the lock is taken per batch, not for the whole call: a prediction waits for one batch of a
        # long re-scoring pass (~0.3 s), not for all of it (a minute for 27k tweets)
        guarded: list[int] = []  # rows an exported graph scored too close to call: fp32 decides
        for idx, batch in length_sorted_batches(self.tokenizer, texts, self.max_length, batch_size):
            with self._lock:
                graph = self.graph if path is None else (None if path in ("fp32", "torch") else path)
                if graph is not None:
                    logits, emb = graph.run(batch["input_ids"].numpy(), batch["attention_mask"].numpy(),
                                            parallel=batch["input_ids"].numel() >= PARALLEL_MIN_TOKENS, embed=embed)
                    out[idx] = logits
                    rows = self._guarded_rows(graph, logits)
                    graph.scored = getattr(graph, "scored", 0) + len(idx)
                    graph.rescored = getattr(graph, "rescored", 0) + len(rows)
                    guarded.extend(idx[j] for j in rows)
                    if embed:
                        vectors[idx] = emb
                    continue
                batch = {k: v.to(self.device) for k, v in batch.items()}
                model = self.model if path == "fp32" else self.serving_model()
                amp = torch.autocast(self.device.type, enabled=False) if path == "fp32" else self._autocast()
                with self._threads_for(batch["input_ids"].numel()), torch.inference_mode(), amp:
                    res = model(**batch, output_hidden_states=embed)
                    out[idx] = res.logits.float().cpu().numpy()
                    if embed:
                        mean = masked_mean(res.hidden_states[-1].float(), batch["attention_mask"])
                        vectors[idx] = torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()
        if guarded:  # batched together: a few percent of the texts, at fp32 speed
            out[guarded] = self._forward([texts[i] for i in guarded], batch_size, embed=False, path="fp32")[0]
        return out, vectors

    @staticmethod
    def _guarded_rows(graph, logits: np.ndarray) -> np.ndarray:
        """The rows whose top-two logit gap is under the graph's `margin_guard` (model/int8.py):
        where a low-precision graph could flip the label; `_forward` re-scores them in fp32. A
        row's gap depends on its text alone (and, for one text scored on its own, on the int8
        graph's fixed-shape copy: model/int8.py fits the guard on both graphs' errors)."""
        guard = getattr(graph, "margin_guard", 0.0)
        if not guard or logits.shape[1] < 2:
            return np.zeros(0, dtype=int)
        top = np.sort(logits, axis=1)
        return np.flatnonzero(top[:, -1] - top[:, -2] < guard)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return _softmax(self.logits(texts, batch_size))

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[Prediction]:
        probs = self.predict_proba(texts, batch_size)
        return [
            Prediction(text=t, label=self.labels[int(p.argmax())],
                       probs={lab: float(x) for lab, x in zip(self.labels, p)})
            for t, p in zip(texts, probs)
        ]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)
