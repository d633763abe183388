"""The suggestion-bias audit (issue 25): does showing the model's suggestion change what people
label? A share of hand-outs (an admin setting, drawn per item by WorkDistribution) shows no
suggestion; this compares the labels given with it shown and hidden (label distribution, agreement
with adjudicated final labels and with the model, time to decide) and, per person, how often they
accept suggestions, how often an accepted one was overturned later, and runs of very fast accepts.
No Gradio here.

Only labels given on a hand-out while the model had a suggestion count (label_events.suggestion_shown
not None and suggested not None): before any model both conditions look the same, and a save from
the table or the API without next_item has no condition."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
from scipy.stats import chi2_contingency
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.annotation_time import seconds
from bertdemo.actions.distribution import AUDIT_KEY, MAX_AUDIT_SHARE, stored_share
from bertdemo.db import audit, leases
from bertdemo.db.audit import EventRow, LabelRow
from bertdemo.services import Services
from bertdemo.validate import number

FAST_ACCEPT_S = 1.0  # an accept faster than this cannot have read the text (a tweet takes a few seconds)
FAST_RUN = 5  # this many fast accepts in a row flag the person: one or two may be obvious items, five are a habit
FEW_HIDDEN = 30  # below this many hidden labels a difference is read with care (said in the message)


@dataclass(frozen=True)
class ConditionStats:
    """The labels given under one condition ("shown" or "hidden")."""

    condition: str
    labels: int
    distribution: dict[str, float]  # label -> share of this condition's labels
    agree_final: float | None  # share equal to the item's later adjudicated label, over n_final
    n_final: int  # labels whose item was adjudicated afterwards
    agree_model: float | None  # share equal to the model's suggestion at the save
    median_s: float | None  # median seconds from hand-out to save (within the lease)


@dataclass(frozen=True)
class PersonAudit:
    """One person's suggestions: accepted, later overturned, and runs of fast accepts."""

    user: str
    shown: int
    hidden: int
    accepted: int  # saved as "accept suggestion" (source suggestion), of `shown`
    acceptance_rate: float | None
    overturned: int  # accepted, then relabelled differently by someone else or an adjudication
    overturn_rate: float | None
    fast_accepts: int  # accepted under FAST_ACCEPT_S after the hand-out
    longest_fast_run: int  # most fast accepts in a row among their audited labels
    flagged: bool  # longest_fast_run >= FAST_RUN


@dataclass(frozen=True)
class AuditReport:
    """Shown vs hidden, and each person (annotators: their own row only)."""

    share: float
    shown: ConditionStats
    hidden: ConditionStats
    distribution_gap: float | None  # total variation distance between the two label distributions
    p_value: float | None  # chi-square test of the 2 x labels table (None where counts do not allow)
    people: tuple[PersonAudit, ...]
    message: str

    def as_api(self) -> dict:
        return {"share": self.share, "shown": asdict(self.shown), "hidden": asdict(self.hidden),
                "distribution_gap": self.distribution_gap, "p_value": self.p_value,
                "people": [asdict(p) for p in self.people], "message": self.message,
                "fast_accept_s": FAST_ACCEPT_S, "fast_run": FAST_RUN}

    def rows(self) -> list[dict]:
        """A row per condition (its distribution as share_<label> columns), one for the comparison,
        one per person shown."""
        out = []
        for c in (self.shown, self.hidden):
            row = {"part": "condition"} | {k: v for k, v in asdict(c).items() if k != "distribution"}
            out.append(row | {f"share_{lab}": x for lab, x in c.distribution.items()})
        out.append({"part": "comparison", "share": self.share, "distribution_gap": self.distribution_gap,
                    "p_value": self.p_value})
        return out + [{"part": "person"} | asdict(p) for p in self.people]


