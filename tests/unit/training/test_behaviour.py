"""Behaviour tests (CheckList-style): perturbations, the starter suite, running a suite, and
making a test from one example; a smoke run through the packaged model."""

from __future__ import annotations

import collections
import random
import re
from dataclasses import replace

import numpy as np
import pytest

from bertdemo.errors import BadInput
from bertdemo.training import lexicon as lx
from bertdemo.training.behaviour import (DIR, INV, INV_PERTURBATIONS, MFT, BehaviourTest, Case, add_emoji,
                                         add_hashtag, add_mention, add_url, make_test_from_example,
                                         must_pass_failures, negate, remove_mentions, remove_urls, run_suite,
                                         starter_suite, swap_airline, swap_brand, typo)
from bertdemo.training.review import EMOJI_RE
from tests.support import LABELS

POSITIVE = set(lx.POSITIVE_ADJECTIVES + lx.POSITIVE_VERBS)
NEGATIVE = set(lx.NEGATIVE_ADJECTIVES + lx.NEGATIVE_VERBS)


class KeywordModel:
    """A fake predict_proba: negative if a negative lexicon word occurs, else positive if a positive
    one does, else neutral; `negation` swaps positive and negative when 'not' or "n't" occurs."""

    def __init__(self, negation: bool = False):
        self.negation, self.calls = negation, 0

    def __call__(self, texts):
        self.calls += 1
        out = []
        for t in texts:
            words = set(re.findall(r"[a-z']+", t.lower()))
            label = 0 if words & NEGATIVE else 2 if words & POSITIVE else 1
            if self.negation and label != 1 and ("not" in words or any(w.endswith("n't") for w in words)):
                label = 2 - label
            p = np.full(3, 0.1)
            p[label] = 0.8
            out.append(p)
        return np.array(out)


# ---- perturbations -------------------------------------------------------------------------------

TEXT = "@sam The Delta crew was great, I love JetBlue too http://t.co/q #travel"


def test_every_perturbation_is_deterministic_for_a_seed():
    for fn in INV_PERTURBATIONS.values():
        assert fn(TEXT, random.Random(3)) == fn(TEXT, random.Random(3))
    assert len({add_mention("hi", random.Random(s)) for s in range(20)}) > 1  # the seed does choose


def test_mentions_links_hashtags_and_emoji_are_added_and_removed():
    rng = random.Random(0)
    user, rest = add_mention("nice day", rng).split(" ", 1)
    assert user in lx.USERS and rest == "nice day"
    assert remove_mentions("@a hi @b_2 there", rng) == "hi there"
    with_url = add_url("nice day", rng)
    assert with_url.rsplit(" ", 1)[1] in lx.URLS and remove_urls(with_url, rng) == "nice day"
    assert remove_urls("see https://x.io/a and www.y.com now", rng) == "see and now"
    text, tag = add_hashtag("nice day", rng).rsplit(" ", 1)
    assert text == "nice day" and tag in lx.HASHTAGS
    text, emoji = add_emoji("nice day", rng).rsplit(" ", 1)
    assert text == "nice day" and emoji in lx.NEUTRAL_EMOJI and EMOJI_RE.search(emoji)


def test_names_are_swapped_whole_for_another_of_the_same_kind():
    for seed in range(10):
        out = swap_airline("I flew Virgin America today", random.Random(seed))
        name = out.removeprefix("I flew ").removesuffix(" today")
        assert name in lx.AIRLINES and name != "Virgin America"
        brand = swap_brand("My Apple phone broke", random.Random(seed)).split()[1]
        assert brand in lx.BRANDS and brand != "Apple"
    assert swap_airline("Americans fly a lot", random.Random(0)) == "Americans fly a lot"
    assert swap_brand("no brand here", random.Random(0)) == "no brand here"


def test_a_typo_swaps_two_different_adjacent_letters_in_a_long_word():
    for seed in range(20):
        text = "my bag is lost again"
        out = typo(text, random.Random(seed))
        diff = [i for i, (x, y) in enumerate(zip(text, out)) if x != y]
        assert len(out) == len(text) and len(diff) == 2 and diff[1] == diff[0] + 1
        assert text[diff[0]] == out[diff[1]] and text[diff[1]] == out[diff[0]]
        assert diff[0] >= text.index("lost")  # only "lost" and "again" have 4 letters or more
    assert typo("a cat is on it", random.Random(0)) == "a cat is on it"
    assert typo("aaaa", random.Random(0)) == "aaaa"  # swapping equal letters changes nothing


