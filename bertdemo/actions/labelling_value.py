"""Is more labelling worth it (issue 25): the four figures of the Team tab's panel for one person,
in one report, and their export as CSV or JSON. The stopping signals (actions/stopping.py), the
learning curve (actions/learning_curve.py), the annotation time (actions/annotation_time.py) and
the suggestion-bias audit (actions/suggestion_audit.py) each compute their own; this module asks
who is looking (any signed-in person, or a guest: annotators get their own rows, admins everyone's)
and puts them side by side. No Gradio here."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from bertdemo import auth
from bertdemo.actions.annotation_time import AnnotationTime, TimeReport
from bertdemo.actions.distribution import WorkDistribution
from bertdemo.actions.learning_curve import LearningCurveReport, LearningCurves
from bertdemo.actions.stopping import StoppingReport, StoppingSignals
from bertdemo.actions.suggestion_audit import AuditReport, SuggestionAudit
from bertdemo.db.models import now
from bertdemo.errors import BadInput, Forbidden
from bertdemo.services import Services

FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Viewer:
    """Who asks, and whether they see everyone's rows."""
    name: str
    admin: bool


@dataclass(frozen=True)
class ValueReport:
    """The panel's four reports, as one person may see them, and when they were made."""
    viewer: Viewer
    at: datetime
    stopping: StoppingReport
    curve: LearningCurveReport
    time: TimeReport
    audit: AuditReport

    def as_api(self) -> dict:
        return {"viewer": self.viewer.name, "admin": self.viewer.admin, "at": self.at.isoformat(),
                "stopping": self.stopping.as_api(), "learning_curve": self.curve.as_api(),
                "annotation_time": self.time.as_api(), "suggestion_audit": self.audit.as_api()}

    def frame(self) -> pd.DataFrame:
        """Every report's rows in one long table, a `section` column first (the CSV export)."""
        parts = [pd.DataFrame(rows).assign(section=name) for name, rows in
                 (("stopping", self.stopping.rows()), ("learning_curve", self.curve.rows()),
                  ("annotation_time", self.time.rows()), ("suggestion_audit", self.audit.rows())) if rows]
        if not parts:
            return pd.DataFrame(columns=["section"])
        out = pd.concat(parts, ignore_index=True, sort=False)
        return out[["section"] + [c for c in out.columns if c != "section"]]


class LabellingValue:
    """The panel's adapter: each report for the person asking, and the export."""

    def __init__(self, services: Services, work: WorkDistribution) -> None:
        self.engine = services.engine
        self.stopping = StoppingSignals(services)
        self.curves = LearningCurves(services)
        self.time = AnnotationTime(services, work)
        self.audit = SuggestionAudit(services)

    def viewer(self, username: str | None) -> Viewer:
        """The person asking: Forbidden for nobody (an API call with no session on a shared link)."""
        role = auth.role_of(self.engine, username)
        if role is None:
            raise Forbidden("Sign in first.")
        return Viewer(auth.current_user(self.engine, username), role == "admin")

    def stopping_report(self, username: str | None) -> StoppingReport:
        self.viewer(username)
        return self.stopping.report()

    def curve_report(self, username: str | None) -> LearningCurveReport:
        self.viewer(username)
        return self.curves.report()

    def time_report(self, username: str | None) -> TimeReport:
        v = self.viewer(username)
        return self.time.report(v.name, v.admin)

    def audit_report(self, username: str | None) -> AuditReport:
        v = self.viewer(username)
        return self.audit.report(v.name, v.admin)

    def report(self, username: str | None) -> ValueReport:
        v = self.viewer(username)
        return ValueReport(v, now(), self.stopping.report(), self.curves.report(), self.time.report(v.name, v.admin),
                           self.audit.report(v.name, v.admin))

    def export(self, fmt: str, username: str | None) -> Path:
        """The person's report as a file in a fresh temporary folder: `csv` (one long table, a
        section column) or `json` (the API's object)."""
        fmt = str(fmt or "").strip().lower()
        if fmt not in FORMATS:
            raise BadInput(f"Export as one of {', '.join(FORMATS)}, not {fmt!r}.")
        r = self.report(username)
        path = Path(tempfile.mkdtemp(prefix="bertdemo-value-")) / f"labelling_value_{r.at:%Y%m%d_%H%M%S}.{fmt}"
        if fmt == "csv":
            r.frame().to_csv(path, index=False)
        else:
            path.write_text(json.dumps(r.as_api(), indent=2, ensure_ascii=False), encoding="utf-8")
        return path
