"""The corpus map: every stored example placed by the active version's sentence embeddings
projected to 2-D (model/projection.py), coloured by its label, the model's prediction, or
whether the two disagree; a region selected on it (a box or a lasso polygon, in the map's
coordinates) becomes a set of examples to label in bulk (actions/bulk.py) or a queue of one's own
("Map selection" in the Label tab). No Gradio here.

The coordinates are laid out after a version's re-scoring and stored with its scores
(training/follow_up.lay_out, db/map_coords.py): the first draw reads them (~0.3 s at 300k instead of
fitting and projecting, 2.5-5 s), and a selection is a range query on them plus a polygon test on
the candidates. A version whose coordinates are not all stored (re-scored before migration 0012,
or its follow-up stopped) is laid out here from its embeddings, with the same function, and stored
in the background.

At any corpus size the page gets at most `max_points` points (BERTDEMO_MAP_POINTS): a
deterministic sample stratified by colour, so a rare class stays visible, sent as typed arrays
(base64 of little-endian Uint16 coordinates, Uint8 colours, Int32 ids: 9 bytes a point, 12 in
base64), plus density cells (counts per grid cell and colour) for the examples not sent, and the
exact totals. A selection is computed here over every example, never over the sample, so its
count is exact."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.path import Path as Polygon
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.similar import SimilarExamples
from bertdemo.db import leases, map_coords, versions
from bertdemo.errors import BadInput
from bertdemo.model import projection, vectors
from bertdemo.model.vectors import RowLookup
from bertdemo.services import Services
from bertdemo.training import follow_up
from bertdemo.training.registry import VersionInfo
from bertdemo.validate import choice, short

log = logging.getLogger(__name__)

COLOURINGS = ("label", "prediction", "disagreement")
PALETTE = ("#d62728", "#7f7f7f", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
NONE_COLOUR = "#c7c7c7"
SELECTION_KEY = "selection:"  # + a hash of the user name: the person's current map selection (app_settings)
MAX_POLYGON = 2_000
MAX_POINTS = 50_000  # points sent to the page by default (config.Settings.map_points)
GRID = 128  # density cells per side for the examples not sent
QUANT = 65_535  # coordinates go as Uint16 steps across the bounds: 1/65,535 of the map, far below a pixel
PAYLOAD_FORMAT = 2  # 1 was a JSON list of [x, y, legend index, id] rows


@dataclass(frozen=True, eq=False)  # arrays: no field-wise ==
class Density:
    """The examples not drawn as points, counted per grid cell and legend index (only non-empty
    pairs; parallel arrays). Cell = row * grid + column, row 0 at the bottom (lowest y)."""

    grid: int
    cells: np.ndarray  # (m,) uint16
    keys: np.ndarray  # (m,) uint8 legend index
    counts: np.ndarray  # (m,) uint32

    @property
    def total(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True, eq=False)
class MapView:
    """What the map draws. `ids`, `xy` and `keys` are parallel: the sampled points, in drawing
    order (the most common colour first, so rarer ones lie on top); `counts` are exact over every
    example of the map."""

    ids: np.ndarray  # (n,) example ids of the points sent
    xy: np.ndarray  # (n, 2) float32 map coordinates
    keys: np.ndarray  # (n,) uint8 legend index
    legend: list[tuple[str, str]]  # (name, colour) per legend index
    counts: list[int]  # examples per legend index, all of them
    density: Density  # the examples not sent
    bounds: tuple[float, float, float, float]  # x0, x1, y0, y1 of every example (x1 > x0, y1 > y0)
    colour_by: str
    version: str

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def drawn(self) -> int:
        return len(self.ids)

    def as_json(self) -> dict:
        """The page's payload (ui/corpus_map.py decodes it; `decode` here is its Python mirror)."""
        x0, x1, y0, y1 = self.bounds
        q = np.empty((len(self.xy), 2), dtype="<u2")
        if len(self.xy):
            q[:, 0] = np.rint((self.xy[:, 0] - x0) / (x1 - x0) * QUANT)
            q[:, 1] = np.rint((self.xy[:, 1] - y0) / (y1 - y0) * QUANT)
        d = self.density
        return {"format": PAYLOAD_FORMAT, "colour_by": self.colour_by, "version": self.version,
                "legend": [list(x) for x in self.legend], "counts": list(self.counts), "total": self.total,
                "drawn": self.drawn, "bounds": [x0, x1, y0, y1],
                "x": _b64(q[:, 0], "<u2"), "y": _b64(q[:, 1], "<u2"), "c": _b64(self.keys, "u1"),
                "id": _b64(self.ids, "<i4"),
                "grid": d.grid, "cells": {"cell": _b64(d.cells, "<u2"), "c": _b64(d.keys, "u1"),
                                          "n": _b64(d.counts, "<u4")}}


