"""Behaviour tests as the Train tab and Annotate use them (no Gradio): the stored tests with each
one's last failure rate, a test made from one text (a Draft: preview its perturbed texts, then
save it), must pass on and off, delete, and running the suite on a version on every serving path
it may use (PyTorch, and its int8 graph when one was built). Saving, marking, deleting and running
(it loads a model) are for admins: each checks the role server-side with `auth.require_role`."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace

from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.db import behaviour_tests
from bertdemo.db.models import BEHAVIOUR_SOURCES
from bertdemo.errors import BadInput, Busy, NotFound
from bertdemo.services import Services
from bertdemo.training import behaviour as bt
from bertdemo.training import behaviour_runs
from bertdemo.training.behaviour_runs import PathRun
from bertdemo.training.registry import VersionInfo
from bertdemo.validate import choice, flag, short
from bertdemo.validate import text as typed_text

TEST_COLUMNS = ("name", "kind", "description", "cases", "must pass", "source", "last failure rate")
PREVIEW_COLUMNS = ("text", "perturbed text", "what must hold")
RESULT_COLUMNS = ("test", "kind", "path", "must pass", "cases", "failed", "failure rate", "passes")
FAILURE_COLUMNS = ("test", "path", "text", "original", "expected", "got", "probabilities")
KIND_NAMES = {bt.MFT: "minimum functionality (the text must get a label)",
              bt.INV: "invariance (a perturbation must not change the label)",
              bt.DIR: "directional (adding a negation must lower the label's probability)"}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*")
MAX_NAME, MAX_TEXT, MAX_DESCRIPTION = 64, 1000, 500


@dataclass(frozen=True)
class Draft:
    """A one-case test as a person fills it in: the text, the kind (MFT, INV, DIR), the label it
    must get (MFT) or whose probability must fall (DIR; empty: the predicted one), the
    perturbations of an INV test (names in behaviour.INV_PERTURBATIONS; empty: all), a name and
    a description (empty: made from the text)."""
    text: str
    kind: str
    expected: str | None = None
    perturbations: tuple[str, ...] = ()
    name: str = ""
    description: str = ""


@dataclass(frozen=True)
class Preview:
    """A Draft made into a test: its perturbed texts, before it is saved."""
    test: bt.BehaviourTest

    def rows(self) -> list[list]:
        """PREVIEW_COLUMNS rows: one per text the model will score."""
        t = self.test
        out = []
        for c in t.cases:
            expected = c.expected or t.expected
            if t.kind == bt.MFT:
                out.append([c.text, "", f"label {expected}"])
            for p in c.perturbed:
                must = "same label as the text" if t.kind == bt.INV else \
                    f"P({expected or 'the predicted label'}) lower than for the text"
                out.append([c.text, p, must])
        return out

    def sentence(self) -> str:
        n = sum(max(1, len(c.perturbed)) for c in self.test.cases)
        return f"{self.test.kind} test {self.test.name!r}: {n} text{'s' if n != 1 else ''} to check."


@dataclass(frozen=True)
class SuiteRun:
    """The suite's results on one version, per serving path; `note` says which path did not run."""
    version: str
    runs: tuple[PathRun, ...]
    note: str = ""
    stored: bool = False  # read from the database, not run now

    def rows(self) -> list[list]:
        """RESULT_COLUMNS rows: every test on every path."""
        return [[r.name, r.kind, run.path, "yes" if r.must_pass else "", r.n, r.n_failed, f"{r.failure_rate:.1%}",
                 "yes" if r.passed else "no"] for run in self.runs for r in run.results]

    def failure_rows(self, test: str | None = None) -> list[list]:
        """FAILURE_COLUMNS rows: the failing cases (of `test`, or of every test)."""
        return [[r.name, run.path, f.text, f.original or "", f.expected, f.got, ", ".join(f"{p:.3f}" for p in f.probs)]
                for run in self.runs for r in run.results if test in (None, r.name) for f in r.failures]

    def sentence(self) -> str:
        if not self.runs:
            return f"No behaviour results for {self.version} yet: run the suite on it."
        parts = [f"{run.path} ({run.note}): {sum(r.passed for r in run.results)} of {len(run.results)} pass"
                 + (f"; must pass failing: {', '.join(r.name for r in bt.must_pass_failures(run.results))}"
                    if bt.must_pass_failures(run.results) else "") for run in self.runs]
        how = "Stored results" if self.stored else "Ran the suite"
        return f"{how} on {self.version}: " + "; ".join(parts) + "." + (f" {self.note}" if self.note else "")


