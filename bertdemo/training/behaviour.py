"""Behaviour tests for tweet sentiment in the style of CheckList (Ribeiro et al., ACL 2020):
minimum functionality (a text and the label it must get), invariance (a perturbation such as
an added @user or a typo must not change the label) and directional tests (adding a negation
must move probability away from the original label); the perturbations, a starter suite
generated from templates and bertdemo.training.lexicon, the suite stored in the database
(stored_suite: seeded with the starter suite, then what people add and mark), and running a
suite through any `predict_proba(texts) -> (n, classes)` callable. No torch."""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import behaviour_tests
from bertdemo.errors import BadInput
from bertdemo.text import MENTION_RE, URL_RE
from bertdemo.training import lexicon as lx

log = logging.getLogger(__name__)
MFT, INV, DIR = "MFT", "INV", "DIR"
KINDS = (MFT, INV, DIR)
SPACES_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Case:
    text: str
    perturbed: tuple[str, ...] = ()  # INV and DIR: the texts compared with `text`
    # MFT: the label `text` must get; DIR: the label whose probability must fall (None: the label
    # predicted for `text`); INV: unused. None falls back to the test's `expected`.
    expected: str | None = None


@dataclass(frozen=True)
class BehaviourTest:
    name: str
    kind: str  # MFT, INV or DIR
    description: str
    cases: tuple[Case, ...]
    must_pass: bool = False  # a failing must-pass test blocks automatic activation
    expected: str | None = None  # default of the cases' `expected`
    tolerance: float = 0.0  # the failure rate a must-pass test may have and still pass


@dataclass(frozen=True)
class Failure:
    text: str  # the text that failed (the perturbed one for INV and DIR)
    original: str | None  # INV and DIR: the unperturbed text
    expected: str  # what should have happened, readable
    got: str  # the predicted label
    probs: tuple[float, ...]  # of `text`, in label order


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class
    name: str
    kind: str
    must_pass: bool
    n: int  # cases
    n_failed: int  # cases with at least one failing text
    failures: tuple[Failure, ...]
    tolerance: float = 0.0

    @property
    def failure_rate(self) -> float:
        return self.n_failed / self.n if self.n else 0.0

    @property
    def passed(self) -> bool:
        return self.failure_rate <= self.tolerance

    def sentence(self) -> str:
        return (f"behaviour test {self.name!r} ({self.kind}) failed {self.n_failed} of {self.n} cases "
                f"({self.failure_rate:.1%})")


# ---- perturbations: (text, rng) -> text; the text comes back unchanged when one does not apply ---

def _tidy(text: str) -> str:
    return SPACES_RE.sub(" ", text).strip()


def add_mention(text: str, rng: random.Random) -> str:
    return f"{rng.choice(lx.USERS)} {text}"  # a reply starts with the handle


def remove_mentions(text: str, rng: random.Random) -> str:
    return _tidy(MENTION_RE.sub(" ", text))


def add_url(text: str, rng: random.Random) -> str:
    return f"{text} {rng.choice(lx.URLS)}"


def remove_urls(text: str, rng: random.Random) -> str:
    return _tidy(URL_RE.sub(" ", text))


def add_hashtag(text: str, rng: random.Random) -> str:
    return f"{text} {rng.choice(lx.HASHTAGS)}"


def add_emoji(text: str, rng: random.Random) -> str:
    return f"{text} {rng.choice(lx.NEUTRAL_EMOJI)}"


def _swap(text: str, rng: random.Random, names: Sequence[str]) -> str:
    # longest first, so "Virgin America" is not read as another name's prefix
    for name in sorted(names, key=len, reverse=True):
        rx = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")
        if rx.search(text):
            other = rng.choice([n for n in names if n != name])
            return rx.sub(other, text)
    return text


def swap_airline(text: str, rng: random.Random) -> str:
    return _swap(text, rng, lx.AIRLINES)