@pytest.mark.parametrize("text, negated", [
    ("The flight was great.", "The flight was not great."),
    ("The Delta crew is great!", "The Delta crew is not great!"),
    ("I'm happy with it", "I'm not happy with it"),
    ("I love Delta", "I don't love Delta"),
    ("We really enjoy the lounge", "We don't really enjoy the lounge"),
    ("Can you help", "Can't you help"),
    ("the app will work", "the app won't work"),
    ("The flight is not great", "The flight is not great"),  # already negated: left alone
    ("Thanks Delta", "Thanks Delta"),
])
def test_negate(text, negated):
    assert negate(text) == negated


# ---- the starter suite ---------------------------------------------------------------------------

def test_the_starter_suite_has_a_few_hundred_cases_under_unique_names():
    suite = starter_suite()
    per_kind = collections.Counter()
    for t in suite:
        per_kind[t.kind] += len(t.cases)
    assert dict(per_kind) == {MFT: 132, INV: 215, DIR: 72} and sum(per_kind.values()) == 419
    assert len({t.name for t in suite}) == len(suite) == 18
    assert all(t.description and t.cases and not t.must_pass for t in suite)
    for t in suite:
        assert len({c.text for c in t.cases}) == len(t.cases)
        if t.kind == MFT:
            assert t.expected in LABELS
        else:
            assert all(c.perturbed and all(p != c.text for p in c.perturbed) for c in t.cases)
    negated = next(t for t in suite if t.name == "mft_negated_positive")
    assert all(" not " in c.text for c in negated.cases)


def test_the_starter_suite_is_deterministic_for_a_seed():
    assert starter_suite(seed=0) == starter_suite(seed=0)
    assert starter_suite(seed=1) != starter_suite(seed=0)


# ---- running a suite -----------------------------------------------------------------------------

def rates(results):
    return {r.name: r.failure_rate for r in results if r.failure_rate}


def typo_hit_a_sentiment_word(case: Case) -> bool:
    before, after = case.text.split(), case.perturbed[0].split()
    changed = [b for b, a in zip(before, after) if b != a]
    return re.sub(r"\W", "", changed[0].lower()) in POSITIVE | NEGATIVE


def test_run_suite_on_a_keyword_rule_gives_the_known_failure_rates():
    suite = starter_suite()
    model = KeywordModel()
    results = run_suite(suite, model, LABELS)
    assert model.calls == 1 and [r.name for r in results] == [t.name for t in suite]
    typos = next(t for t in suite if t.name == "inv_typo")
    typo_rate = sum(map(typo_hit_a_sentiment_word, typos.cases)) / len(typos.cases)
    assert 0 < typo_rate < 1
    # the rule ignores negation and knows none of the negative endings' words
    assert rates(results) == {"mft_negated_positive": 1.0, "inv_typo": typo_rate,
                              "dir_negate_positive_adjective": 1.0, "dir_negate_positive_verb": 1.0,
                              "dir_add_negative_ending": 1.0}
    # "Not impressed." is the one ending a negation-aware rule reads as negative
    endings = next(t for t in suite if t.name == "dir_add_negative_ending")
    ending_rate = sum(not c.perturbed[0].endswith("Not impressed.") for c in endings.cases) / len(endings.cases)
    assert 0 < ending_rate < 1
    assert rates(run_suite(suite, KeywordModel(negation=True), LABELS)) == {
        "inv_typo": typo_rate, "dir_add_negative_ending": ending_rate}


def test_failures_say_what_was_expected_and_what_came_back():
    tests = [BehaviourTest("m", MFT, "d", (Case("I love it"), Case("I hate it"), Case("a bag"), Case("awful")),
                           expected="negative"),
             BehaviourTest("i", INV, "d", (Case("great day", ("graet day", "great day #x")),)),
             BehaviourTest("d", DIR, "d", (Case("it was great", ("it was not great",)),
                                           Case("a bag", ("not a bag",), expected="neutral")))]
    m, i, d = run_suite(tests, KeywordModel(), LABELS)
    assert (m.n, m.n_failed, m.failure_rate, m.passed) == (4, 2, 0.5, False)
    assert (m.failures[0].text, m.failures[0].original, m.failures[0].expected, m.failures[0].got,
         m.failures[0].probs) == ("I love it", None, "negative", "positive", (0.1, 0.1, 0.8))
    assert (i.n, i.n_failed) == (1, 1) and len(i.failures) == 1
    f = i.failures[0]
    assert (f.text, f.original, f.expected, f.got) == ("graet day", "great day",
                                                        "same label as the original: positive", "neutral")
    assert (d.n, d.n_failed) == (2, 2) and d.failures[0].expected == "P(positive) below 0.8000"
    assert d.failures[1].expected == "P(neutral) below 0.8000"