def _b64(values: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def decode(payload: dict) -> dict[str, np.ndarray]:
    """The arrays of `MapView.as_json()`, as the page reads them: x, y (map coordinates, float64),
    c, id, and cell, cell_c, cell_n of the density cells."""
    x0, x1, y0, y1 = payload["bounds"]
    cells = payload["cells"]
    return {"x": x0 + _unb64(payload["x"], "<u2") / QUANT * (x1 - x0),
            "y": y0 + _unb64(payload["y"], "<u2") / QUANT * (y1 - y0),
            "c": _unb64(payload["c"], "u1"), "id": _unb64(payload["id"], "<i4"),
            "cell": _unb64(cells["cell"], "<u2"), "cell_c": _unb64(cells["c"], "u1"),
            "cell_n": _unb64(cells["n"], "<u4")}


# ------------------------------------------------------------------------------- sampling
def quotas(counts: np.ndarray, cap: int) -> np.ndarray:
    """Points to send per class, `cap` in all (all of them when fewer): every class keeps min(its
    size, cap / 2k) (k non-empty classes), the rest of the budget is shared in proportion to what is
    left of each (largest remainders)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() <= cap:
        return counts.copy()
    floor = cap // (2 * max(1, int((counts > 0).sum())))
    q = np.minimum(counts, floor)
    extra = counts - q
    share = extra * ((cap - q.sum()) / extra.sum())
    q += np.floor(share).astype(np.int64)
    # the units floor() left over go to the largest remainders (each below 1, so to distinct classes)
    left = cap - int(q.sum())
    q[np.argsort(-(share - np.floor(share)), kind="stable")[:left]] += 1
    return q


def stratified_sample(keys: np.ndarray, priority: np.ndarray, cap: int) -> np.ndarray:
    """Row numbers of the points to send (most common class first, then by `priority`): per class
    (`keys`), its `quotas` many with the lowest `priority` (a fixed number per example, so the
    same examples stay drawn from one request to the next while labels change)."""
    keys = np.asarray(keys, dtype=np.int64)
    counts = np.bincount(keys, minlength=1)
    q = quotas(counts, cap)
    order = np.lexsort((priority, keys))  # by class, then priority
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(keys)) - starts[keys[order]]  # position within its class
    chosen = order[rank < q[keys[order]]]
    # drawing order: the biggest class first, so a rare one is not buried under it
    size = counts[keys[chosen]]
    return chosen[np.lexsort((priority[chosen], -size))]


def id_priority(ids: np.ndarray) -> np.ndarray:
    """A fixed pseudo-random number per example id (a multiplicative hash): the sample's order."""
    return (np.asarray(ids, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(11)


@dataclass(frozen=True, eq=False)
class MapLayout:
    """Every example of the map once (cached until the version or its embeddings change): its id,
    coordinates, density cell and sample priority, and an id -> row look-up. `source` is what it
    was laid out from: a version's stored coordinates, read from its scores (a selection is then a
    range query on them), or a VectorIndex (computed here, the fallback)."""

    source: object  # (version id, its embeddings file's mtime): stored coordinates; else the VectorIndex projected
    ids: np.ndarray  # (N,) int64
    xy: np.ndarray  # (N, 2) float32
    bounds: tuple[float, float, float, float]
    cell: np.ndarray  # (N,) int64 in [0, GRID * GRID)
    priority: np.ndarray  # (N,) uint64
    lookup: RowLookup

    @property
    def version_id(self) -> int | None:
        """The version whose stored coordinates these are (None: computed here)."""
        return self.source[0] if isinstance(self.source, tuple) else None

    @classmethod
    def of(cls, source: object, ids: np.ndarray, xy: np.ndarray) -> MapLayout:
        ids = np.asarray(ids, dtype=np.int64)
        xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
        if len(xy):
            x0, y0 = (float(v) for v in xy.min(axis=0))
            x1, y1 = (float(v) for v in xy.max(axis=0))
        else:
            x0 = y0 = 0.0
            x1 = y1 = 1.0
        x1, y1 = (x1 if x1 > x0 else x0 + 1.0), (y1 if y1 > y0 else y0 + 1.0)
        col = np.clip(((xy[:, 0] - x0) / (x1 - x0) * GRID).astype(np.int64), 0, GRID - 1)
        row = np.clip(((xy[:, 1] - y0) / (y1 - y0) * GRID).astype(np.int64), 0, GRID - 1)
        return cls(source, ids, xy, (x0, x1, y0, y1), row * GRID + col, id_priority(ids), RowLookup(ids))

    def codes(self, found: map_coords.Codes, classes: int, missing: int) -> np.ndarray:
        """(N,) each example's class number in `found` (`missing` where it has none, or one of
        `classes` or more: a value that is no label); examples not on the map are left out."""
        out = np.full(len(self.ids), missing, dtype=np.int64)
        rows = self.lookup.rows_of(found.ids)
        known = rows >= 0
        out[rows[known]] = np.where(found.codes[known] < classes, found.codes[known], missing)
        return out


class CorpusMap:
    def __init__(self, services: Services, similar: SimilarExamples, max_points: int | None = None) -> None:
        self.services = services
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self.similar = similar
        self.max_points = int(max_points or services.settings.map_points)
        self._layout: MapLayout | None = None
        self._lock = threading.Lock()
        self._laying_out: set[int] = set()  # versions whose coordinates this process began to store

    def layout(self) -> MapLayout:
        """The active version's map layout: its stored coordinates once every score has them (the
        re-scoring's follow-up writes them, training/follow_up.lay_out), read once per version;
        until then computed here from its embeddings (model/projection.py, the same function, once
        per loaded index), and stored in the background for the next time."""
        info, stored = self._active()
        if stored:
            # a version scored again (its embeddings file written anew) is read again
            key = (info.id, _mtime(self.services.registry.folder(info) / vectors.VECTORS_FILE))
            with self._lock:
                if self._layout is None or self._layout.source != key:
                    with Session(self.engine) as s:
                        points = map_coords.coordinates(s, info.id)
                    self._layout = MapLayout.of(key, points.ids, points.xy)
                return self._layout
        index = self.similar.index()
        with self._lock:
            if self._layout is None or self._layout.source is not index:
                self._layout = MapLayout.of(index, index.ids, projection.project(index.vectors))
                if info is not None:
                    self._lay_out_later(info)
            return self._layout

    def _active(self) -> tuple[VersionInfo | None, bool]:
        """The active version (None: none yet) and whether its coordinates are all stored."""
        info = self.services.registry.active_version()
        with Session(self.engine) as s:
            return info, info is not None and map_coords.complete(s, info.id)

    def _lay_out_later(self, info: VersionInfo) -> None:
        """Store the active version's coordinates in a background thread (its progress in the status
        line), once per version in this process: a version re-scored before they were stored
        (0012), or whose follow-up stopped before the map. Not while its follow-up runs: it lays
        the map out itself."""
        jobs = self.services.jobs
        if info.id in self._laying_out:
            return
        under_way = jobs.records.activity()
        path = self.services.registry.folder(info) / vectors.VECTORS_FILE
        if (under_way is not None and under_way.version == info.name) or not path.exists():
            return
        self._laying_out.add(info.id)

        def work() -> None:
            try:
                follow_up.lay_out(self.engine, path, info.id, jobs.records.reporter(info.name))
            except Exception:  # the map keeps computing its layout itself
                log.exception("could not store the corpus map of %s", info.name)
            finally:
                jobs.records.end_activity(info.name)

        threading.Thread(target=work, name=f"map-{info.name}", daemon=True).start()

    def view(self, colour_by: str = "label") -> MapView:
        choice(colour_by, "Colour by", COLOURINGS)
        lay = self.layout()
        n = len(self.labels)
        with Session(self.engine) as s:
            active = versions.active_version(s)
            lab = lay.codes(map_coords.label_codes(s, self.labels), n, -1) if colour_by != "prediction" else None
            if colour_by == "label":
                pred = None
            elif active is not None:
                pred = lay.codes(map_coords.prediction_codes(s, active.id, self.labels), n, -1)
            else:
                pred = np.full(len(lay.ids), -1, dtype=np.int64)
        if colour_by == "disagreement":
            legend = [("model agrees", "#2ca02c"), ("model disagrees", "#d62728"), ("unlabelled", NONE_COLOUR)]
            keys = np.where(lab < 0, 2, ((pred >= 0) & (pred != lab)).astype(np.int64))
        else:
            legend = [(name, PALETTE[k % len(PALETTE)]) for k, name in enumerate(self.labels)] + [("none", NONE_COLOUR)]
            shown = lab if colour_by == "label" else pred
            keys = np.where(shown < 0, n, shown)
        counts = np.bincount(keys, minlength=len(legend))
        chosen = stratified_sample(keys, lay.priority, self.max_points)
        rest = np.ones(len(keys), dtype=bool)
        rest[chosen] = False
        return MapView(lay.ids[chosen], lay.xy[chosen], keys[chosen].astype(np.uint8), legend,
                       [int(c) for c in counts], _density(lay.cell[rest], keys[rest]), lay.bounds, colour_by,
                       active.name if active else "")

    def select(self, region: object) -> list[int]:
        """The examples inside `region`: {"box": [x0, y0, x1, y1]} or {"lasso": [[x, y], ...]} in
        map coordinates, among every example of the map (not only those drawn): the candidates in
        the region's bounding box (a range query on the stored coordinates: no layout is loaded
        for it; or a test of the layout's computed here), then for a lasso the exact polygon test
        on those only. An empty result is a BadInput (nothing to label)."""
        box, poly = _region(region)
        info, stored = self._active()
        if stored:
            with Session(self.engine) as s:
                found = map_coords.in_box(s, info.id, *box)
            ids, xy = found.ids, found.xy
        else:
            lay = self.layout()
            inside = _in_box(lay.xy, *box)
            ids, xy = lay.ids[inside], lay.xy[inside]
        if poly is not None and len(ids):
            ids = ids[Polygon(poly).contains_points(np.asarray(xy, dtype=np.float64))]
        if not len(ids):
            raise BadInput("The selection is empty: no example lies in that region (nothing was changed).")
        return [int(i) for i in np.sort(ids)]

    # ------------------------------------------------------------- the selection as a queue
    def keep_selection(self, ids: list[int], username: str | None) -> int:
        """Make `ids` the person's "Map selection" queue (replacing their previous selection)."""
        who = auth.current_user(self.engine, username)
        with Session(self.engine) as s, s.begin():
            leases.set_setting(s, _key(who), [int(i) for i in ids], who)
        return len(ids)

    def selection(self, username: str | None) -> list[int]:
        who = auth.current_user(self.engine, username)
        with Session(self.engine) as s:
            return [int(i) for i in leases.get_setting(s, _key(who), []) or []]  # type: ignore[union-attr]


def _region(region: object) -> tuple[tuple[float, float, float, float], np.ndarray | None]:
    """((x0, x1, y0, y1) ordered: the region's bounding box, the lasso's polygon or None for a box);
    BadInput for anything else."""
    if not isinstance(region, dict) or not ({"box", "lasso"} & set(region)):
        raise BadInput(f"A map selection must be a box or a lasso, got {short(region)}.")
    try:
        if "box" in region:
            x0, y0, x1, y1 = (float(v) for v in region["box"])
            poly = None
        else:
            poly = np.asarray(region["lasso"], dtype=float)
            if poly.ndim != 2 or poly.shape[1] != 2 or not 3 <= len(poly) <= MAX_POLYGON:
                raise ValueError("a lasso needs 3 to 2,000 [x, y] points")
            (x0, y0), (x1, y1) = poly.min(axis=0), poly.max(axis=0)
        if not np.isfinite([x0, y0, x1, y1]).all():
            raise ValueError("coordinates must be finite numbers")
    except (TypeError, ValueError) as exc:
        raise BadInput(f"A map selection must be a box [x0, y0, x1, y1] or a lasso of [x, y] points: {exc}.") \
            from None
    (x0, x1), (y0, y1) = sorted((float(x0), float(x1))), sorted((float(y0), float(y1)))
    return (x0, x1, y0, y1), poly


def _in_box(xy: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    """In float64, as the database compares the stored coordinates (float32 would round the bounds)."""
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _density(cells: np.ndarray, keys: np.ndarray) -> Density:
    """Counts per (legend index, cell) of the points given, non-empty pairs only."""
    if not len(cells):
        empty = np.zeros(0, dtype=np.int64)
        return Density(GRID, empty.astype(np.uint16), empty.astype(np.uint8), empty.astype(np.uint32))
    per = np.bincount(keys * (GRID * GRID) + cells)
    found = np.flatnonzero(per)
    return Density(GRID, (found % (GRID * GRID)).astype(np.uint16), (found // (GRID * GRID)).astype(np.uint8),
                   per[found].astype(np.uint32))


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:  # the scores are shared, the file may be another machine's: the version decides
        return 0


def _key(user: str) -> str:
    return SELECTION_KEY + hashlib.sha1(user.encode("utf-8")).hexdigest()  # fits the 64-character key
