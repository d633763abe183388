"""Labelling one example at a time (the Annotate tab's Label and Table views): the queues, the next
item for a person, save, skip, undo, an item with its history, and the filtered table. No Gradio.

Queues read the active version's stored scores (table `scores`, written by JobRunner.rescore), or,
once people gave N labels since, the quick model's probabilities (actions/quick_model.py); nothing
here runs the network over the dataset. Each item says which model ranked its queue (`ranked_by`).
Every save is one transaction through db.examples.set_label with the version the person saw
(optimistic concurrency), recorded under the signed-in user. Undo writes the previous label back as
a new history row (source "undo"). The suggestion-bias audit: an item handed out with the audit's
draw (WorkDistribution) comes without the suggestion, and every save records the model's suggestion,
whether it was on screen and when the item was handed out (actions/suggestion_audit.py reads them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import auth, validate
from bertdemo.actions.distribution import REVIEW_QUEUES, WorkDistribution
from bertdemo.actions.label_item import Item, Saved
from bertdemo.actions.notes import Notes
from bertdemo.actions.quick_model import QuickModel
from bertdemo.actions.ranked import (
    DEFAULT_ORDER,
    MODEL_QUEUES,
    RANKED_QUEUES,
    Ranked,
    RankedQueues,
    StoredVectors,
    not_ranked_yet,
)
from bertdemo.actions.suspicious import SuspiciousLabels
from bertdemo.db import audit, examples, versions
from bertdemo.db.models import LabelEvent
from bertdemo.errors import BadInput, Conflict, Forbidden, NotReady
from bertdemo.model import vectors
from bertdemo.services import Services
from bertdemo.training.registry import VersionInfo
from bertdemo.validate import choice, id_list, row_version, search_text

QUEUES = {  # key -> what the person sees in the queue selector
    "unlabeled": "Unlabeled",
    "informative": "Unlabeled, most informative first (breaking ties)",
    "disagree": "Model disagrees with the label",
    "uncertain": "Most uncertain (entropy)",
    "margin": "Breaking ties (smallest margin between the top two)",
    "diverse": "Diverse uncertain (BADGE: uncertain and spread out)",
    "suspicious": "Suspicious labels (confident learning)",
    "recent": "Recently changed",
    "search": "Text search",
    "selection": "Map selection (yours)",
}
HISTORY_COLUMNS = ["when (UTC)", "who", "from", "to", "source", "version", "comment"]
TABLE_COLUMNS = ["id", "text", "label", "annotator", "changed (UTC)", "version", "model", "confidence"]


class Labelling:
    """The labelling adapter: queues, the next item, save, skip, undo, an item, its history, the table.

    `selection(username)`: the person's map-selection queue (CorpusMap.selection); `after_labels()`:
    called after every save (retrain every N labels, refit the quick model every N labels);
    `quick`: the quick model that ranks the model queues between versions; `suspicious`: the
    suspicious-labels ranking, warmed in the background."""

    def __init__(self, services: Services, work: WorkDistribution, notes: Notes,
                 selection: Callable[[str | None], list[int]], after_labels: Callable[[], None],
                 quick: QuickModel | None = None, suspicious: SuspiciousLabels | None = None) -> None:
        self.services = services
        self.settings = services.settings
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self.quick = quick or QuickModel(services)
        self.suspicious = suspicious or SuspiciousLabels(services)
        # the score-ranked queues, re-read when the version's scores (or the quick model's fit) change
        self._ranked = RankedQueues(self.labels, StoredVectors(
            lambda vid: services.registry.folder(services.registry.get(vid)) / vectors.VECTORS_FILE))
        self._work = work
        self._notes = notes
        self._selection = selection
        self._after_labels = after_labels

    # ---------------------------------------------------------------- who
    def user(self, username: str | None) -> str:
        """The name recorded on a change (Forbidden when accounts exist and nobody signed in)."""
        return auth.current_user(self.engine, username)

    def _version_id(self, s: Session) -> int | None:
        v = versions.active_version(s)
        return v.id if v else None

    def _unranked(self, s: Session, vid: int | None) -> bool:
        """No model ranks a queue yet: no version serves, or it has neither stored scores nor a quick fit."""
        return vid is None or (self.quick.current(vid) is None and not versions.has_scores(s, vid))

    # ---------------------------------------------------------------- queues
    def default_queue(self) -> str:
        """While anything is unlabeled: the unlabelled examples, most informative first once a model
        serves and ranks ('informative', the simulation's winner), else 'unlabeled'; when all are
        labelled, the model's disagreements (the bundled data is fully labelled, so an empty first
        queue would greet every new visitor)."""
        with Session(self.engine) as s:
            if self._unranked(s, self._version_id(s)):  # no model queue can rank yet: not a first screen of errors
                return "unlabeled"
            if examples.has_unlabeled(s):
                return "informative"
        return "disagree"

    def datasets(self) -> list[str]:
        """The datasets the stored examples came from ("airline", "general", "import")."""
        with Session(self.engine) as s:
            return examples.dataset_names(s)

    def _dataset(self, value: object) -> str:
        """A dataset filter: "" or "all" for every example, else a dataset name."""
        if value in (None, "", "all"):
            return ""
        return choice(value, "The dataset", ["all", *self.datasets()])

    def queue_ids(self, queue: str, search: str = "", dataset: str = "") -> list[int]:
        return self._queue(queue, search, dataset).ids.tolist()

    def _queue(self, queue: str, search: str = "", dataset: str = "") -> Ranked:
        """The ids of `queue`, best first; the score-ranked ones from the cache (actions.ranked)."""
        choice(queue, "The queue", list(QUEUES))
        dataset = self._dataset(dataset)
        # with 2+ annotations per item, labelled but unfinished items come first in Unlabeled (to finish
        # them); read before the session below opens: a request holding one pooled connection while it
        # waits for a second one starves the pool when 20 people ask at once (SQLAlchemy's TimeoutError)
        unfinished = self._work.unfinished() if queue in ("unlabeled", "informative") else []
        if queue == "suspicious":
            return self._suspicious(dataset)
        with Session(self.engine) as s:
            vid = self._version_id(s)
            if queue in MODEL_QUEUES and vid is None:
                raise NotReady("No model version is active yet, so this queue has no scores; "
                                 "use 'Unlabeled' or 'Text search' until the first model is ready.")
            if queue in MODEL_QUEUES and self._unranked(s, vid):  # not "done": no score to rank by yet
                info = self.services.registry.get(vid)
                raise NotReady(not_ranked_yet(info.name, info.quick))
            if queue == "selection":  # per person: next_item reads it (CorpusMap.selection)
                return Ranked.of([])
            if queue in RANKED_QUEUES or queue == "informative":
                quick = self.quick.current(vid)
                ranked = self._ranked.get(s, "unlabeled" if queue == "informative" else queue, vid, dataset, quick)
                if queue not in ("unlabeled", "informative"):
                    return ranked
                if queue == "informative" and vid is not None:  # Unlabeled, by the default order's model
                    ranked = self._ranked.unlabelled_by(self._ranked.get(s, DEFAULT_ORDER, vid, dataset, quick), ranked)
                if dataset and unfinished:
                    of = examples.datasets_of(s, unfinished)
                    unfinished = [i for i in unfinished if of.get(i) == dataset]
                return Ranked.of(np.r_[np.asarray(unfinished, np.int64), ranked.ids]) if unfinished else ranked
            ids = examples.queue_ids(s, queue, vid, search_text(search), dataset=dataset)
        return Ranked.of(ids)

    def _suspicious(self, dataset: str) -> Ranked:
        """The suspicious-labels queue (actions/suspicious.py), read with no session of ours open: it
        may wait for the ranking under way, and opens its own."""
        with Session(self.engine) as s:
            vid = self._version_id(s)
        if vid is None:
            raise NotReady("No model version is active yet, so this queue has no scores; "
                           "use 'Unlabeled' or 'Text search' until the first model is ready.")
        ids = self.suspicious.ids(vid)
        if dataset:
            with Session(self.engine) as s:
                of = examples.datasets_of(s, ids)
            ids = [i for i in ids if of.get(i) == dataset]
        return Ranked.of(ids)

    def warm_vectors(self, info: VersionInfo) -> None:
        """Load `info`'s sentence embeddings for the Diverse queue (VersionWatch, when a version serves
        with its scores): at 300k the load (~0.3 s) was paid by the first Diverse request."""
        self._ranked.vectors_of(info.id)

    def ranked_by(self, queue: str) -> str:
        """Which model ranked `queue` and when ("" for the queues no model ranks)."""
        if queue not in (*MODEL_QUEUES, "suspicious", "informative"):
            return ""
        info = self.services.registry.active_version()
        if info is None:
            return ""
        return self.suspicious.ranked_by(info) if queue == "suspicious" else self.quick.ranked_by(info)

    def next_item(self, queue: str, search: str = "", seen: list[int] | None = None,
                  username: str | None = None, dataset: str = "") -> Item | None:
        """The first item of `queue` (of `dataset`, when given) not in `seen` (the ids this session
        already showed) that nobody else is working on and this person has not labelled (a lease:
        WorkDistribution), or None."""
        who = self.user(username)
        ranked = (Ranked.of(self._selection(who)) if queue == "selection"
                  else self._queue(queue, search_text(search), dataset))
        handout = self._work.hand_out(who, ranked.ids, review=queue in REVIEW_QUEUES, exclude=set(id_list(seen)),
                                      members=ranked.members)
        if handout.example_id is None:
            return None
        item = replace(self.item(handout.example_id, queue, handout.left_for_you, handout.left_for_team),
                       ranked_by=self.ranked_by(queue))
        if handout.hide_suggestion:  # the audit's draw for this hand-out
            item = item.without_suggestion()
        # blind labelling: an annotator handed an item for an independent annotation sees no one
        # else's label (admins and the review queues still do); one annotation per item is never blind
        if handout.overlap > 1 and queue not in REVIEW_QUEUES and auth.role_of(self.engine, username) != "admin" \
                and self._work.is_independent(item.id, who):
            return item.blinded()
        return item

    def progress(self, queue: str, search: str = "", dataset: str = "",
                 seen: list[int] | None = None) -> tuple[int, int]:
        """(items of `queue` not in `seen`, items of it the team has still to finish): the progress
        line after an undo, which hands no new item out."""
        ranked = self._queue(queue, search_text(search), dataset)
        seen_set = set(id_list(seen))
        return len(ranked.members) - len(seen_set & ranked.members), self._work.left_for_team(ranked.members)

    def skip(self, example_id: int, username: str | None) -> bool:
        """Give an item back without labelling it: someone else may be handed it at once."""
        return self._work.skip(validate.example_id(example_id), self.user(username))

    def item(self, example_id: int, queue: str = "", remaining: int = 0, team_remaining: int = 0,
             viewer: str | None = None) -> Item:
        """One example with the suggestion shown: the quick model's while its fit is current, else
        the active version's stored score. `viewer`: the person it is shown to (a name from `user`):
        when the audit's draw hid the suggestion of the item they hold, it stays hidden."""
        with Session(self.engine) as s:
            ex = examples.get(s, validate.example_id(example_id))
            held = self._work.condition(s, ex.id, viewer) if viewer is not None else None
            vid = self._version_id(s)
            quick = self.quick.suggestion(ex.id, vid)
            sc = examples.score_of(s, ex.id, vid) if quick is None else None
            p = quick if quick is not None else (sc.probs if sc else None)
            probs = {lab: round(float(x), 4) for lab, x in zip(self.labels, p)} if p is not None else {}
            top = max(probs, key=probs.__getitem__) if probs else None
            by = "quick model" if quick is not None else ("stored score" if sc else "")
            item = Item(id=ex.id, text=ex.raw_text, cleaned=ex.text, label=ex.label, version=ex.version,
                        predicted=top if quick is not None else (sc.predicted if sc else None),
                        confidence=float(np.max(quick)) if quick is not None else (sc.confidence if sc else None),
                        probs=probs, updated_by=ex.updated_by, updated_at=ex.updated_at, queue=queue,
                        remaining=remaining, team_remaining=team_remaining, suggested_by=by)
        return item.without_suggestion() if held is not None and held.hidden else item

    # ---------------------------------------------------------------- saving
    def save_label(self, example_id: int, label: str, version: int | None, username: str | None,
                   accepted_suggestion: bool = False) -> Saved:
        """Set one label, in one transaction; Conflict when the row changed since `version`. With 2 or
        more annotations per item, a person labelling an item they were handed gives their own,
        independent annotation: another person's label saved meanwhile is no conflict.
        `accepted_suggestion`: the person accepted the model's suggestion (it must be the active
        version's prediction), recorded as source 'suggestion' so agreement with the model and
        suggestion bias can be measured."""
        choice(label, "The label", self.labels)
        accepted_suggestion = validate.flag(accepted_suggestion, "accepted_suggestion")
        example_id, version = validate.example_id(example_id), row_version(version)
        who = self.user(username)
        for attempt in range(3):
            try:
                with Session(self.engine) as s, s.begin():
                    examples.get(s, example_id)
                    held = self._work.condition(s, example_id, who)  # read before `done` closes the hand-out
                    if accepted_suggestion:
                        if held is not None and held.hidden:
                            raise BadInput(f"The suggestion is hidden for example {example_id} (an audit of "
                                           "suggestion bias): there is none to accept; choose a label.")
                        self._check_suggestion(s, example_id, label)
                    independent = self._work.independent(s, example_id, who)
                    source = "suggestion" if accepted_suggestion else "annotator"
                    ev = examples.set_label(s, example_id, label, who, source, self.labels,
                                            expected_version=None if independent else version)
                    audit.record_condition(s, ev, self._suggested(s, example_id),
                                           None if held is None else not held.hidden,
                                           None if held is None else held.handed_out_at)
                    self._work.done(s, example_id, who)  # the item leaves the queues once enough people labelled it
                    saved = Saved.of(ev)
                break
            except Conflict:
                # an independent annotation that lost the race for the row to another one saved at
                # the same moment: nothing of it was written; save it again on the new version
                if not independent or attempt == 2:
                    raise
        self._after_labels()  # retrain every N labels: a failure to start is logged, the save stands
        return saved

    def _suggested(self, s: Session, example_id: int) -> str | None:
        """The model's suggestion for the example now, as `item` shows it: the quick model's top class
        while its fit is current, else the active version's stored prediction (None: neither)."""
        vid = self._version_id(s)
        quick = self.quick.suggestion(example_id, vid)
        if quick is not None:
            return self.labels[int(np.argmax(quick))]
        score = examples.score_of(s, example_id, vid)
        return score.predicted if score else None

    def _check_suggestion(self, s: Session, example_id: int, label: str) -> None:
        """BadInput unless `label` is what the model suggests: the quick model's top class (while its fit
        is current) or the active version's stored prediction (a refit between showing and saving)."""
        vid = self._version_id(s)
        quick = self.quick.suggestion(example_id, vid)
        if quick is not None and self.labels[int(np.argmax(quick))] == label:
            return
        score = examples.score_of(s, example_id, vid)
        if score is None and quick is None:
            raise BadInput(f"The model has no suggestion for example {example_id} yet (no stored score).")
        if score is None or score.predicted != label:
            # the suggestion on screen: the quick model's when its fit is current, else the stored one
            shown = self.labels[int(np.argmax(quick))] if quick is not None else score.predicted  # type: ignore
            raise BadInput(f"The model suggests {shown!r} for example {example_id}, not {label!r}.")

    def undo(self, example_id: int, username: str | None, version: int | None = None) -> Saved:
        """Restore the label before the row's newest change, as a new history row (source 'undo').
        Who may: an annotator only when that newest change is their own (and not an adjudication);
        an admin any change. A bulk label's rows are undone as their batch, never one by one."""
        example_id, version = validate.example_id(example_id), row_version(version)
        who = self.user(username)
        admin = auth.role_of(self.engine, username) == "admin"  # everyone is, without accounts
        with Session(self.engine) as s, s.begin():
            examples.get(s, example_id)
            last = examples.latest_event(s, example_id)
            if last is None or last.source in ("dataset", "import"):
                raise BadInput(f"Nothing to undo on example {example_id}: it has no change since it was imported.")
            if version is not None and last.version != version:
                raise Conflict(
                    f"Example {example_id} was changed by {last.user} (now {last.label!r}) after your "
                    "change; reload it and decide again.")
            _may_undo(last, who, admin)
            ev = examples.set_label(s, example_id, last.previous_label, who, "undo", self.labels,
                                    expected_version=last.version)
            self._work.undone(s, example_id, last.user, who)
            return Saved.of(ev)

    # ---------------------------------------------------------------- history & table
    def history(self, example_id: int) -> pd.DataFrame:
        example_id = validate.example_id(example_id)
        with Session(self.engine) as s:
            examples.get(s, example_id)
            rows = [{"when (UTC)": e.created_at.strftime("%Y-%m-%d %H:%M:%S"), "who": e.user,
                     "from": e.previous_label or "", "to": e.label or "", "source": e.source, "version": e.version,
                     "comment": ""} for e in examples.history(s, example_id)]
        rows += [{"when (UTC)": when, "who": who, "from": "", "to": "", "source": "comment", "version": None,
                  "comment": text} for when, who, text in self._notes.comments(example_id).itertuples(index=False)]
        rows.sort(key=lambda r: r["when (UTC)"])  # stable: a comment after the change made the same second
        return pd.DataFrame(rows, columns=HISTORY_COLUMNS)

    def table(self, label: str = "any", annotator: str = "", search: str = "", limit: int = 500,
              dataset: str = "") -> pd.DataFrame:
        """Examples with label, annotator, time and model prediction, filtered; newest change first."""
        if label not in ("any", "unlabeled", "", None):
            choice(label, "The label filter", self.labels)
        dataset = self._dataset(dataset)
        with Session(self.engine) as s:
            rows = examples.table_rows(s, self._version_id(s), label=None if label in ("any", "") else label,
                                       unlabeled=label == "unlabeled", annotator=annotator.strip(),
                                       search=search.strip(), limit=limit, dataset=dataset)
        return pd.DataFrame([(i, t, lab or "", who or "", at.strftime("%Y-%m-%d %H:%M") if at else "", v,
                              p or "", round(c, 3) if c is not None else None)
                             for i, t, lab, who, at, v, p, c in rows], columns=TABLE_COLUMNS)


def _may_undo(last: LabelEvent, who: str, admin: bool) -> None:
    """Forbidden unless `who` may undo `last`, an example's newest change (see Labelling.undo)."""
    if last.source == "bulk":
        raise Forbidden(f"Example {last.example_id} was last changed by a bulk label; undo the whole batch where "
                        "it was made (the map or the similar examples), not one row of it.")
    if admin:
        return
    if last.source == "adjudication":
        raise Forbidden(f"Example {last.example_id}'s label is an adjudication; only admins may undo it.")
    if last.user != who:
        raise Forbidden(f"Example {last.example_id} was last changed by {last.user}; you may undo only your own "
                        "changes (an admin may undo any).")
