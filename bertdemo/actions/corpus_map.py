"""The corpus map: every stored example as a point, placed by the active version's sentence
embeddings projected to 2-D (PCA, model/vectors.py), coloured by its label, the model's
prediction, or whether the two disagree; a region selected on it (a box or a lasso polygon, in the
map's coordinates) becomes a set of examples to label in bulk (actions/bulk.py) or a queue of
one's own ("Map selection" in the Label tab). No Gradio here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as Polygon
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.similar import SimilarExamples
from bertdemo.db import examples, leases, versions
from bertdemo.errors import BadInput
from bertdemo.services import Services
from bertdemo.validate import choice, short

COLOURINGS = ("label", "prediction", "disagreement")
PALETTE = ("#d62728", "#7f7f7f", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")
NONE_COLOUR = "#c7c7c7"
SELECTION_KEY = "selection:"  # + a hash of the user name: the person's current map selection (app_settings)
MAX_POLYGON = 2_000


@dataclass(frozen=True)
class MapView:
    """What the map draws: `points` rows are [x, y, legend index, example id]."""

    points: list[list[float]]
    legend: list[tuple[str, str]]  # (name, colour) per legend index
    colour_by: str
    version: str

    def as_json(self) -> dict:
        return {"points": self.points, "legend": [list(x) for x in self.legend], "colour_by": self.colour_by,
                "version": self.version}


class CorpusMap:
    def __init__(self, services: Services, similar: SimilarExamples) -> None:
        self.services = services
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self.similar = similar

    def view(self, colour_by: str = "label") -> MapView:
        choice(colour_by, "Colour by", COLOURINGS)
        index = self.similar.index()
        xy = index.projection()
        ids = [int(i) for i in index.ids]
        with Session(self.engine) as s:
            state = examples.states(s, ids)
            active = versions.active_version(s)
            predicted = examples.predictions(s, active.id if active else None)
        if colour_by == "disagreement":
            names = ["model agrees", "model disagrees", "unlabelled"]
            colours = ["#2ca02c", "#d62728", NONE_COLOUR]

            def key(i: int) -> int:
                lab = state[i][1]
                return 2 if lab is None else int(predicted.get(i, lab) != lab)
        else:
            names = [*self.labels, "none"]
            colours = [PALETTE[n % len(PALETTE)] for n in range(len(self.labels))] + [NONE_COLOUR]
            source = {i: state[i][1] for i in state} if colour_by == "label" else predicted

            def key(i: int) -> int:
                lab = source.get(i)
                return self.labels.index(lab) if lab in self.labels else len(self.labels)
        points = [[round(float(x), 4), round(float(y), 4), key(i), i]
                  for i, (x, y) in zip(ids, xy) if i in state]  # examples deleted since are left out
        return MapView(points, list(zip(names, colours)), colour_by, active.name if active else "")

    def select(self, region: object) -> list[int]:
        """The examples inside `region`: {"box": [x0, y0, x1, y1]} or {"lasso": [[x, y], ...]} in
        map coordinates. An empty result is a BadInput (nothing to label)."""
        index = self.similar.index()
        xy = index.projection()
        if not isinstance(region, dict) or not ({"box", "lasso"} & set(region)):
            raise BadInput(f"A map selection must be a box or a lasso, got {short(region)}.")
        try:
            if "box" in region:
                x0, y0, x1, y1 = (float(v) for v in region["box"])
                (x0, x1), (y0, y1) = sorted((x0, x1)), sorted((y0, y1))
                inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
            else:
                poly = np.asarray(region["lasso"], dtype=float)
                if poly.ndim != 2 or poly.shape[1] != 2 or not 3 <= len(poly) <= MAX_POLYGON:
                    raise ValueError("a lasso needs 3 to 2,000 [x, y] points")
                inside = Polygon(poly).contains_points(xy)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"A map selection must be a box [x0, y0, x1, y1] or a lasso of [x, y] points: {exc}.") \
                from None
        if not inside.any():
            raise BadInput("The selection is empty: no example lies in that region (nothing was changed).")
        return [int(i) for i in index.ids[inside]]

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


def _key(user: str) -> str:
    return SELECTION_KEY + hashlib.sha1(user.encode("utf-8")).hexdigest()  # fits the 64-character key
