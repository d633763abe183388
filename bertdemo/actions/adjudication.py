"""Adjudication: the items whose annotators disagree (db/decisions.py), every person's label side by
side, and an admin's final label, recorded as its own history row (source `adjudication`).
Training uses that final label and leaves out items still awaiting one (training/runner.py).
No Gradio here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import auth, validate
from bertdemo.actions.labelling import Item, Saved
from bertdemo.db import examples
from bertdemo.db.decisions import awaiting_adjudication, decisions_of
from bertdemo.errors import BadInput
from bertdemo.services import Services
from bertdemo.validate import choice, id_list, row_version


@dataclass(frozen=True)
class Case:
    """One item awaiting adjudication, as the admin sees it."""

    item: Item
    labels: pd.DataFrame  # annotator, label, when (UTC), how (label / accepted suggestion)
    waiting: int  # items awaiting adjudication, this one included

    def as_api(self) -> dict:
        return {"item": self.item.as_api(), "labels": self.labels.to_dict(orient="records"), "waiting": self.waiting}


class Adjudication:
    """The adjudication queue. `item(example_id, queue, remaining, team_remaining)`: an example as the
    Label view shows it (Labelling.item); `after_labels()`: called after every final label (retrain
    every N labels)."""

    def __init__(self, services: Services, item: Callable[..., Item], after_labels: Callable[[], None]) -> None:
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self._item = item
        self._after_labels = after_labels

    def waiting(self, username: str | None) -> list[int]:
        """Ids of the items awaiting adjudication, the longest waiting first (admins only)."""
        auth.require_role(self.engine, username, "admin")
        with Session(self.engine) as s:
            return awaiting_adjudication(s)

    def next_case(self, username: str | None, exclude: object = None) -> Case | None:
        """The longest-waiting item not in `exclude`, or None when none is left (admins only)."""
        skip = set(id_list(exclude))
        ids = [i for i in self.waiting(username) if i not in skip]
        return self.case(ids[0], username, len(ids)) if ids else None

    def case(self, example_id: object, username: str | None, waiting: int = 0) -> Case:
        auth.require_role(self.engine, username, "admin")
        ex_id = validate.example_id(example_id)
        with Session(self.engine) as s:
            examples.get(s, ex_id)
            d = decisions_of(examples.human_events(s, [ex_id])).get(ex_id)
        rows = [(who, lab, f"{when:%Y-%m-%d %H:%M}", "accepted suggestion" if src == "suggestion" else "label")
                for who, (lab, when, src) in sorted((d.people if d else {}).items())]
        table = pd.DataFrame(rows, columns=["annotator", "label", "when (UTC)", "how"])
        return Case(self._item(ex_id, "adjudication", waiting, waiting), table, waiting)

    def decide(self, example_id: object, label: object, version: object, username: str | None) -> Saved:
        """Set the final label of an item (admins only): its own history row, source 'adjudication';
        Conflict when the row changed since `version`."""
        who = auth.require_role(self.engine, username, "admin")
        choice(label, "The final label", self.labels)
        ex_id, seen = validate.example_id(example_id), row_version(version)
        with Session(self.engine) as s, s.begin():
            examples.get(s, ex_id)
            d = decisions_of(examples.human_events(s, [ex_id])).get(ex_id)
            if d is None or not d.people:
                raise BadInput(f"Example {ex_id} has no annotators' labels to adjudicate; change its label in "
                               "the Label or Table view instead.")
            saved = Saved.of(examples.set_label(s, ex_id, str(label), who, "adjudication", self.labels,
                                                expected_version=seen))
        self._after_labels()
        return saved
