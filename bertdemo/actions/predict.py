"""Adapters for the Predict tab: one function per UI action, signatures matching the UI inputs,
plain Python values out. Tested without Gradio; the UI only turns UserErrors into gr.Error and
`warnings` into gr.Warning."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bertdemo.datasets import download_path, read_csv, write_csv
from bertdemo.errors import BadInput
from bertdemo.model import explain, views
from bertdemo.model.classifier import Classifier
from bertdemo.services import Services
from bertdemo.text import clean_text, try_clean
from bertdemo.training.registry import NoModelError
from bertdemo.validate import number, short

MAX_BATCH = 256  # texts per /predict_batch call
# Bounded work per request: one batch job (/predict_batch, a CSV) scores at a time, in this process,
# whoever sends it; the others wait their turn. Single /predict calls do not wait for it (the
# classifier serialises forward passes per chunk of 64 texts, so one slips in between chunks).
BULK_SCORING = threading.BoundedSemaphore(1)


@dataclass(frozen=True)
class PredictResult:
    confidences: dict[str, float]  # gr.Label format: label -> probability
    label: str
    cleaned: str
    version: str
    warnings: list[str] = field(default_factory=list)

    def as_label(self) -> dict:
        """What gr.Label sends a client: the top label and every class, most probable first."""
        ranked = sorted(self.confidences.items(), key=lambda kv: kv[1], reverse=True)
        return {"label": self.label, "confidences": [{"label": k, "confidence": v} for k, v in ranked]}


@dataclass(frozen=True)
class ExplainResult:
    attribution: explain.Attribution
    highlighted: list[tuple[str, float | None]]
    warnings: list[str] = field(default_factory=list)

    def as_api(self) -> dict:
        a = self.attribution
        return {"text": a.text, "target": a.target, "probabilities": a.probs,
                "method": "integrated_gradients" if a.method == "ig" else "gradient_x_input",
                "steps": a.steps or None,
                "tokens": [{"token": t, "attribution": round(s, 4)} for t, s in zip(a.tokens, a.scores)],
                "convergence_delta": a.delta if a.method == "ig" else None, "seconds": round(a.seconds, 3)}


@dataclass(frozen=True)
class CsvResult:
    path: str
    rows: int
    predicted: int
    problems: int
    counts: dict[str, int]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = ", ".join(f"{k}: {v:,}" for k, v in self.counts.items())
        s = f"Classified {self.predicted:,} of {self.rows:,} rows in {self.seconds:.1f} s ({parts})."
        if self.problems:
            s += f" {self.problems:,} rows could not be classified: see the `error` column."
        return s


class PredictActions:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings

    def model(self) -> Classifier:
        try:
            return self.services.registry.active()
        except NoModelError:
            st = self.services.jobs.status()
            if st.running:
                eta = st.eta_s()
                left = f", about {eta / 60:.0f} min left" if eta else ""
                raise NoModelError(f"The first model is still being trained ({st.fraction:.0%}{left}). "
                                   "Predictions start as soon as it is ready.") from None
            raise NoModelError(self.services.registry.problem  # none of the versions could be loaded at start
                               or "No model version is active. An admin can train one in the Train tab.") from None

    def _clean(self, text: str) -> tuple[str, list[str]]:
        return clean_text(text, self.settings.max_chars), []

    def _token_warnings(self, clf: Classifier, cleaned: str) -> list[str]:
        view = views.tokenize(clf, cleaned)
        words = [t for t, sp in zip(view.tokens, view.special) if not sp]
        out = []
        if words and all(t == clf.tokenizer.unk_token for t in words):
            out.append("The model knows none of these characters (every token is [UNK]): "
                       "the prediction says nothing about the text.")
        if view.truncated:
            out.append(f"The text is longer than {clf.max_length} tokens; only the first "
                       f"{clf.max_length} were used.")
        return out

    def predict(self, text: str) -> PredictResult:
        cleaned, warnings = self._clean(text)
        clf = self.model()
        pred = clf.predict([cleaned])[0]
        return PredictResult(confidences=pred.probs, label=pred.label, cleaned=cleaned, version=clf.name,
                             warnings=warnings + self._token_warnings(clf, cleaned))

    def predict_batch(self, texts: object) -> list[PredictResult]:
        """Many texts in one call (for integrations): one result per text, in order. The whole call
        is refused, naming the text, when any text cannot be classified (empty, too long, not text)."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise BadInput("Send a list of texts, e.g. [\"first text\", \"second text\"].")
        if not texts:
            raise BadInput("The list of texts is empty.")
        if len(texts) > MAX_BATCH:
            raise BadInput(f"At most {MAX_BATCH} texts per call; got {len(texts):,}. Split the list, or upload "
                           "a CSV to the Batch tab.")
        cleaned = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadInput(f"Text {i + 1} of {len(texts)} is not a string ({type(t).__name__}).")
            c, why = try_clean(t, self.settings.max_chars)
            if c is None:
                raise BadInput(f"Text {i + 1} of {len(texts)}: {why}")
            cleaned.append(c)
        clf = self.model()
        with BULK_SCORING:
            predictions = clf.predict(cleaned)
        return [PredictResult(confidences=p.probs, label=p.label, cleaned=c, version=clf.name)
                for c, p in zip(cleaned, predictions)]

    def tokens(self, text: str, pad_to: float | None = None) -> pd.DataFrame:
        """The tokenization table; `pad_to` (None or 0 = no padding) pads with [PAD] to that length."""
        cleaned, _ = self._clean(text)
        clf = self.model()
        if pad_to is not None:
            pad_to = int(number(pad_to, "The padded length", 0, clf.max_length, whole=True, note="no padding"))
        # tokenized once: the view also counts the text's own tokens (a padded length of 1 is always
        # too short: [CLS] and [SEP] alone take 2)
        view = views.tokenize(clf, cleaned, pad_to=pad_to if pad_to and pad_to >= 2 else None)
        if pad_to:
            natural = min(view.length, clf.max_length)  # what the model reads without padding
            if pad_to < natural:
                raise BadInput(f"The text has {natural} tokens; choose a padded length of at least {natural} "
                               "(shorter would cut the text).")
        return explain.token_table(view)

    def explain(self, text: str, target: str | None = None, merge_words: bool = False,
                quick: bool = False) -> ExplainResult:
        """Integrated Gradients, or with `quick` Gradient x Input (the instant first view)."""
        cleaned, warnings = self._clean(text)
        clf = self.model()
        if target in (None, "", "predicted"):
            target = None
        elif target not in clf.labels:
            raise BadInput(f"Unknown class {short(target)}; choose one of {list(clf.labels)} or 'predicted'.")
        a = (explain.gradient_x_input if quick else explain.integrated_gradients)(clf, cleaned, target)
        return ExplainResult(a, explain.highlighted(a, merge=merge_words), warnings)

    def attention(self, text: str, layer: int, head: int | None) -> explain.AttentionMap:
        cleaned, _ = self._clean(text)
        return explain.attention_map(self.model(), cleaned, layer, head or None)

    def predict_csv(self, path: str) -> CsvResult:
        t0 = time.perf_counter()
        table = read_csv(path, int(self.settings.max_upload_mb * 2**20))
        limit = self.settings.max_csv_rows
        if len(table.frame) > limit:  # bounded work per request: 2,000 rows take ~15 s of both cores here
            raise BadInput(f"The file has {len(table.frame):,} rows; one batch prediction takes at most {limit:,} "
                           "(BERTDEMO_MAX_CSV_ROWS). Split the file, or score it from Python with "
                           "bertdemo.actions.predict.PredictActions.predict_csv on your own machine.")
        clf = self.model()
        frame = table.frame
        cleaned, problems = zip(*(try_clean(t, self.settings.max_chars) for t in frame[table.text_column]))
        ok = [i for i, c in enumerate(cleaned) if c is not None]
        with BULK_SCORING:
            probs = clf.predict_proba([cleaned[i] for i in ok], batch_size=64)
        out = frame.copy()
        out["predicted_label"] = ""
        for lab in clf.labels:
            out[f"p_{lab}"] = float("nan")
        out["error"] = [p or "" for p in problems]
        if ok:
            out.loc[out.index[ok], "predicted_label"] = [clf.labels[int(r.argmax())] for r in probs]
            for j, lab in enumerate(clf.labels):
                out.loc[out.index[ok], f"p_{lab}"] = probs[:, j].round(5)
        stem = Path(path).stem[:60] or "upload"
        dest = download_path(f"{stem}-predictions.csv")
        write_csv(out, dest)
        counts = {lab: int((out["predicted_label"] == lab).sum()) for lab in clf.labels}
        return CsvResult(path=str(dest), rows=len(frame), predicted=len(ok), problems=len(frame) - len(ok),
                         counts=counts, seconds=time.perf_counter() - t0, warnings=list(table.warnings))
