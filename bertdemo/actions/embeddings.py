"""The Embeddings tab's adapter: which model to compare with (the active version or the base
encoder), the comparison of one word across sentences, and its nearest occurrences in the stored
examples (vectors cached per model version and word in CorpusIndex). No Gradio here."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy.orm import Session

from bertdemo.actions.presets import preset_senses
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
)
from bertdemo.services import Services

CORPUS_CACHE_SIZE = 16  # (model, word) entries kept in memory
class CorpusIndex:
    """Corpus vectors computed on demand, cached in memory per (model key, word): the key is the
    model version, so a new version never sees its predecessor's vectors. Shared by all users
    (it holds no per-user state), bounded to CORPUS_CACHE_SIZE words (least recently used out)."""

    def __init__(self, max_examples: int = MAX_CORPUS_EXAMPLES, size: int = CORPUS_CACHE_SIZE) -> None:
        self.max_examples = max_examples
        self.size = size
        self._cache: OrderedDict[tuple[str, str], CorpusVectors] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # how many times vectors were computed (tests check the cache with it)

    def get(self, key: str, clf: Classifier, engine, word: str, pieces: Sequence[int]) -> CorpusVectors:
        with self._lock:
            hit = self._cache.get((key, word))
            if hit is not None:
                self._cache.move_to_end((key, word))
                return hit
        with Session(engine) as s:
            rows, total = containing_word(s, word, self.max_examples)
        cv = corpus_vectors(clf, rows, pieces, total)
        with self._lock:
            self.computed += 1
            self._cache[(key, word)] = cv
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return cv
# --------------------------------------------------------------------------- adapter for the UI
ACTIVE_MODEL = "active fine-tuned version"
BASE_MODEL = "base encoder"
MODEL_CHOICES = (ACTIVE_MODEL, BASE_MODEL)
class EmbeddingActions:
    """One method per UI action of the Embeddings tab: UI inputs in, plain values out."""

    def __init__(self, services: Services, index: CorpusIndex | None = None) -> None:
        self.services = services
        self.index = index or CorpusIndex()

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
                   choice: str = ACTIVE_MODEL) -> Neighbours:
        if occurrence_label not in comparison.labels:
            raise BadInput(f"Choose an occurrence among {comparison.labels}, got {occurrence_label!r}.")
        key, clf = self.model(choice)
        corpus = self.index.get(key, clf, self.services.engine, comparison.word, comparison.piece_ids)
        return neighbours(comparison, comparison.labels.index(occurrence_label), corpus, int(k))