def test_must_pass_failures_respect_the_tolerance():
    base = BehaviourTest("m", MFT, "d", tuple(Case(t) for t in ("I love it", "great", "nice", "I hate it")),
                         expected="positive")  # the rule gets "nice" and "I hate it" wrong: 50%
    results = run_suite([base, replace(base, name="strict", must_pass=True),
                         replace(base, name="lenient", must_pass=True, tolerance=0.5)], KeywordModel(), LABELS)
    assert [r.failure_rate for r in results] == [0.5, 0.5, 0.5]
    assert [r.name for r in must_pass_failures(results)] == ["strict"]


def test_run_suite_checks_labels_and_the_model_output():
    bad = BehaviourTest("m", MFT, "d", (Case("x"),), expected="happy")
    with pytest.raises(BadInput, match="expected label must be one of"):
        run_suite([bad], KeywordModel(), LABELS)
    with pytest.raises(BadInput, match=r"expected \(1, 3\)"):
        run_suite([replace(bad, expected="neutral")], lambda texts: np.zeros((1, 2)), LABELS)
    assert run_suite([], KeywordModel(), LABELS) == []


# ---- a test from one example ---------------------------------------------------------------------

def test_make_a_test_from_an_example():
    mft = make_test_from_example("Delta lost my bag", MFT, name="lost bag", expected="negative", must_pass=True)
    assert (mft.name, mft.kind, mft.must_pass, mft.cases) == ("lost bag", MFT, True,
                                                              (Case("Delta lost my bag", (), "negative"),))
    inv = make_test_from_example("Thanks Delta for the lift", INV,
                                 perturbations=["add @user", "remove URL", "swap airline", "typo"], seed=1)
    (case,) = inv.cases
    assert case.text == "Thanks Delta for the lift" and len(case.perturbed) == 3  # no URL to remove
    assert case.perturbed[0].endswith(" Thanks Delta for the lift") and "Delta" not in case.perturbed[1]
    assert inv == make_test_from_example("Thanks Delta for the lift", INV,
                                         perturbations=["add @user", "remove URL", "swap airline", "typo"], seed=1)
    dir_ = make_test_from_example("The crew was lovely", DIR)
    assert dir_.cases == (Case("The crew was lovely", ("The crew was not lovely",), None),)
    # the rule does not know "lost" (neutral, not negative) and reads "was not lovely" as negative
    assert [r.n_failed for r in run_suite([mft, dir_], KeywordModel(negation=True), LABELS)] == [1, 0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(text="x", kind="XYZ"), "kind must be one of"),
    (dict(text="Delta lost my bag", kind=MFT), "needs the label"),
    (dict(text="Thanks Delta", kind=DIR), "no negation rule"),
    (dict(text="hi", kind=INV, perturbations=["remove URL"]), "none of the chosen perturbations"),
    (dict(text="hi", kind=INV, perturbations=["shout"]), "unknown perturbations"),
])
def test_make_a_test_from_an_example_refuses_what_it_cannot_build(kwargs, message):
    with pytest.raises(BadInput, match=message):
        make_test_from_example(**kwargs)


# ---- the packaged model --------------------------------------------------------------------------

def test_the_starter_suite_runs_through_the_packaged_model(base_clf):
    suite = starter_suite()  # ~800 distinct short texts: ~2 s on CPU
    results = run_suite(suite, base_clf.predict_proba, LABELS)
    assert [(r.name, r.n) for r in results] == [(t.name, len(t.cases)) for t in suite]
    assert all(0.0 <= r.failure_rate <= 1.0 and len(r.failures) >= r.n_failed for r in results)
    assert all(len(f.probs) == 3 and abs(sum(f.probs) - 1) < 1e-3 for r in results for f in r.failures)