def swap_brand(text: str, rng: random.Random) -> str:
    return _swap(text, rng, lx.BRANDS)


def typo(text: str, rng: random.Random) -> str:
    """Swap two different adjacent letters inside one word of at least 4 letters."""
    spots = [(m.start() + i) for m in re.finditer(r"[^\W\d_]{4,}", text)
             for i in range(len(m.group()) - 1) if m.group()[i].lower() != m.group()[i + 1].lower()]
    if not spots:
        return text
    i = rng.choice(spots)
    return text[:i] + text[i + 1] + text[i] + text[i + 2:]


_AUX_RE = re.compile(r"\b(is|was|are|were|am)\b(?! not\b)", re.IGNORECASE)
_CONTRACTED_RE = re.compile(r"(?<=\w)('m|'re)\b(?! not\b)", re.IGNORECASE)
_VERBS = "|".join(lx.POSITIVE_VERBS + lx.NEGATIVE_VERBS + lx.NEUTRAL_VERBS)
_PRONOUN_VERB_RE = re.compile(rf"\b(I|we|you|they)\s+((?:really\s+)?(?:{_VERBS}))\b", re.IGNORECASE)
_MODALS = {"can": "can't", "will": "won't", "do": "don't", "does": "doesn't", "did": "didn't",
           "should": "shouldn't", "would": "wouldn't", "could": "couldn't"}
_MODAL_RE = re.compile(rf"\b({'|'.join(_MODALS)})\b(?! not\b)", re.IGNORECASE)


def negate(text: str, rng: random.Random | None = None) -> str:
    """Add one negation: 'was great' -> 'was not great', 'I'm happy' -> 'I'm not happy',
    'I love' -> 'I don't love', 'can' -> 'can't' (the first rule that applies)."""
    for rx, repl in ((_AUX_RE, r"\1 not"), (_CONTRACTED_RE, r"\1 not"), (_PRONOUN_VERB_RE, r"\1 don't \2")):
        if rx.search(text):
            return rx.sub(repl, text, count=1)
    m = _MODAL_RE.search(text)
    if m:
        word = _MODALS[m.group(1).lower()]
        word = word[0].upper() + word[1:] if m.group(1)[0].isupper() else word
        return text[:m.start()] + word + text[m.end():]
    return text


def add_negative_ending(text: str, rng: random.Random) -> str:
    return f"{text} {rng.choice(lx.NEGATIVE_ENDINGS)}"


INV_PERTURBATIONS: dict[str, Callable[[str, random.Random], str]] = {
    "add @user": add_mention, "remove @user": remove_mentions, "add URL": add_url, "remove URL": remove_urls,
    "add hashtag": add_hashtag, "add neutral emoji": add_emoji, "swap airline": swap_airline,
    "swap brand": swap_brand, "typo": typo}


# ---- the starter suite ----------------------------------------------------------------------------

def _fill(rng: random.Random, templates: Sequence[str], n: int, **slots: Sequence[str]) -> list[str]:
    """`n` distinct sentences (fewer if the templates allow fewer) from every filling of the slots."""
    out: list[str] = []
    for t in templates:
        keys = [k for k in slots if "{" + k + "}" in t]
        out += [t.format(**dict(zip(keys, combo))) for combo in itertools.product(*(slots[k] for k in keys))]
    out = sorted(set(out))
    return rng.sample(out, min(n, len(out)))


_POS = ("The {obj} was {pos}.", "The {airline} {obj} is {pos}!", "{airline}, your {obj} is {pos} today.")
_NEG = ("The {obj} was {neg}.", "The {airline} {obj} is {neg}!", "{airline}, your {obj} is {neg} today.")
_NEU = ("I am flying {airline} to {city} {day}.", "Is the {obj} on {airline} {neu}?",
        "My {airline} flight to {city} leaves {day}.")
