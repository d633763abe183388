"""The team's progress and agreement (the Annotate tab's admin view): per person their changes,
items, accepted model suggestions, speed (changes in the last hour) and last change; Cohen's kappa
(scikit-learn) per pair of people and pooled, on the items two or more of them labelled.
agreement_of is plain statistics over the label history's rows; TeamProgress reads those rows and
what is left for the team (admins only). No Gradio here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.distribution import WorkDistribution
from bertdemo.db import examples
from bertdemo.db.models import now
from bertdemo.services import Services

# history rows that are a person's own decision on an item (import rows are counted as changes)
DECISIONS = ("annotator", "undo", "suggestion")


@dataclass(frozen=True)
class Agreement:
    counts: pd.DataFrame  # annotator, changes, items, accepted suggestions, last hour, last change (UTC)
    pairs: pd.DataFrame  # annotator_a, annotator_b, items, kappa
    kappa: float | None  # pooled over every pair of people on an item; None below 2 shared items
    shared_items: int
    items_left: int | None = None  # items of the Unlabeled queue not yet labelled by enough people


def _kappa(a: list[str], b: list[str], labels: Sequence[str]) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(a) < 2:
        return None
    k = cohen_kappa_score(a, b, labels=list(labels))
    return None if k is None or math.isnan(k) else round(float(k), 4)


def agreement_of(events: Sequence[tuple[int, int, str, str | None, str, datetime]], labels: Sequence[str],
                 at: datetime) -> Agreement:
    """`events`: (event id, example id, user, label, source, when) of every change made by a person,
    oldest first; `at`: now (naive UTC, as stored). A person's label on an item is their newest
    decision on it (an undo of their own label withdraws it); items where two or more people gave
    a label are compared pairwise."""
    changes: dict[str, int] = {}
    accepted: dict[str, int] = {}
    recent: dict[str, int] = {}
    last: dict[str, datetime] = {}
    items: dict[str, set[int]] = {}
    final: dict[int, dict[str, str]] = {}
    for _eid, ex_id, who, lab, source, when in events:
        changes[who] = changes.get(who, 0) + 1
        accepted[who] = accepted.get(who, 0) + (source == "suggestion")
        recent[who] = recent.get(who, 0) + (when >= at - timedelta(hours=1))
        last[who] = when
        items.setdefault(who, set()).add(ex_id)
        if source in DECISIONS:
            if lab is None:
                final.get(ex_id, {}).pop(who, None)
            else:
                final.setdefault(ex_id, {})[who] = lab
    counts = pd.DataFrame([(u, changes[u], len(items[u]), accepted[u], recent[u], f"{last[u]:%Y-%m-%d %H:%M}")
                           for u in sorted(changes)],
                          columns=["annotator", "changes", "items", "accepted suggestions", "last hour",
                                   "last change (UTC)"])
    by_pair: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for per_user in final.values():
        names = sorted(per_user)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                la, lb = by_pair.setdefault((a, b), ([], []))
                la.append(per_user[a])
                lb.append(per_user[b])
    pair_rows, pooled_a, pooled_b = [], [], []
    for (a, b), (la, lb) in sorted(by_pair.items()):
        pair_rows.append((a, b, len(la), _kappa(la, lb, labels)))
        pooled_a += la
        pooled_b += lb
    pairs = pd.DataFrame(pair_rows, columns=["annotator_a", "annotator_b", "items", "kappa"])
    shared = sum(1 for per_user in final.values() if len(per_user) >= 2)
    return Agreement(counts, pairs, _kappa(pooled_a, pooled_b, labels), shared)


class TeamProgress:
    """The team's progress for admins. `unlabeled()`: the ids of the Unlabeled queue
    (Labelling.queue_ids("unlabeled")), of which `work` counts those not yet labelled by enough people."""

    def __init__(self, services: Services, work: WorkDistribution, unlabeled: Callable[[], list[int]]) -> None:
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self._work = work
        self._unlabeled = unlabeled

    def agreement(self, username: str | None) -> Agreement:
        """Counts per annotator and Cohen's kappa on items labelled by two or more people (admins only)."""
        auth.require_role(self.engine, username, "admin")
        with Session(self.engine) as s:
            events = examples.human_events(s)
        left = self._work.left_for_team(self._unlabeled())
        return replace(agreement_of(events, self.labels, now()), items_left=left)
