"""Labelling many examples at once (similar examples, a region of the corpus map): a preview of
what would change, the change as one batch (every row its own history row, source `bulk`, one
batch id), and one undo for the whole batch. No Gradio here. Every apply is counted by the
retrain-every-N hook it is given (AutoRetrain.after_save), whoever calls it.

A bulk label never overwrites a change it did not see: the preview's versions go with the apply,
and rows changed since (by a person, or another batch) are left as they are and counted."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.db import examples
from bertdemo.errors import BadInput, NotFound
from bertdemo.services import Services
from bertdemo.validate import choice, id_list, short

MAX_BULK = 100_000  # examples in one bulk label
PREVIEW_ROWS = 20
SAMPLE_COLUMNS = ["id", "label now", "after", "text"]


@dataclass(frozen=True)
class BulkPreview:
    ids: list[int]
    versions: dict[int, int]  # example id -> version seen: pass to apply
    label: str
    changes: dict[str, int]  # "old → new" -> count, for the rows that would change
    unchanged: int  # already labelled `label`
    sample: pd.DataFrame  # id, label now, after, text (the short columns first, so they stay on screen)

    def summary(self) -> str:
        n = sum(self.changes.values())
        s = f"{n:,} of {len(self.ids):,} selected examples would change to **{self.label}**"
        if self.changes:
            s += " (" + ", ".join(f"{k}: {v:,}" for k, v in sorted(self.changes.items())) + ")"
        return s + f"; {self.unchanged:,} already have it."


@dataclass(frozen=True)
class BulkResult:
    batch: str | None  # None when nothing changed
    changed: int
    unchanged: int
    conflicts: int  # changed by someone else since the preview: left as they are
    label: str | None

    def summary(self) -> str:
        s = f"Labelled {self.changed:,} examples {self.label}" if self.label else f"Undid {self.changed:,} changes"
        s += f"; {self.unchanged:,} already had it" if self.label else ""
        if self.conflicts:
            s += f"; {self.conflicts:,} changed by someone else meanwhile were left as they are"
        return s + (f" (batch {self.batch})." if self.batch else ".")

    def as_api(self) -> dict:
        return {"batch": self.batch, "changed": self.changed, "unchanged": self.unchanged,
                "conflicts": self.conflicts, "label": self.label}


class BulkLabels:
    """Bulk labels: preview, apply and undo, the one family the UI and the API call.
    `after_labels()`: called after every apply (retrain every N labels)."""

    def __init__(self, services: Services, after_labels: Callable[[], None]) -> None:
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self._after_labels = after_labels

    def _ids(self, ids: object) -> list[int]:
        found = id_list(ids, "The selection", limit=MAX_BULK)
        if not found:
            raise BadInput("The selection is empty: select some examples first (nothing was changed).")
        return list(dict.fromkeys(found))

    def preview(self, ids: object, label: str) -> BulkPreview:
        """What labelling `ids` with `label` would change; writes nothing."""
        choice(label, "The label", self.labels)
        if isinstance(ids, (list, tuple)) and len(ids) > MAX_BULK:
            raise BadInput(f"A bulk label covers at most {MAX_BULK:,} examples; the selection has "
                           f"{len(ids):,}. Select a smaller region.")
        wanted = self._ids(ids)
        with Session(self.engine) as s:
            state = examples.states(s, wanted)
            missing = [i for i in wanted if i not in state]
            if missing:
                raise NotFound(f"No example with id {missing[0]} ({len(missing):,} of the ids are unknown); "
                               "nothing was changed.")
            texts = examples.texts_of(s, wanted[:PREVIEW_ROWS])
        changes = Counter(f"{state[i][1] or 'none'} → {label}" for i in wanted if state[i][1] != label)
        sample = pd.DataFrame([(i, texts[i][1] or "", label, texts[i][0]) for i in wanted[:PREVIEW_ROWS]],
                              columns=SAMPLE_COLUMNS)
        return BulkPreview(wanted, {i: state[i][0] for i in wanted}, label, dict(changes),
                           sum(1 for i in wanted if state[i][1] == label), sample)

    def apply(self, preview: BulkPreview, username: str | None, admin: bool = True) -> BulkResult:
        """Label the previewed rows in one transaction, as one batch (admins only, unless `admin` is
        False: the similar-examples button, a handful of rows anyone may label)."""
        who = auth.require_role(self.engine, username, "admin") if admin else auth.current_user(self.engine, username)
        batch = uuid.uuid4().hex
        with Session(self.engine) as s, s.begin():
            examples.lock(s, preview.ids)
            state = examples.states(s, preview.ids)
            fresh = [i for i in preview.ids if i in state and state[i][0] == preview.versions.get(i)]
            todo = [(i, state[i][1], state[i][0], preview.label) for i in fresh if state[i][1] != preview.label]
            examples.set_labels(s, todo, who, "bulk", self.labels, batch)
        self._after_labels()  # bulk labels count as people's labels (retrain every N)
        return BulkResult(batch if todo else None, len(todo), len(fresh) - len(todo), len(preview.ids) - len(fresh),
                          preview.label)

    def undo(self, batch: object, username: str | None, admin: bool = True) -> BulkResult:
        """Put back the label each example of `batch` had before it, as one new batch; rows changed
        since the batch (their newest history row is not the batch's) are left as they are."""
        who = auth.require_role(self.engine, username, "admin") if admin else auth.current_user(self.engine, username)
        if not isinstance(batch, str) or not batch.strip():
            raise BadInput(f"The batch must be the id a bulk label returned, got {short(batch)}.")
        undo_batch = uuid.uuid4().hex
        with Session(self.engine) as s, s.begin():
            events = examples.batch_events(s, batch.strip())
            if not events:
                raise NotFound(f"No bulk label with batch id {short(batch)}.")
            others = any(e.user != who for e in events)
            if others and not admin and auth.role_of(self.engine, username) != "admin":
                raise BadInput("Only the person who made a bulk label (or an admin) may undo it.")
            ids = [e.example_id for e in events]
            examples.lock(s, ids)
            newest = examples.latest_event_ids(s, ids)
            todo = [(e.example_id, e.label, e.version, e.previous_label) for e in events if newest.get(e.example_id) == e.id]
            examples.set_labels(s, todo, who, "undo", self.labels, undo_batch)
        return BulkResult(undo_batch if todo else None, len(todo), 0, len(events) - len(todo), None)