def _mean(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def final_labels(events: list[EventRow]) -> dict[int, list[EventRow]]:
    """Each item's adjudications, in order (example id -> events)."""
    out: dict[int, list[EventRow]] = {}
    for e in events:
        if e.source == "adjudication":
            out.setdefault(e.example_id, []).append(e)
    return out


def condition_stats(name: str, rows: list[LabelRow], labels: tuple[str, ...], adjudicated: dict[int, list[EventRow]],
                    lease: timedelta) -> ConditionStats:
    """ConditionStats of `rows`: the final label of a row is the last adjudication after it."""
    counts = {lab: sum(r.label == lab for r in rows) for lab in labels}
    finals = [(r, [e for e in adjudicated.get(r.example_id, []) if e.id > r.id]) for r in rows]
    agree_final = [r.label == later[-1].label for r, later in finals if later]
    took = [x for x in (seconds(r, lease) for r in rows) if x is not None]
    return ConditionStats(name, len(rows), {lab: (n / len(rows) if rows else 0.0) for lab, n in counts.items()},
                          _mean(agree_final), len(agree_final), _mean([r.label == r.suggested for r in rows]),
                          float(np.median(took)) if took else None)


def compare(shown: list[LabelRow], hidden: list[LabelRow],
            labels: tuple[str, ...]) -> tuple[float | None, float | None]:
    """(total variation distance, chi-square p) between the two conditions' label counts."""
    if not shown or not hidden:
        return None, None
    table = np.array([[sum(r.label == lab for r in rows) for lab in labels] for rows in (shown, hidden)], float)
    gap = 0.5 * float(np.abs(table[0] / table[0].sum() - table[1] / table[1].sum()).sum())
    used = table[:, table.sum(axis=0) > 0]  # a label nobody gave has no expected count
    if used.shape[1] < 2:
        return gap, None
    return gap, float(chi2_contingency(used).pvalue)


def person_audit(user: str, rows: list[LabelRow], events: list[EventRow], lease: timedelta) -> PersonAudit:
    """`user`'s PersonAudit from their audited labels `rows` (oldest first) and the items' histories."""
    shown = [r for r in rows if r.suggestion_shown]
    accepted = [r for r in shown if r.source == "suggestion"]
    by_item: dict[int, list[EventRow]] = {}
    for e in events:
        by_item.setdefault(e.example_id, []).append(e)
    overturned = sum(any(e.id > r.id and e.label is not None and e.label != r.label
                         and (e.user != r.user or e.source == "adjudication") for e in by_item.get(r.example_id, []))
                     for r in accepted)
    run = longest = fast = 0
    for r in rows:
        took = seconds(r, lease)
        if r.source == "suggestion" and took is not None and took < FAST_ACCEPT_S:
            fast, run = fast + 1, run + 1
            longest = max(longest, run)
        else:
            run = 0
    return PersonAudit(user, len(shown), len(rows) - len(shown), len(accepted),
                       len(accepted) / len(shown) if shown else None, overturned,
                       overturned / len(accepted) if accepted else None, fast, longest, longest >= FAST_RUN)


class SuggestionAudit:
    """The audit's setting (the share of hand-outs without a suggestion) and its report."""

    def __init__(self, services: Services) -> None:
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self.lease = timedelta(minutes=services.settings.lease_minutes)

    def share(self) -> float:
        """The share of hand-outs whose suggestion is hidden (0: the audit is off)."""
        with Session(self.engine) as s:
            return stored_share(s)

    def set_share(self, value: object, user: str | None) -> float:
        """Set the share (admins only): a number from 0 (off) to MAX_AUDIT_SHARE, BadInput otherwise."""
        who = auth.require_role(self.engine, user, "admin")
        share = number(value, "The share of items without a suggestion", 0, MAX_AUDIT_SHARE, note="off")
        with Session(self.engine) as s, s.begin():
            leases.set_setting(s, AUDIT_KEY, share, who)
        return share

    def report(self, viewer: str, admin: bool) -> AuditReport:
        """Shown vs hidden for the team; everyone's PersonAudit for an admin, the viewer's own otherwise."""
        with Session(self.engine) as s:
            share = stored_share(s)
            rows = [r for r in audit.person_labels(s) if r.suggestion_shown is not None and r.suggested is not None]
            events = audit.events_on(s, [r.example_id for r in rows])
        shown = [r for r in rows if r.suggestion_shown]
        hidden = [r for r in rows if not r.suggestion_shown]
        adjudicated = final_labels(events)
        gap, p = compare(shown, hidden, self.labels)
        mine: dict[str, list[LabelRow]] = {}
        for r in rows:
            mine.setdefault(r.user, []).append(r)
        people = tuple(person_audit(u, rs, events, self.lease) for u, rs in sorted(mine.items())
                       if admin or u == viewer)
        stats = (condition_stats("shown", shown, self.labels, adjudicated, self.lease),
                 condition_stats("hidden", hidden, self.labels, adjudicated, self.lease))
        return AuditReport(share, *stats, gap, p, people, _message(share, *stats, gap, p, people))


def _message(share: float, shown: ConditionStats, hidden: ConditionStats, gap: float | None, p: float | None,
             people: tuple[PersonAudit, ...]) -> str:
    """The verdict in plain sentences."""
    if not hidden.labels:
        text = ("The audit is off (share 0): no labels were given with the suggestion hidden, so there is nothing "
                "to compare." if share == 0 else
                f"No labels with the suggestion hidden yet ({shown.labels:,} with it shown); the audit hides it for "
                f"{share:.0%} of the items handed out.")
    elif not shown.labels:
        text = f"No labels with the suggestion shown yet ({hidden.labels:,} with it hidden): nothing to compare."
    else:
        test = f", chi-square p = {p:.2g}" if p is not None else " (too few distinct labels for a chi-square test)"
        text = (f"Shown vs hidden ({shown.labels:,} vs {hidden.labels:,} labels): the label distributions differ "
                f"by {gap:.1%} (total variation){test}; agreement with the model {shown.agree_model:.0%} shown vs "
                f"{hidden.agree_model:.0%} hidden.")
        if hidden.labels < FEW_HIDDEN:
            text += f" Only {hidden.labels} hidden labels so far: read the difference with care."
    flagged = [who.user for who in people if who.flagged]
    if flagged:
        text += (f" Runs of {FAST_RUN}+ accepts under {FAST_ACCEPT_S:g} s in a row: {', '.join(flagged)}.")
    return text