_POS_VERB = ("I {pv} {airline}.", "I {pv} the {obj} on {airline}.")
_NEG_VERB = ("I {nv} {airline}.", "I {nv} the {obj} on {airline}.")
_BRAND = ("The {brand} {bobj} is {pos}.", "The {brand} {bobj} is {neg}.", "I {pv} my {brand} {bobj}.",
          "My {brand} {bobj} arrives {day}.")


def _sentences(rng: random.Random, n: int) -> dict[str, list[str]]:
    slots = dict(obj=lx.AIRLINE_OBJECTS, airline=lx.AIRLINES, pos=lx.POSITIVE_ADJECTIVES,
                 neg=lx.NEGATIVE_ADJECTIVES, neu=lx.NEUTRAL_ADJECTIVES, city=lx.CITIES, day=lx.DAYS,
                 pv=lx.POSITIVE_VERBS, nv=lx.NEGATIVE_VERBS, brand=lx.BRANDS, bobj=lx.BRAND_OBJECTS)
    return {name: _fill(rng, templates, n, **slots) for name, templates in
            (("positive", _POS), ("negative", _NEG), ("neutral", _NEU), ("positive verb", _POS_VERB),
             ("negative verb", _NEG_VERB), ("brand", _BRAND))}


def _inv(name: str, description: str, bases: Sequence[str], perturb, rng: random.Random) -> BehaviourTest:
    cases = []
    for text in bases:
        out = perturb(text, rng)
        if out != text:
            cases.append(Case(text, (out,)))
    return BehaviourTest(name, INV, description, tuple(cases))


