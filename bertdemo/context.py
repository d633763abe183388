"""Contextual embeddings of one word across sentences: the Embeddings tab's logic.

A static word vector (the row of the word-embedding matrix) is the same for "bat" the animal and
"bat" the cricket bat; BERT's hidden states are not. This module finds every occurrence of a word
in a few sentences, takes its vector at every layer (mean over its WordPieces), and compares them:
cosine similarities, a 2-D PCA projection, how each pair's similarity changes with depth, the
static-embedding similarity beside it, and the nearest occurrences of the same word in the stored
dataset. Results are small frozen dataclasses; nothing here imports gradio.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo import store
from bertdemo.classifier import Classifier
from bertdemo.inputs import number_in
from bertdemo.text import TextError, clean_text

if TYPE_CHECKING:
    from bertdemo.jobs import Services

MAX_SENTENCES = 50  # a heatmap of more than ~100 occurrences is unreadable, and CPUs are shared
MAX_OCCURRENCES = 100
MAX_WORD_CHARS = 100
MAX_CORPUS_EXAMPLES = 300  # stored examples searched for neighbours (one batched pass each)
CORPUS_CACHE_SIZE = 16  # (model, word) entries kept in memory
MAX_PAIRS_PLOTTED = 15


class ContextError(ValueError):
    """Input the Embeddings tab cannot use; the message is meant for the user."""


@dataclass(frozen=True)
class Occurrence:
    """One occurrence of the word: sentence `sentence_index` (0-based, among the sentences kept),
    the `nth` time the word appears in it, WordPieces [start, end) of its tokenization."""

    sentence_index: int
    line_number: int  # 1-based line of the input, for messages
    sentence: str  # cleaned, as the model saw it
    nth: int  # 1-based
    start: int
    end: int

    @property
    def label(self) -> str:
        return f"S{self.line_number}.{self.nth}"


@dataclass(frozen=True)
class Skipped:
    line_number: int
    text: str
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Every occurrence of `word` in the sentences, compared at every layer.

    `vectors`, `layer_similarity` are indexed [layer, occurrence]; occurrences are parallel to
    `senses` when the sentences came with known senses (a preset)."""

    word: str
    pieces: tuple[str, ...]  # the word's WordPieces (several = mean-pooled)
    piece_ids: tuple[int, ...]  # parallel to pieces
    layer: int  # the layer `similarity` is taken at
    num_layers: int  # encoder layers; hidden-state layers are 0..num_layers
    model_name: str
    occurrences: tuple[Occurrence, ...]
    skipped: tuple[Skipped, ...]
    vectors: np.ndarray  # (L+1, N, H) float32, mean over the word's pieces
    layer_similarity: np.ndarray  # (L+1, N, N) cosine
    static_similarity: np.ndarray  # (N, N) cosine of word-embedding rows (no context at all)
    senses: tuple[str, ...] | None = None  # (N,) sense of each occurrence, when known
    notes: tuple[str, ...] = ()  # things the UI should say (warnings)

    @property
    def similarity(self) -> np.ndarray:
        return self.layer_similarity[self.layer]  # (N, N)

    @property
    def labels(self) -> list[str]:
        return [o.label for o in self.occurrences]

    @property
    def pooled(self) -> bool:
        return len(self.pieces) > 1

    def pairs(self) -> list[tuple[int, int]]:
        n = len(self.occurrences)
        return [(i, j) for i in range(n) for j in range(i + 1, n)]

    def separation(self) -> np.ndarray | None:
        """(L+1,) mean same-sense similarity minus mean different-sense similarity per layer,
        or None without senses (or without both kinds of pair)."""
        if self.senses is None:
            return None
        same = [(i, j) for i, j in self.pairs() if self.senses[i] == self.senses[j]]
        diff = [(i, j) for i, j in self.pairs() if self.senses[i] != self.senses[j]]
        if not same or not diff:
            return None
        sims = self.layer_similarity
        return (np.mean([sims[:, i, j] for i, j in same], axis=0)
                - np.mean([sims[:, i, j] for i, j in diff], axis=0))

    def sense_means(self, layer: int) -> tuple[float, float] | None:
        """(mean same-sense similarity, mean different-sense similarity) at `layer`."""
        if self.senses is None:
            return None
        sims = self.layer_similarity[layer]
        same = [sims[i, j] for i, j in self.pairs() if self.senses[i] == self.senses[j]]
        diff = [sims[i, j] for i, j in self.pairs() if self.senses[i] != self.senses[j]]
        if not same or not diff:
            return None
        return float(np.mean(same)), float(np.mean(diff))

    def best_layer(self) -> int | None:
        """The layer whose vectors separate the senses most (None without senses)."""
        sep = self.separation()
        return None if sep is None else int(np.argmax(sep))

    def margin(self, layer: int) -> float | None:
        """Worst case over occurrences of (least similar same-sense occurrence) minus (most similar
        other-sense occurrence) at `layer`. Positive = the senses separate cleanly: every occurrence
        is closer to each occurrence of its own sense than to any of another sense. None without
        senses or when some occurrence has no same-sense partner."""
        if self.senses is None:
            return None
        sims = self.layer_similarity[layer]  # (N, N)
        s = self.senses
        worst = np.inf
        for i in range(len(s)):
            same = [sims[i, j] for j in range(len(s)) if j != i and s[j] == s[i]]
            diff = [sims[i, j] for j in range(len(s)) if s[j] != s[i]]
            if not same or not diff:
                return None
            worst = min(worst, min(same) - max(diff))
        return float(worst)

    def projection(self, layer: int | None = None) -> np.ndarray:
        """(N, 2) PCA projection of the occurrences at `layer` (default: the chosen layer)."""
        from sklearn.decomposition import PCA

        x = self.vectors[self.layer if layer is None else layer].astype(np.float64)  # (N, H)
        n_comp = min(2, len(x) - 1)  # N points span at most N-1 directions; the rest is noise
        xy = PCA(n_components=n_comp, svd_solver="full").fit_transform(x)
        if n_comp < 2:
            xy = np.hstack([xy, np.zeros((len(x), 2 - n_comp))])
        return xy

    def to_json(self) -> dict:
        """Plain values for the HTTP API."""
        return {
            "word": self.word, "pieces": list(self.pieces), "pooled": self.pooled, "layer": self.layer,
            "num_layers": self.num_layers, "model": self.model_name,
            "occurrences": [
                {"label": o.label, "line": o.line_number, "sentence": o.sentence, "nth": o.nth,
                 "token_start": o.start, "token_end": o.end} for o in self.occurrences],
            "similarity": np.round(self.similarity, 6).tolist(),
            "static_similarity": np.round(self.static_similarity, 6).tolist(),
            "skipped": [{"line": s.line_number, "text": s.text, "reason": s.reason} for s in self.skipped],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- helpers
def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """(..., N, H) -> (..., N, N) cosine similarities (0 for a zero vector)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    unit = x / np.where(norm == 0, 1.0, norm)
    return np.clip(unit @ np.swapaxes(unit, -1, -2), -1.0, 1.0)


def word_pieces(clf: Classifier, word: object) -> tuple[str, list[int]]:
    """Validate the target word and return (cleaned lower-case word, its WordPiece ids)."""
    raw = "" if word is None else str(word)
    if not raw.strip():
        raise ContextError("The word is empty: type the word to compare (for example: bat).")
    if len(raw.strip()) > MAX_WORD_CHARS:
        raise ContextError(f"The word is {len(raw.strip()):,} characters long; the limit is {MAX_WORD_CHARS}.")
    try:
        cleaned = clean_text(raw)
    except TextError as exc:
        raise ContextError(f"The word cannot be used: {exc}") from exc
    if any(ch.isspace() for ch in cleaned):
        raise ContextError(f"Type one word, not a phrase: got {cleaned!r}.")
    ids = clf.tokenizer(cleaned, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ContextError(f"The word {cleaned!r} gives no WordPieces.")
    if len(ids) > clf.max_length - 2:
        raise ContextError(
            f"The word is {len(ids)} WordPieces long; the model reads at most {clf.max_length - 2} "
            "per sentence (max length minus [CLS] and [SEP]).")
    return cleaned.lower(), ids


def find_spans(tokens: Sequence[str], ids: Sequence[int], pieces: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each whole-word occurrence of `pieces` in a tokenization: the next token
    must not continue the word ("bat" does not match "bat ##man")."""
    k = len(pieces)
    spans = []
    for p in range(len(ids) - k + 1):
        if list(ids[p:p + k]) == list(pieces):
            if p + k < len(tokens) and tokens[p + k].startswith("##"):
                continue
            if tokens[p].startswith("##"):
                continue
            spans.append((p, p + k))
    return spans


def layer_of(layer: object, num_layers: int) -> int:
    """The layer to compare at: a whole number in [0, num_layers]; None = the last layer."""
    if layer is None:
        return num_layers
    x = number_in(layer, 0, num_layers, whole=True)
    if x is None:
        raise ContextError(f"The layer must be a whole number between 0 (input embeddings) and {num_layers}, "
                           f"got {layer!r:.40}.")
    return int(x)


def split_sentences(sentences: object) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines; a list of strings is taken as lines."""
    if sentences is None:
        lines: list[str] = []
    elif isinstance(sentences, str):
        lines = sentences.splitlines()
    else:
        lines = [str(s) for s in sentences]
    return [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]


def static_vectors(clf: Classifier, pieces: Sequence[int]) -> np.ndarray:
    """(H,) mean of the word-embedding matrix rows of `pieces`: the context-free vector."""
    emb = clf.model.base_model.get_input_embeddings().weight  # (V, H)
    return emb[list(pieces)].detach().float().mean(0).cpu().numpy()


# --------------------------------------------------------------------------- comparison
def compare(clf: Classifier, sentences: object, word: object, layer: int | None = None,
            senses: Sequence[str] | None = None, model_name: str = "") -> Comparison:
    """Every occurrence of `word` in `sentences` (one per line), compared at every layer."""
    cleaned_word, pieces = word_pieces(clf, word)
    lines = split_sentences(sentences)
    if not lines:
        raise ContextError("Type at least one sentence (one per line) that uses the word.")
    if len(lines) > MAX_SENTENCES:
        raise ContextError(f"You gave {len(lines)} sentences; the limit is {MAX_SENTENCES}. "
                           "Keep the ones you want to compare.")
    num_layers = clf.num_layers
    layer = layer_of(layer, num_layers)

    skipped: list[Skipped] = []
    kept: list[tuple[int, str]] = []
    for n, line in lines:
        try:
            kept.append((n, clean_text(line)))
        except TextError as exc:
            skipped.append(Skipped(n, line.strip(), str(exc)))

    hidden = clf.hidden_states_batch([t for _, t in kept]) if kept else []
    occurrences: list[Occurrence] = []
    vecs: list[np.ndarray] = []  # each (L+1, H)
    notes: list[str] = []
    used = 0  # sentences that contain the word
    for (n, text), hs in zip(kept, hidden):
        spans = find_spans(hs.view.tokens, hs.view.ids, pieces)
        if not spans:
            reason = f"the word {cleaned_word!r} is not in it"
            if hs.view.truncated:
                reason += f" (only its first {clf.max_length} tokens were read)"
            skipped.append(Skipped(n, text, reason))
            continue
        used += 1
        if hs.view.truncated:
            notes.append(f"Line {n} is longer than {clf.max_length} tokens: only its beginning was read.")
        for nth, (a, b) in enumerate(spans, start=1):
            occurrences.append(Occurrence(used - 1, n, text, nth, a, b))
            vecs.append(hs.states[:, a:b].mean(axis=1))  # (L+1, k, H) -> (L+1, H)
    skipped.sort(key=lambda s: s.line_number)
    if len(occurrences) > MAX_OCCURRENCES:
        raise ContextError(f"The word occurs {len(occurrences)} times; the limit is {MAX_OCCURRENCES}. "
                           "Use fewer sentences.")
    if len(occurrences) < 2:
        found = "once" if occurrences else "nowhere"
        raise ContextError(
            f"The word {cleaned_word!r} occurs {found} in the sentences; at least two occurrences are "
            "needed to compare (two sentences that use it, or one that uses it twice)."
            + (f" Skipped lines: {', '.join(str(s.line_number) for s in skipped)}." if skipped else ""))
    if used == 1:
        notes.append("Only one sentence uses the word: add sentences to compare it across contexts.")
    if senses is not None and len(senses) != len(occurrences):
        senses = None  # the sentences were edited: the preset's senses no longer line up

    vectors = np.stack(vecs, axis=1).astype(np.float32)  # (L+1, N, H)
    static = np.repeat(static_vectors(clf, pieces)[None], len(occurrences), axis=0)  # (N, H)
    return Comparison(
        word=cleaned_word, pieces=tuple(clf.tokenizer.convert_ids_to_tokens(pieces)),
        piece_ids=tuple(pieces), layer=layer,
        num_layers=num_layers, model_name=model_name or clf.name, occurrences=tuple(occurrences),
        skipped=tuple(skipped), vectors=vectors, layer_similarity=cosine_matrix(vectors),
        static_similarity=cosine_matrix(static), senses=tuple(senses) if senses is not None else None,
        notes=tuple(notes))


# --------------------------------------------------------------------------- corpus neighbours
@dataclass(frozen=True)
class CorpusVectors:
    """Occurrences of one word in the stored examples, with their vectors at every layer.
    The lists are parallel to the rows of `vectors`."""

    example_ids: tuple[int, ...]
    texts: tuple[str, ...]
    labels: tuple[str | None, ...]
    nth: tuple[int, ...]
    vectors: np.ndarray  # (M, L+1, H) float32
    searched: int  # examples whose text was run through the model
    matching: int  # stored examples whose text contains the word as a substring
    capped: bool  # matching > searched: only the first MAX_CORPUS_EXAMPLES were read


@dataclass(frozen=True)
class Neighbour:
    example_id: int
    text: str
    label: str | None
    nth: int
    similarity: float


@dataclass(frozen=True)
class Neighbours:
    query: Occurrence
    layer: int
    items: tuple[Neighbour, ...]
    corpus: CorpusVectors


def corpus_vectors(clf: Classifier, rows: Iterable[tuple[int, str, str | None]], pieces: Sequence[int],
                   matching: int, batch_size: int = 32) -> CorpusVectors:
    """Vectors of every whole-word occurrence of `pieces` in (id, cleaned text, label) rows."""
    rows = list(rows)
    ids, texts, labels, nths, vecs = [], [], [], [], []
    for start in range(0, len(rows), 64):  # chunks bound the memory of the full hidden states
        chunk = rows[start:start + 64]
        for (ex_id, text, label), hs in zip(chunk, clf.hidden_states_batch([r[1] for r in chunk], batch_size)):
            for nth, (a, b) in enumerate(find_spans(hs.view.tokens, hs.view.ids, pieces), start=1):
                ids.append(ex_id)
                texts.append(text)
                labels.append(label)
                nths.append(nth)
                vecs.append(hs.states[:, a:b].mean(axis=1))  # (L+1, H)
    dim = (clf.num_layers + 1, clf.model.config.hidden_size)
    vectors = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, *dim), np.float32)
    return CorpusVectors(tuple(ids), tuple(texts), tuple(labels), tuple(nths), vectors,
                         searched=len(rows), matching=matching, capped=matching > len(rows))


def stored_rows(session: Session, word: str, limit: int = MAX_CORPUS_EXAMPLES
                ) -> tuple[list[tuple[int, str, str | None]], int]:
    """(up to `limit` stored examples whose text contains `word`, how many contain it in all)."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    cond = store.Example.text.ilike(f"%{escaped}%", escape="\\")
    total = session.scalar(select(func.count()).select_from(store.Example).where(cond)) or 0
    rows = session.execute(select(store.Example.id, store.Example.text, store.Example.label)
                           .where(cond).order_by(store.Example.id).limit(limit)).all()
    return [tuple(r) for r in rows], int(total)


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
            rows, total = stored_rows(s, word, self.max_examples)
        cv = corpus_vectors(clf, rows, pieces, total)
        with self._lock:
            self.computed += 1
            self._cache[(key, word)] = cv
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return cv


def neighbours(comparison: Comparison, occurrence: int, corpus: CorpusVectors, k: int = 10,
               layer: int | None = None) -> Neighbours:
    """The k stored occurrences most similar (cosine at `layer`) to occurrence number `occurrence`."""
    if not 0 <= occurrence < len(comparison.occurrences):
        raise ContextError(f"Choose one of the {len(comparison.occurrences)} occurrences.")
    if k < 1:
        raise ContextError(f"k must be at least 1, got {k}.")
    layer = comparison.layer if layer is None else layer
    q = comparison.vectors[layer, occurrence]  # (H,)
    items: tuple[Neighbour, ...] = ()
    if len(corpus.vectors):
        m = corpus.vectors[:, layer]  # (M, H)
        sims = (m @ q) / np.maximum(np.linalg.norm(m, axis=1) * np.linalg.norm(q), 1e-12)  # (M,)
        order = np.argsort(-sims, kind="stable")[:k]
        items = tuple(Neighbour(corpus.example_ids[i], corpus.texts[i], corpus.labels[i], corpus.nth[i],
                                float(sims[i])) for i in order)
    return Neighbours(comparison.occurrences[occurrence], layer, items, corpus)


# --------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """Sentences that use `word` in two senses; `senses` names the sense of each occurrence, in
    reading order (line by line, left to right), so the tab can find the layer that separates them."""

    name: str
    word: str
    sentences: tuple[str, ...]
    senses: tuple[str, ...]
    explanation: str

    @property
    def text(self) -> str:
        return "\n".join(self.sentences)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("bat", "bat", (
        "I encountered a bat when I went to buy a cricket bat.",
        "We saw a bat flying around the barn at night.",
        "He hit the ball hard with his new cricket bat.",
    ), ("animal", "cricket", "animal", "cricket"),
        "The seed's sentence uses *bat* twice: the animal, then the cricket bat. The static input "
        "embedding is the same vector for both (similarity 1.0); in the middle layers the two animals "
        "(S1.1, S2.1) end up closer to each other than to either cricket bat (S1.2, S3.1)."),
    Preset("bank", "bank", (
        "I deposited my salary at the bank this morning.",
        "The bank approved our mortgage application.",
        "We had a picnic on the bank of the river.",
        "The boat drifted towards the muddy bank.",
    ), ("money", "money", "river", "river"),
        "Money bank versus river bank. Look at the heatmap: two bright blocks (one per sense) appear "
        "as soon as the first layers mix in the context."),
    Preset("bass", "bass", (
        "He plays bass in a jazz band.",
        "Turn up the bass on the speakers.",
        "We caught a huge bass in the lake.",
        "The fisherman grilled the bass for dinner.",
    ), ("music", "music", "fish", "fish"),
        "The instrument (and the low frequencies) versus the fish. A harder case for this small model: "
        "watch the line plot, where the senses only pull apart in the upper layers."),
    Preset("spring", "spring", (
        "The flowers bloom in spring.",
        "We are going to Japan next spring.",
        "The mattress has a broken spring.",
        "Compress the spring and let it go.",
    ), ("season", "season", "coil", "coil"),
        "The season versus the metal coil (a third sense, a water spring, is easy to add). The line "
        "plot shows how quickly each pair moves apart with depth."),
    Preset("crane", "crane", (
        "A crane lifted the steel beams onto the roof.",
        "The construction crane towered over the city.",
        "A crane stood on one leg in the marsh.",
        "The crane spread its wings and flew away.",
    ), ("machine", "machine", "bird", "bird"),
        "The machine versus the bird. Both senses are tall and lift their necks, yet the sentences "
        "around them (steel, roof / marsh, wings) pull the vectors apart."),
    Preset("mouse", "mouse", (
        "Click the left mouse button twice.",
        "My wireless mouse needs new batteries.",
        "The cat chased a mouse into the kitchen.",
        "A mouse nibbled the cheese in the pantry.",
    ), ("computer", "computer", "animal", "animal"),
        "The computer device versus the animal: a sense that did not exist a few decades ago. "
        "Compare the layers: at layer 0 only the position differs, and no single layer separates "
        "the senses perfectly here, which the margin in the summary shows."),
    Preset("apple", "apple", (
        "She ate a crisp red apple.",
        "Peel the apple and slice it for the pie.",
        "Apple released a new iPhone this year.",
        "Apple shares rose after the earnings report.",
    ), ("fruit", "fruit", "company", "company"),
        "The fruit versus the company. The model is uncased, so the capital A of Apple is invisible to "
        "it: only the context (iPhone, shares) tells the company apart."),
)}
DEFAULT_PRESET = "bat"


def preset_senses(sentences: str, word: str) -> tuple[str, ...] | None:
    """The senses of the preset whose text and word these are, unchanged; else None."""
    for p in PRESETS.values():
        if split_sentences(sentences) == split_sentences(p.text) and str(word).strip().lower() == p.word:
            return p.senses
    return None


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
            raise ContextError(f"The model must be one of {list(MODEL_CHOICES)}, got {choice!r}.")
        clf = self.services.registry.active()
        return f"version:{clf.name}", clf

    def compare(self, sentences: object, word: object, layer: int | None = None,
                choice: str = ACTIVE_MODEL) -> Comparison:
        key, clf = self.model(choice)
        senses = preset_senses(sentences, word) if isinstance(sentences, str) else None
        name = "base encoder" if key == "base" else f"fine-tuned {clf.name}"
        return compare(clf, sentences, word, layer, senses=senses, model_name=name)

    def neighbours(self, comparison: Comparison, occurrence_label: str, k: int = 10,
                   choice: str = ACTIVE_MODEL) -> Neighbours:
        if occurrence_label not in comparison.labels:
            raise ContextError(f"Choose an occurrence among {comparison.labels}, got {occurrence_label!r}.")
        key, clf = self.model(choice)
        corpus = self.index.get(key, clf, self.services.engine, comparison.word, comparison.piece_ids)
        return neighbours(comparison, comparison.labels.index(occurrence_label), corpus, int(k))
