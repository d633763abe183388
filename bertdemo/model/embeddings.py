"""Contextual embeddings of one word across sentences: the Embeddings tab's logic.

A static word vector (the row of the word-embedding matrix) is the same for "bat" the animal and
"bat" the cricket bat; BERT's hidden states are not. This module finds every occurrence of a word
in a few sentences, takes its vector at every layer (mean over its WordPieces), and compares them:
cosine similarities, a 2-D PCA projection, how each pair's similarity changes with depth, the
static-embedding similarity beside it, and the nearest occurrences of the same word in the stored
dataset. Results are small frozen dataclasses; nothing here imports gradio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from bertdemo.errors import BadInput
from bertdemo.model import views
from bertdemo.model.classifier import Classifier
from bertdemo.text import TextError, clean_text
from bertdemo.validate import number

MAX_SENTENCES = 50  # a heatmap of more than ~100 occurrences is unreadable, and CPUs are shared
MAX_OCCURRENCES = 100
MAX_WORD_CHARS = 100
MAX_CORPUS_EXAMPLES = 300  # stored examples searched for neighbours (one batched pass each)


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
class WordComparison:
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
        raise BadInput("The word is empty: type the word to compare (for example: bat).")
    if len(raw.strip()) > MAX_WORD_CHARS:
        raise BadInput(f"The word is {len(raw.strip()):,} characters long; the limit is {MAX_WORD_CHARS}.")
    try:
        cleaned = clean_text(raw)
    except TextError as exc:
        raise BadInput(f"The word cannot be used: {exc}") from exc
    if any(ch.isspace() for ch in cleaned):
        raise BadInput(f"Type one word, not a phrase: got {cleaned!r}.")
    ids = clf.tokenizer(cleaned, add_special_tokens=False)["input_ids"]
    if not ids:
        raise BadInput(f"The word {cleaned!r} gives no WordPieces.")
    if len(ids) > clf.max_length - 2:
        raise BadInput(
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
    return int(number(layer, "The layer", 0, num_layers, whole=True, note="input embeddings"))


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
            senses: Sequence[str] | None = None, model_name: str = "") -> WordComparison:
    """Every occurrence of `word` in `sentences` (one per line), compared at every layer."""
    cleaned_word, pieces = word_pieces(clf, word)
    lines = split_sentences(sentences)
    if not lines:
        raise BadInput("Type at least one sentence (one per line) that uses the word.")
    if len(lines) > MAX_SENTENCES:
        raise BadInput(f"You gave {len(lines)} sentences; the limit is {MAX_SENTENCES}. "
                           "Keep the ones you want to compare.")
    num_layers = views.num_layers(clf)
    layer = layer_of(layer, num_layers)

    skipped: list[Skipped] = []
    kept: list[tuple[int, str]] = []
    for n, line in lines:
        try:
            kept.append((n, clean_text(line)))
        except TextError as exc:
            skipped.append(Skipped(n, line.strip(), str(exc)))

    hidden = views.hidden_states_batch(clf, [t for _, t in kept])
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
        raise BadInput(f"The word occurs {len(occurrences)} times; the limit is {MAX_OCCURRENCES}. "
                           "Use fewer sentences.")
    if len(occurrences) < 2:
        found = "once" if occurrences else "nowhere"
        raise BadInput(
            f"The word {cleaned_word!r} occurs {found} in the sentences; at least two occurrences are "
            "needed to compare (two sentences that use it, or one that uses it twice)."
            + (f" Skipped lines: {', '.join(str(s.line_number) for s in skipped)}." if skipped else ""))
    if used == 1:
        notes.append("Only one sentence uses the word: add sentences to compare it across contexts.")
    if senses is not None and len(senses) != len(occurrences):
        senses = None  # the sentences were edited: the preset's senses no longer line up

    vectors = np.stack(vecs, axis=1).astype(np.float32)  # (L+1, N, H)
    static = np.repeat(static_vectors(clf, pieces)[None], len(occurrences), axis=0)  # (N, H)
    return WordComparison(
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
                   matching: int, batch_size: int = 32,
                   progress: Callable[[int, int], None] | None = None) -> CorpusVectors:
    """Vectors of every whole-word occurrence of `pieces` in (id, cleaned text, label) rows;
    `progress(done, total)` after each chunk of rows (seconds of work: the tab shows it)."""
    rows = list(rows)
    ids, texts, labels, nths, vecs = [], [], [], [], []
    for start in range(0, len(rows), 64):  # chunks bound the memory of the full hidden states
        chunk = rows[start:start + 64]
        for (ex_id, text, label), hs in zip(chunk, views.hidden_states_batch(clf, [r[1] for r in chunk], batch_size)):
            for nth, (a, b) in enumerate(find_spans(hs.view.tokens, hs.view.ids, pieces), start=1):
                ids.append(ex_id)
                texts.append(text)
                labels.append(label)
                nths.append(nth)
                vecs.append(hs.states[:, a:b].mean(axis=1))  # (L+1, H)
        if progress is not None:
            progress(start + len(chunk), len(rows))
    dim = (views.num_layers(clf) + 1, clf.model.config.hidden_size)
    vectors = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, *dim), np.float32)
    return CorpusVectors(tuple(ids), tuple(texts), tuple(labels), tuple(nths), vectors,
                         searched=len(rows), matching=matching, capped=matching > len(rows))


def neighbours(comparison: WordComparison, occurrence: int, corpus: CorpusVectors, k: int = 10,
               layer: int | None = None) -> Neighbours:
    """The k stored occurrences most similar (cosine at `layer`) to occurrence number `occurrence`."""
    if not 0 <= occurrence < len(comparison.occurrences):
        raise BadInput(f"Choose one of the {len(comparison.occurrences)} occurrences.")
    if k < 1:
        raise BadInput(f"k must be at least 1, got {k}.")
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
