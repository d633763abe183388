"""Similar examples: the nearest neighbours of an example, or of a text someone types, among the
stored examples, by the active version's sentence embeddings (model/vectors.py; written by the
re-scoring pass): from the version's vector index file (vectors.build_index, memory-mapped, shared by
every process) once it is built, by brute force over the embeddings until then; plus one forward
pass for typed text or an example added since the re-scoring.
No Gradio here."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import validate
from bertdemo.db import examples, versions
from bertdemo.errors import BadInput, NotReady
from bertdemo.model import vectors
from bertdemo.model.vectors import IvfIndex, VectorIndex
from bertdemo.services import Services
from bertdemo.text import try_clean
from bertdemo.validate import number

MAX_NEIGHBOURS = 50
COLUMNS = ["id", "text", "label", "model", "similarity", "version"]


@dataclass(frozen=True)
class Neighbours:
    query: str  # what was searched for: "#12" or the cleaned text
    rows: pd.DataFrame  # COLUMNS, most similar first

    @property
    def ids(self) -> list[int]:
        return [int(i) for i in self.rows["id"]]

    @property
    def versions(self) -> dict[int, int]:
        return {int(i): int(v) for i, v in zip(self.rows["id"], self.rows["version"])}


@dataclass(frozen=True)
class Loaded:
    """A version's stored embeddings and, once built, its index file (model/vectors.py)."""
    vectors: VectorIndex
    ann: IvfIndex | None  # None: brute force over `vectors` (no index file yet, or a stale one)

    def nearest(self, query: np.ndarray, k: int, exclude: set[int] | None = None) -> list[tuple[int, float]]:
        return (self.ann if self.ann is not None else self.vectors).nearest(query, k, exclude)


class SimilarExamples:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine
        self._cache: tuple[tuple, Loaded] | None = None
        self._lock = threading.Lock()

    def index(self) -> VectorIndex:
        """The active version's stored embeddings (loaded once per version and file)."""
        return self.loaded().vectors

    def loaded(self) -> Loaded:
        """The active version's embeddings and index file, opened again when either file changes."""
        info = self.services.registry.active_version()
        if info is None:
            raise NotReady("No model version is active yet: similar examples need its embeddings.")
        folder = self.services.registry.folder(info)
        path = folder / vectors.VECTORS_FILE
        try:
            key = (info.id, path.stat().st_mtime_ns, _mtime(folder / vectors.INDEX_FILE))
        except FileNotFoundError:
            self.services.jobs.rescore_if_missing()
            raise NotReady(f"The embeddings of {info.name} are being computed (they come with re-scoring the "
                           "examples, about a minute); try again shortly.") from None
        with self._lock:
            if self._cache is None or self._cache[0] != key:
                self._cache = (key, Loaded(vectors.load(path), vectors.open_index(folder)))
            return self._cache[1]

    def _k(self, k: object) -> int:
        return int(number(k, "Number of similar examples", 1, MAX_NEIGHBOURS, whole=True))

    def of_example(self, example_id: object, k: object = 10) -> Neighbours:
        """The `k` stored examples most similar to example `example_id` (itself excluded)."""
        k, example_id = self._k(k), validate.example_id(example_id)
        with Session(self.engine) as s:
            text = examples.get(s, example_id).text  # NotFound for an unknown id
        index = self.loaded()
        vec = index.vectors.vector_of(example_id)
        if vec is None:  # added since the last re-scoring: one forward pass
            vec = self.services.registry.active().embed([text])[0]
        return Neighbours(f"#{example_id}", self._rows(index.nearest(vec, k, exclude={example_id})))

    def of_text(self, text: object, k: object = 10) -> Neighbours:
        """The `k` stored examples most similar to a text someone typed (cleaned as everywhere)."""
        k = self._k(k)
        cleaned, problem = try_clean(text, self.services.settings.max_chars)
        if cleaned is None:
            raise BadInput(f"Cannot search for that text: {problem}")
        index = self.loaded()
        vec = self.services.registry.active().embed([cleaned])[0]
        return Neighbours(cleaned, self._rows(index.nearest(vec, k)))

    def _rows(self, found: list[tuple[int, float]]) -> pd.DataFrame:
        ids = [i for i, _sim in found]
        with Session(self.engine) as s:
            texts = examples.texts_of(s, ids)
            state = examples.states(s, ids)
            active = versions.active_version(s)
            predicted = examples.predictions(s, active.id if active else None, ids)
        rows = [(i, texts[i][0], texts[i][1] or "", predicted.get(i, ""), round(sim, 3), state[i][0])
                for i, sim in found if i in texts]  # an example deleted since is skipped
        return pd.DataFrame(rows, columns=COLUMNS)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