def _inv_tests(s: dict[str, list[str]], rng: random.Random, n: int) -> list[BehaviourTest]:
    mixed = [t for key in ("positive", "negative", "neutral") for t in s[key][:n // 3 + 1]][:n]
    with_user = [add_mention(t, rng) for t in mixed]
    with_url = [add_url(t, rng) for t in mixed]
    specs = [("inv_add_mention", "Adding an @user handle does not change the sentiment.", mixed, add_mention),
             ("inv_remove_mention", "Removing the @user handle does not change the sentiment.", with_user,
              remove_mentions),
             ("inv_add_url", "Adding a link does not change the sentiment.", mixed, add_url),
             ("inv_remove_url", "Removing the link does not change the sentiment.", with_url, remove_urls),
             ("inv_add_hashtag", "Adding a topical hashtag does not change the sentiment.", mixed, add_hashtag),
             ("inv_add_emoji", "Adding a neutral emoji (an object, not a face) does not change the sentiment.",
              mixed, add_emoji),
             ("inv_swap_airline", "Naming another airline does not change the sentiment.", mixed, swap_airline),
             ("inv_swap_brand", "Naming another brand does not change the sentiment.", s["brand"][:n], swap_brand),
             ("inv_typo", "One typo (two adjacent letters swapped) does not change the sentiment.", mixed, typo)]
    return [_inv(name, desc, bases, fn, rng) for name, desc, bases, fn in specs]


def starter_suite(seed: int = 0, per_test: int = 24) -> list[BehaviourTest]:
    """The starter suite for tweet sentiment (a few hundred cases; none must pass until someone
    marks it). Deterministic for a seed."""
    rng = random.Random(seed)
    s = _sentences(rng, per_test)

    def mft(name: str, description: str, texts: Sequence[str], label: str) -> BehaviourTest:
        return BehaviourTest(name, MFT, description, tuple(Case(t) for t in texts), expected=label)

    def directional(name: str, description: str, texts: Sequence[str], perturb, label: str) -> BehaviourTest:
        cases = [Case(t, (p,)) for t in texts if (p := perturb(t, rng)) != t]
        return BehaviourTest(name, DIR, description, tuple(cases), expected=label)

    tests = [mft("mft_positive_adjective", "A positive adjective about the trip is positive.",
                 s["positive"], "positive"),
             mft("mft_negative_adjective", "A negative adjective about the trip is negative.",
                 s["negative"], "negative"),
             mft("mft_neutral_fact", "A plain statement or question about a trip is neutral.", s["neutral"],
                 "neutral"),
             mft("mft_positive_verb", "'I love/enjoy/recommend ...' is positive.", s["positive verb"], "positive"),
             mft("mft_negative_verb", "'I hate/dread/regret ...' is negative.", s["negative verb"], "negative"),
             mft("mft_negated_positive", "A negated positive adjective ('was not great') is negative.",
                 [n for t in s["positive"][:per_test // 2] if (n := negate(t)) != t], "negative")]
    tests += _inv_tests(s, rng, per_test)
    tests += [directional("dir_negate_positive_adjective", "Adding 'not' before a positive adjective lowers "
                   "the probability of positive.", s["positive"], negate, "positive"),
              directional("dir_negate_positive_verb", "'I love X' -> 'I don't love X' lowers the probability of "
                   "positive.", s["positive verb"], negate, "positive"),
              directional("dir_add_negative_ending", "Ending a positive tweet with 'Never again.' or similar lowers "
                   "the probability of positive.", s["positive"], add_negative_ending, "positive")]
    return tests


# ---- running a suite --------------------------------------------------------------------------------

def _check(test: BehaviourTest, case: Case, probs: Callable[[str], np.ndarray],
           labels: Sequence[str]) -> list[Failure]:
    expected = case.expected or test.expected
    p0 = probs(case.text)
    if test.kind == MFT:
        got = labels[int(p0.argmax())]
        return [] if got == expected else [Failure(case.text, None, expected, got, _round(p0))]
    before = labels.index(expected) if expected and test.kind == DIR else int(p0.argmax())
    out = []
    for text in case.perturbed:
        p = probs(text)
        got = labels[int(p.argmax())]
        if test.kind == INV and int(p.argmax()) != before:
            out.append(Failure(text, case.text, f"same label as the original: {labels[before]}", got, _round(p)))
        elif test.kind == DIR and not p[before] < p0[before]:
            out.append(Failure(text, case.text, f"P({labels[before]}) below {p0[before]:.4f}", got, _round(p)))
    return out


def _round(p: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(x), 4) for x in p)


def _validate(tests: Sequence[BehaviourTest], labels: Sequence[str]) -> None:
    for t in tests:
        if t.kind not in KINDS:
            raise BadInput(f"test {t.name!r}: kind must be one of {', '.join(KINDS)}; got {t.kind!r}")
        for c in t.cases:
            expected = c.expected or t.expected
            if (t.kind == MFT or expected is not None) and expected not in labels:
                raise BadInput(f"test {t.name!r}: expected label must be one of {', '.join(labels)}; "
                               f"got {expected!r} for {c.text!r}")


def run_suite(tests: Sequence[BehaviourTest], predict_proba: Callable[[list[str]], np.ndarray],
              labels: Sequence[str]) -> list[TestResult]:
    """Run every test; all distinct texts of the suite go to `predict_proba` in ONE call
    (it batches), which returns (n_texts, len(labels)) probabilities."""
    labels = list(labels)
    _validate(tests, labels)
    texts = list(dict.fromkeys(t for test in tests for c in test.cases for t in (c.text, *c.perturbed)))
    p = np.asarray(predict_proba(texts), dtype=np.float64) if texts else np.zeros((0, len(labels)))
    if p.shape != (len(texts), len(labels)):
        raise BadInput(f"predict_proba returned shape {p.shape}; expected ({len(texts)}, {len(labels)})")
    row = {t: i for i, t in enumerate(texts)}
    results = []
    for test in tests:
        per_case = [_check(test, c, lambda t: p[row[t]], labels) for c in test.cases]
        failures = tuple(f for fs in per_case for f in fs)
        results.append(TestResult(test.name, test.kind, test.must_pass, len(test.cases),
                                  sum(1 for fs in per_case if fs), failures, test.tolerance))
    return results


def must_pass_failures(results: Sequence[TestResult]) -> list[TestResult]:
    """The must-pass tests that failed (the activation gate refuses a version with any)."""
    return [r for r in results if r.must_pass and not r.passed]


def make_test_from_example(text: str, kind: str, name: str | None = None, expected: str | None = None,
                           perturbations: Sequence[str] | None = None, seed: int = 0,
                           must_pass: bool = False, description: str = "") -> BehaviourTest:
    """A one-case test from an example, for a person to preview and save. MFT: `text` must get
    `expected`; INV: the texts of `perturbations` (names in INV_PERTURBATIONS, default all) that
    differ from `text` must keep its label; DIR: the negated text must lower P(`expected`), or of
    the label predicted for `text` when `expected` is None."""
    if kind not in KINDS:
        raise BadInput(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    rng = random.Random(seed)
    if kind == MFT:
        if not expected:
            raise BadInput("a minimum functionality test needs the label the text must get")
        case = Case(text, (), expected)
    elif kind == INV:
        chosen = list(perturbations) if perturbations is not None else list(INV_PERTURBATIONS)
        unknown = [p for p in chosen if p not in INV_PERTURBATIONS]
        if unknown:
            raise BadInput(f"unknown perturbations {unknown}; choose from {', '.join(INV_PERTURBATIONS)}")
        outs = dict.fromkeys(INV_PERTURBATIONS[p](text, rng) for p in chosen)
        outs.pop(text, None)
        if not outs:
            raise BadInput("none of the chosen perturbations changes this text")
        case = Case(text, tuple(outs))
    else:
        negated = negate(text)
        if negated == text:
            raise BadInput("no negation rule applies to this text (no 'is/was/are', 'I love ...', 'can/do ...')")
        case = Case(text, (negated,), expected)
    return BehaviourTest(name or f"{kind.lower()}_from_example", kind,
                         description or f"{kind} test made from: {text[:80]}", (case,), must_pass)


# ---- the stored suite (db/behaviour_tests.py) --------------------------------------------------------

def as_fields(test: BehaviourTest) -> dict:
    """`test` as the columns of its row (db.behaviour_tests.FIELDS); the cases as JSON."""
    cases = [{"text": c.text, "perturbed": list(c.perturbed)} | ({"expected": c.expected} if c.expected else {})
             for c in test.cases]
    return {"name": test.name, "kind": test.kind, "description": test.description, "expected": test.expected,
            "cases": cases, "must_pass": test.must_pass, "tolerance": test.tolerance}


def from_row(row: behaviour_tests.BehaviourTestRecord) -> BehaviourTest:
    cases = tuple(Case(c["text"], tuple(c.get("perturbed") or ()), c.get("expected")) for c in row.cases or ())
    return BehaviourTest(row.name, row.kind, row.description, cases, row.must_pass, row.expected, row.tolerance)


def fits(test: BehaviourTest, labels: Sequence[str]) -> bool:
    """Whether every label `test` names is one of `labels` (a changed label set leaves some out)."""
    named = {test.expected, *(c.expected for c in test.cases)} - {None}
    return test.kind in KINDS and named <= set(labels) and (test.kind != MFT or bool(named))


def stored_suite(engine: Engine, labels: Sequence[str]) -> list[BehaviourTest]:
    """The behaviour tests in the database, oldest first. The first call writes the starter suite
    there, once (its tests that fit `labels`); later calls only read, so what people added, marked
    must pass or deleted is what runs. Tests naming a label outside `labels` are
    left out (logged)."""
    with Session(engine) as s, s.begin():
        if not behaviour_tests.count(s):
            behaviour_tests.seed(s, [as_fields(t) for t in starter_suite() if fits(t, labels)])
        tests = [from_row(r) for r in behaviour_tests.all_tests(s)]
    kept = [t for t in tests if fits(t, labels)]
    if len(kept) < len(tests):
        log.warning("behaviour tests left out (a label they name is not among %s): %s", list(labels),
                    ", ".join(t.name for t in tests if t not in kept))
    return kept