class BehaviourActions:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self._running = threading.Lock()  # one suite run at a time: each loads a model

    # ---------------------------------------------------------------- the stored tests
    def tests(self) -> list[bt.BehaviourTest]:
        """The stored suite (the starter suite is written on first use)."""
        return bt.stored_suite(self.engine, self.labels)

    def table(self) -> list[list]:
        """TEST_COLUMNS rows, oldest first; the last failure rate is the newest stored run's."""
        tests = self.tests()
        with Session(self.engine) as s:
            rows = {r.name: r for r in behaviour_tests.all_tests(s)}
            last = {name: (r.n_failed / r.n if r.n else 0.0, r.path, r.version_id)
                    for name, r in behaviour_tests.latest_results(s).items()}
        names = {v.id: v.name for v in self.services.registry.versions()}
        return [[t.name, t.kind, t.description, len(t.cases), "yes" if t.must_pass else "",
                 rows[t.name].source if t.name in rows else "",
                 f"{last[t.name][0]:.1%} ({names.get(last[t.name][2], '?')}, {last[t.name][1]})"
                 if t.name in last else ""] for t in tests]

    def preview(self, draft: Draft) -> Preview:
        """The test `draft` makes, with its perturbed texts (anyone may look)."""
        text = typed_text(draft.text if draft.text is not None else "", "The text", MAX_TEXT).strip()
        if not text:
            raise BadInput("Type the text the test starts from (or pick an example or a flip).")
        kind = choice(draft.kind, "The kind of test", bt.KINDS)
        expected = draft.expected or None
        if expected is not None:
            choice(expected, "The expected label", self.labels)
        if kind == bt.INV and expected:
            expected = None  # an invariance test keeps whatever label the text gets
        chosen = list(draft.perturbations) if draft.perturbations else None
        description = typed_text(draft.description or "", "The description", MAX_DESCRIPTION).strip()
        test = bt.make_test_from_example(text, kind, name=self._name(draft.name, kind, text), expected=expected,
                                         perturbations=chosen, description=description)
        return Preview(replace(test, expected=expected))  # the row's expected label, for the table and queries

    def save(self, draft: Draft, must_pass: object, source: str, username: str | None) -> str:
        """Store the test `draft` makes (admins only); `source`: example (Annotate) or flip (the review)."""
        who = auth.require_role(self.engine, username, "admin")
        source = choice(source, "The source", BEHAVIOUR_SOURCES)
        if not (draft.name or "").strip():
            raise BadInput("Give the test a name (letters, digits, spaces, _ . -; at most 64 characters).")
        test = self.preview(draft).test
        fields = bt.as_fields(test) | {"must_pass": flag(must_pass, "must pass")}
        with Session(self.engine) as s, s.begin():
            behaviour_tests.add(s, fields, source, who)
        mark = " It must pass: a version that fails it does not serve by itself." if fields["must_pass"] else ""
        kind = KIND_NAMES[test.kind].split(" (")[0]  # "minimum functionality"
        return f"Saved behaviour test {test.name!r}: {kind}, {Preview(test).sentence().rsplit(': ', 1)[1]}{mark}"

    def set_must_pass(self, name: str, must_pass: object, username: str | None) -> str:
        """Mark the test must pass, or not (admins only)."""
        who = auth.require_role(self.engine, username, "admin")
        on = flag(must_pass, "must pass")
        with Session(self.engine) as s, s.begin():
            behaviour_tests.set_must_pass(s, self._known(name), on, who)
        return (f"{name!r} must pass now: a version failing it is registered, not served by itself." if on
                else f"{name!r} no longer has to pass (its results are still shown).")

    def delete(self, name: str, username: str | None) -> str:
        """Remove the test and its stored results (admins only)."""
        auth.require_role(self.engine, username, "admin")
        with Session(self.engine) as s, s.begin():
            behaviour_tests.delete_test(s, self._known(name))
        return f"Deleted behaviour test {name!r}."

    # ---------------------------------------------------------------- running the suite
    def run(self, version: str, username: str | None) -> SuiteRun:
        """Run the stored suite on `version` on each serving path it may use (admins only: it loads
        the model) and keep the results."""
        auth.require_role(self.engine, username, "admin")
        info = self._version(version)
        if not self._running.acquire(blocking=False):
            raise Busy("The behaviour suite is running on a version already; try again when it finished.")
        try:
            reg = self.services.registry
            folder = reg.folder(info)
            runs, note = behaviour_runs.run_paths(reg.load(info), folder, self.tests(), self.labels)
            for r in runs:
                behaviour_runs.save(self.engine, info.id, r)
        finally:
            self._running.release()
        return SuiteRun(info.name, tuple(runs), note)

    def last_run(self, version: str) -> SuiteRun:
        """The stored results of `version` (anyone may read them)."""
        info = self._version(version)
        return SuiteRun(info.name, tuple(behaviour_runs.stored(self.engine, info.id)), stored=True)

    def version_names(self) -> list[str]:
        return [v.name for v in self.services.registry.versions()]

    # ---------------------------------------------------------------- checks
    def _version(self, name: str | None) -> VersionInfo:
        for v in self.services.registry.versions():
            if v.name == name:
                return v
        raise NotFound(f"No model version named {short(name)}; choose one from the list.")

    def _known(self, name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            raise BadInput("Choose a behaviour test: click its row in the table.")
        return name.strip()

    def _name(self, name: str | None, kind: str, text: str) -> str:
        name = (name or "").strip()
        if not name:
            return f"{kind.lower()}: {text[:40]}".strip()[:MAX_NAME]
        if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
            raise BadInput(f"A test's name is 1 to {MAX_NAME} letters, digits, spaces, _ . or -, starting with a "
                           f"letter or digit; got {short(name)}.")
        with Session(self.engine) as s:
            if behaviour_tests.exists(s, name):
                raise BadInput(f"A behaviour test named {name!r} exists already; choose another name.")
        return name
