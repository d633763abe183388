"""The Embeddings tab's adapter: which model to compare with (the active version or the base
encoder), the comparison of one word across sentences, and its nearest occurrences in the stored
examples (vectors cached per model version and word in CorpusIndex). No Gradio here.

A word's corpus vectors take seconds (a forward pass over up to MAX_CORPUS_EXAMPLES tweets with
every layer's hidden states: 4-18 s on two cores), so the presets' words are computed for the
serving version in a background thread when it serves (warm_presets, called by VersionWatch at
start and after each activation); another word reports its progress as it is computed, and a
request for a word under way waits for that computation instead of repeating it."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from bertdemo.actions.presets import PRESETS, preset_senses
from bertdemo.actions.warm import VersionWatch, behind_predictions
from bertdemo.db.examples import containing_word
from bertdemo.errors import BadInput
from bertdemo.model.classifier import Classifier
from bertdemo.model.embeddings import (
    MAX_CORPUS_EXAMPLES,
    CorpusVectors,
    Neighbours,
    WordComparison,
    compare,
    corpus_vectors,
    neighbours,
    word_pieces,
)
from bertdemo.services import Services
from bertdemo.training.registry import VersionInfo

log = logging.getLogger(__name__)
CORPUS_CACHE_SIZE = 16  # (model, word) entries kept in memory: the 7 presets' words of the serving version + 9
Progress = Callable[[int, int, str], None]  # (done, total, what): how far a word's corpus vectors got


class CorpusIndex:
    """Corpus vectors computed on demand, cached in memory per (model key, word): the key is the
    model version, so a new version never sees its predecessor's vectors. Shared by all users
    (it holds no per-user state), bounded to CORPUS_CACHE_SIZE words (least recently used out).
    Each (model key, word) is computed once at a time: a second request waits for the first."""

    def __init__(self, max_examples: int = MAX_CORPUS_EXAMPLES, size: int = CORPUS_CACHE_SIZE) -> None:
        self.max_examples = max_examples
        self.size = size
        self._cache: OrderedDict[tuple[str, str], CorpusVectors] = OrderedDict()
        self._lock = threading.Lock()
        self._under_way: dict[tuple[str, str], tuple[float, threading.Event]] = {}  # -> (started, done)
        self.computed = 0  # how many times vectors were computed (tests check the cache with it)

    def cached(self, key: str, word: str) -> CorpusVectors | None:
        with self._lock:
            hit = self._cache.get((key, word))
            if hit is not None:
                self._cache.move_to_end((key, word))
            return hit

    def get(self, key: str, clf: Classifier, engine, word: str, pieces: Sequence[int],
            progress: Progress | None = None) -> CorpusVectors:
        """The vectors of `word` for model `key`: cached, or computed now (`progress` follows it),
        or, when another request computes them, waited for."""
        while (hit := self.cached(key, word)) is None:
            with self._lock:
                other = self._under_way.get((key, word))
                if other is None:
                    self._under_way[(key, word)] = (time.time(), threading.Event())
            if other is None:
                return self._compute(key, clf, engine, word, pieces, progress)
            if progress is not None:
                progress(0, 0, f"'{word}' is being computed in the background (started "
                               f"{time.time() - other[0]:.0f} s ago); waiting for it")
            other[1].wait()
        return hit

    def _compute(self, key: str, clf: Classifier, engine, word: str, pieces: Sequence[int],
                 progress: Progress | None) -> CorpusVectors:
        try:
            with Session(engine) as s:
                rows, total = containing_word(s, word, self.max_examples)
            report = None if progress is None else (
                lambda done, n: progress(done, n, f"'{word}' in the stored tweets: {done} of {n} read"))
            if report is not None:
                report(0, len(rows))  # at once: the first chunk takes ~2 s
            cv = corpus_vectors(clf, rows, pieces, total, progress=report)
            with self._lock:
                self.computed += 1
                self._cache[(key, word)] = cv
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
            return cv
        finally:
            with self._lock:
                done = self._under_way.pop((key, word), None)
            if done is not None:
                done[1].set()
# --------------------------------------------------------------------------- adapter for the UI
ACTIVE_MODEL = "active fine-tuned version"
BASE_MODEL = "base encoder"
MODEL_CHOICES = (ACTIVE_MODEL, BASE_MODEL)
class EmbeddingActions:
    """One method per UI action of the Embeddings tab: UI inputs in, plain values out."""

    def __init__(self, services: Services, index: CorpusIndex | None = None) -> None:
        self.services = services
        self.index = index or CorpusIndex()
        self.watch = VersionWatch(services, [self.warm_presets])  # started by the UI (ui/embeddings.build)
        self._warming: threading.Thread | None = None

    def model(self, choice: str = ACTIVE_MODEL) -> tuple[str, Classifier]:
        """(cache key, classifier). The key names the version the classifier was loaded from, so
        corpus vectors are never shared between versions."""
        if choice == BASE_MODEL:
            return "base", self.services.registry.base()
        if choice not in (ACTIVE_MODEL, None, ""):
            raise BadInput(f"The model must be one of {list(MODEL_CHOICES)}, got {choice!r}.")
        clf = self.services.registry.active()
        return f"version:{clf.name}", clf

    def compare(self, sentences: object, word: object, layer: int | None = None,
                choice: str = ACTIVE_MODEL) -> WordComparison:
        key, clf = self.model(choice)
        senses = preset_senses(sentences, word) if isinstance(sentences, str) else None
        name = "base encoder" if key == "base" else f"fine-tuned {clf.name}"
        return compare(clf, sentences, word, layer, senses=senses, model_name=name)

    def neighbours(self, comparison: WordComparison, occurrence_label: str, k: int = 10,
                   choice: str = ACTIVE_MODEL, progress: Progress | None = None) -> Neighbours:
        """The k stored occurrences nearest to one occurrence; `progress` follows a computation."""
        if occurrence_label not in comparison.labels:
            raise BadInput(f"Choose an occurrence among {comparison.labels}, got {occurrence_label!r}.")
        key, clf = self.model(choice)
        corpus = self.index.get(key, clf, self.services.engine, comparison.word, comparison.piece_ids, progress)
        return neighbours(comparison, comparison.labels.index(occurrence_label), corpus, int(k))

    def warm_presets(self, info: VersionInfo | None = None, wait: bool = False) -> None:
        """Compute the presets' words for the serving version in a background thread (lower CPU
        priority), the default preset's first; `wait`: until done (tests, the bench)."""
        if self._warming is not None and self._warming.is_alive():
            self._warming.join()  # the previous version's: its words are keyed by it, harmless
        self._warming = threading.Thread(target=self._warm_quietly, name="warm-corpus-vectors", daemon=True)
        self._warming.start()
        if wait:
            self._warming.join()

    def _warm_quietly(self) -> None:
        behind_predictions()
        try:
            key, clf = self.model(ACTIVE_MODEL)
            for preset in PRESETS.values():  # insertion order: the default preset first
                word, pieces = word_pieces(clf, preset.word)
                self.index.get(key, clf, self.services.engine, word, pieces)
        except Exception:  # a background thread must log; a request computes the word itself
            log.exception("warming the corpus vectors failed")
