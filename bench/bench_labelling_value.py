"""Is more labelling worth it (issue 25), end to end: scripted annotators label the bundled airline
tweets through the app's actions, versions are fine-tuned on the growing label set, and the four
reports (stopping signals, learning curve, annotation time, suggestion-bias audit) are read at the end.

    flock /tmp/bertdemo-pytest.lock nice -n 5 .venv/bin/python bench/bench_labelling_value.py \
        [--rounds 6] [--per-round 200] [--seed 0] [--accept 0.6] [--error 0.1] [--share 0.2] [--steps 60]

The set-up, in-process on a temporary data dir (SQLite), as bench_quick_retrain.py builds Services:
`--corpus` airline tweets imported WITHOUT their labels (dataset "airline"; the gold labels stay in
this script), and `--test` other airline tweets held out (never in the database) for a gold macro-F1
beside the app's own validation figure. Three annotator accounts and an admin. The admin sets
the audit share to `--share` (SuggestionAudit.set_share).

Each round the annotators label `--per-round` items through Labelling.next_item / save_label on the
default queue (Unlabeled before a model serves, then "informative"), so hand-outs, leases and the
audit's draw happen as in the app. An annotator shown a suggestion accepts it with probability
`--accept` without checking (save_label(..., accepted_suggestion=True)); otherwise, and always on a
hidden item, answers the gold label, or with probability `--error` another label at random. Time
cannot be waited for: the annotators work on a simulated clock (an event queue: each person's
hand-out, their scripted decision time, their save, in the clock's order, so leases overlap as in a
team), and the label events' created_at / handed_out_at are written from that clock afterwards
(rewrite_times, the one database write of this script; handed_out_at only where save_label stored
one). "carol" accepts in under a second: the audit should flag her run of fast accepts.

After each round the admin fine-tunes a version from the base encoder on every label (JobRunner.run_sync,
TrainConfig(max_steps=--steps), no activation gate) and activates it (re-scoring every example: the
next round's suggestions and queue ranking); the stopping pool's predictions are stored by the runner.
Printed: one row per version, the kappa rule's verdict, the curve's fit and forecasts, the time and
audit figures, what the script did (its truth) against what the audit measured; one JSON line appended
to --out, and a figure (learning curve with fit and forecast; kappa per version) to --plot.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from benchlib import PASSWORD, cpu_model
from sklearn.metrics import f1_score
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.stopping import stable_from
from bertdemo.config import BUNDLED_DATASET, Settings
from bertdemo.datasets import load_bundled
from bertdemo.db import examples
from bertdemo.db.models import Example, LabelEvent, now
from bertdemo.errors import Conflict
from bertdemo.services import Services
from bertdemo.training.config import TrainConfig

log = logging.getLogger("bench_labelling_value")
HERE = Path(__file__).resolve().parent
ADMIN = "boss"
GAP_S = 0.4  # between a save and the next hand-out (reading the next tweet starts the decision time)


@dataclass(frozen=True)
class Annotator:
    """A scripted person: median seconds to decide on their own, and how fast they accept a suggestion."""
    name: str
    own_median_s: float
    accept_s: tuple[float, float]  # uniform range of seconds to accept a shown suggestion


TEAM = (Annotator("alice", 6.0, (1.5, 3.5)), Annotator("bob", 9.0, (2.0, 5.0)),
        Annotator("carol", 5.0, (0.4, 0.9)))  # carol rubber-stamps: every accept under FAST_ACCEPT_S


@dataclass(frozen=True)
class Corpus:
    ids: list[int]  # the imported examples' ids
    gold: dict[int, str]  # example id -> bundled label (withheld from the database)
    test_texts: list[str]
    test_gold: list[str]


@dataclass(frozen=True)
class Decision:
    """One save as the script made it (its truth, beside what the audit measures)."""
    user: str
    example_id: int
    condition: str  # shown | hidden | none (no suggestion to show: no model yet)
    suggested: str | None
    label: str
    accepted: bool
    gold: str
    handed_out: float  # simulated seconds since the start
    saved: float
    event_id: int


@dataclass(frozen=True)
class VersionRow:
    name: str
    labels: int
    macro_f1: float | None  # the app's, on its validation split
    test_f1: float  # on the held-out gold tweets
    train_s: float  # run_sync, wall
    activate_s: float  # activation + re-scoring every example


@dataclass
class Clock:
    """The simulated clock: seconds since the start; annotators wait for a training run too."""
    t: float = 0.0
    free_at: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------ set-up
def make_services(data_dir: Path, args) -> Services:
    """Services on a fresh SQLite data dir: fp32 serving (no int8 build per version), no quick
    model refits (suggestions are the active version's stored scores), no bundled import."""
    kw: dict[str, object] = {"data_dir": data_dir, "serving": "fp32", "quick_first": False, "bootstrap": False,
                             "quick_refit_every": 0, "datasets": ("airline",), "device": "cpu"}
    if "stop_pool_size" in {f.name for f in dataclasses.fields(Settings)}:
        kw["stop_pool_size"] = args.pool
    services = Services.create(Settings(**kw))
    auth.add_user(services.engine, ADMIN, PASSWORD, "admin")
    for a in TEAM[:args.annotators]:
        auth.add_user(services.engine, a.name, PASSWORD, "annotator")
    return services


def load_corpus(services: Services, args) -> Corpus:
    """`--corpus` airline tweets imported unlabelled and `--test` others held out, drawn at random."""
    rows = load_bundled(BUNDLED_DATASET, services.settings.max_chars)
    order = np.random.default_rng(args.seed).permutation(len(rows))
    pool = [rows[i] for i in order[:args.corpus]]
    test = [rows[i] for i in order[args.corpus:args.corpus + args.test]]
    blank = [examples.NewExample(r.text, r.raw_text, None, r.external_id, r.meta, "airline") for r in pool]
    with Session(services.engine) as s, s.begin():
        examples.import_examples(s, blank, "import", "bench", services.settings.labels)
    by_text = {r.text: r.label for r in pool}
    with Session(services.engine) as s:
        stored = s.execute(select(Example.id, Example.text)).all()
    gold = {int(i): by_text[t] for i, t in stored}
    return Corpus(sorted(gold), gold, [r.text for r in test], [r.label for r in test])


def set_share(services: Services, share: float) -> str:
    """The admin's audit share; how it was set (the audit's own setter, or missing)."""
    try:
        from bertdemo.actions.suggestion_audit import SuggestionAudit
    except ImportError as exc:
        return f"not set: {exc}"
    SuggestionAudit(services).set_share(share, ADMIN)
    return f"{SuggestionAudit(services).share():.2f}"


def make_labelling(services: Services, seed: int):
    """Labelling as the Annotate tab builds it, without the retrain-every-N and quick-model hooks;
    the audit's draw seeded (WorkDistribution's `draw`), so a rerun hides the same hand-outs."""
    from bertdemo.actions.distribution import WorkDistribution
    from bertdemo.actions.labelling import Labelling
    from bertdemo.actions.notes import Notes

    work = WorkDistribution(services, draw=random.Random(seed).random)
    return Labelling(services, work, Notes(services), lambda _user: [], lambda: None), work


# ------------------------------------------------------------------------------ annotating
def decide(person: Annotator, item, gold: str, model: bool, args, rng) -> tuple[str, bool, str, float]:
    """(label, accepted, condition, seconds) for one handed-out item; `model`: a version serves (a
    hidden item had a suggestion to hide)."""
    hidden = bool(getattr(item, "suggestion_hidden", False))
    condition = "none" if not model else ("hidden" if hidden else ("shown" if item.predicted else "none"))
    if condition == "shown" and rng.random() < args.accept:
        return item.predicted, True, condition, float(rng.uniform(*person.accept_s))
    label = gold
    if rng.random() < args.error:
        label = str(rng.choice([x for x in args.labels if x != gold]))
    return label, False, condition, float(person.own_median_s * np.exp(rng.normal(0.0, 0.4)))


def label_round(labelling, corpus: Corpus, clock: Clock, n: int, args, rng, team) -> list[Decision]:
    """`n` saves by the team on the simulated clock: hand-outs and saves in time order (an event queue)."""
    queue = labelling.default_queue()
    model = labelling.services.registry.active_version() is not None
    events: list[tuple[float, int, str, str]] = [(clock.free_at.get(a.name, clock.t), k, "hand", a.name)
                                                  for k, a in enumerate(team)]
    heapq.heapify(events)
    pending: dict[str, tuple] = {}
    out: list[Decision] = []
    handed, k = 0, len(team)
    people = {a.name: a for a in team}
    while events:
        t, _k, what, name = heapq.heappop(events)
        if what == "hand":
            if handed >= n:
                clock.free_at[name] = t
                continue
            item = labelling.next_item(queue, "", [], name)
            if item is None:
                clock.free_at[name] = t
                continue
            handed += 1
            label, accepted, cond, secs = decide(people[name], item, corpus.gold[item.id], model, args, rng)
            pending[name] = (item, label, accepted, cond, t)
            heapq.heappush(events, (t + secs, k, "save", name))
        else:
            item, label, accepted, cond, t0 = pending.pop(name)
            try:
                saved = labelling.save_label(item.id, label, item.version, name, accepted_suggestion=accepted)
            except Conflict as exc:  # not expected with leases: counted by its absence from `out`
                log.warning("conflict for %s on %d: %s", name, item.id, exc)
                saved = None
            if saved is not None:
                out.append(Decision(name, item.id, cond, item.predicted, label, accepted, corpus.gold[item.id],
                                    t0, t, saved.event_id))
            heapq.heappush(events, (t + GAP_S, k, "hand", name))
        k += 1
    clock.t = max(clock.free_at.values())
    return out


def rewrite_times(services: Services, decisions: list[Decision]) -> tuple[int, int]:
    """Write the simulated clock into the label events (the last save a minute ago): created_at on
    every save of the script, handed_out_at where save_label stored one. (saves, hand-outs) written."""
    end = now() - timedelta(seconds=60)
    last = max(d.saved for d in decisions)
    with_handout = 0
    with Session(services.engine) as s, s.begin():
        stored = {i for i, h in s.execute(select(LabelEvent.id, LabelEvent.handed_out_at)) if h is not None}
        for d in decisions:
            at = end - timedelta(seconds=last - d.saved)
            values = {"created_at": at}
            if d.event_id in stored:
                values["handed_out_at"] = end - timedelta(seconds=last - d.handed_out)
                with_handout += 1
            s.execute(update(LabelEvent).where(LabelEvent.id == d.event_id).values(**values))
    return len(decisions), with_handout


# ------------------------------------------------------------------------------ versions
def train_version(services: Services, corpus: Corpus, args, labels_so_far: int) -> VersionRow:
    """A fine-tune from the base encoder on every label (the Train tab's default, shortened to
    --steps), then the admin activates it: re-scoring every example for the next round."""
    init = args.init if services.registry.active_version() is not None else "base"  # v1 has nothing to start from
    config = TrainConfig(epochs=100, max_steps=args.steps, batch_size=32, seed=args.seed, init_from=init)
    started = time.perf_counter()
    services.jobs.run_sync(config, user=ADMIN, activate=False)
    train_s = time.perf_counter() - started
    info = services.registry.versions()[0]
    started = time.perf_counter()
    services.jobs.activate(info.id, user=ADMIN, reason="bench: the round's version")
    services.jobs.wait_rescore()
    activate_s = time.perf_counter() - started
    proba = services.registry.active().predict_proba(corpus.test_texts, batch_size=128)
    pred = [services.settings.labels[i] for i in proba.argmax(1)]
    test_f1 = float(f1_score(corpus.test_gold, pred, average="macro"))
    return VersionRow(info.name, int(info.metrics.get("train_size", labels_so_far)), info.macro_f1, test_f1,
                      train_s, activate_s)


# ------------------------------------------------------------------------------ reports
def reports(services: Services, work) -> dict[str, object]:
    """The four reports as the admin sees them; a module that does not import is named instead."""
    out: dict[str, object] = {}
    makers = {"stopping": ("bertdemo.actions.stopping", "StoppingSignals", lambda c: c(services).report()),
              "curve": ("bertdemo.actions.learning_curve", "LearningCurves", lambda c: c(services).report()),
              "time": ("bertdemo.actions.annotation_time", "AnnotationTime",
                       lambda c: c(services, work).report(ADMIN, True)),
              "audit": ("bertdemo.actions.suggestion_audit", "SuggestionAudit",
                        lambda c: c(services).report(ADMIN, True))}
    for key, (module, cls, call) in makers.items():
        try:
            mod = __import__(module, fromlist=[cls])
            out[key] = call(getattr(mod, cls))
        except Exception as exc:  # a report that fails is reported; the others still run
            log.exception("%s failed", cls)
            out[key] = f"{type(exc).__name__}: {exc}"
    return out


def script_truth(decisions: list[Decision], labels: tuple[str, ...]) -> dict:
    """What the script did, per condition: label shares, accuracy against gold, agreement with the
    suggestion; per person: acceptance rate over shown items."""
    out: dict = {"conditions": {}, "people": {}}
    for cond in ("shown", "hidden", "none"):
        ds = [d for d in decisions if d.condition == cond]
        if not ds:
            continue
        c = Counter(d.label for d in ds)
        agree = [d.label == d.suggested for d in ds if d.suggested]
        out["conditions"][cond] = {
            "labels": len(ds), "distribution": {lab: round(c[lab] / len(ds), 4) for lab in labels},
            "accuracy_vs_gold": round(sum(d.label == d.gold for d in ds) / len(ds), 4),
            "agree_model": round(float(np.mean(agree)), 4) if agree else None,
            "model_right": round(float(np.mean([d.suggested == d.gold for d in ds if d.suggested])), 4) if agree else None}
    for name in sorted({d.user for d in decisions}):
        shown = [d for d in decisions if d.user == name and d.condition == "shown"]
        out["people"][name] = {"shown": len(shown), "accepted": sum(d.accepted for d in shown),
                               "rate": round(sum(d.accepted for d in shown) / len(shown), 4) if shown else None}
    return out


def stored_kappas(services: Services) -> list[float]:
    """Dry runs: Cohen's kappa of consecutive versions' stored predictions on every example (the
    panel's kappa chain, actions/stopping.kappa_steps, over the scores instead of the pool)."""
    from bertdemo.actions.stopping import kappa_steps
    from bertdemo.db.models import Score

    series = []
    for info in reversed(services.registry.versions()):
        with Session(services.engine) as s:
            series.append((info.name, dict(s.execute(select(Score.example_id, Score.predicted)
                                                     .where(Score.version_id == info.id)).all())))
    return [round(step.kappa, 4) for step in kappa_steps(series)]


def two_proportion_p(p1: float, n1: int, p2: float, n2: int) -> float | None:
    """Two-sided p of a difference in two proportions (pooled z-test), for agreement with the model."""
    from scipy.stats import norm

    if min(n1, n2) == 0:
        return None
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)) ** 0.5
    return float(2 * norm.sf(abs(p1 - p2) / se)) if se > 0 else None


def fmt(x, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def print_versions(rows: list[VersionRow], stopping) -> None:
    kappa = {st.version: st.kappa for st in getattr(stopping, "steps", ())}
    print("| version | labels trained on | macro-F1 (app, validation split) | macro-F1 (held-out gold) "
          "| kappa with previous (pool) | train s | activate + re-score s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.labels} | {fmt(r.macro_f1)} | {r.test_f1:.3f} | {fmt(kappa.get(r.name))} | "
              f"{r.train_s:.0f} | {r.activate_s:.0f} |")


def print_stopping(stopping, alt: float) -> None:
    if isinstance(stopping, str):
        print(f"stopping signals: {stopping}")
        return
    steps = list(stopping.steps)
    print(f"\nKappa rule (threshold {stopping.threshold}, window {stopping.window}, pool {stopping.pool_size}): "
          f"{stopping.message} (stable since: {stopping.stable_since}; mean kappa {fmt(stopping.mean_kappa, '.4f')})")
    at = stable_from([st.kappa for st in steps], alt, stopping.window)  # the panel's rule at another threshold
    since = steps[at].version if at is not None else None
    print(f"  the same rule at threshold {alt}: " + (f"stable since {since}" if since else "still changing"))


def print_curve(curve) -> None:
    if isinstance(curve, str):
        print(f"learning curve: {curve}")
        return
    for c in curve.curves:
        params = "none" if c.params is None else "a={:.3f} b={:.3f} c={:.3f}".format(*c.params)
        fc = "; ".join(f"+{f.extra} ({f.labels} labels): {f.macro_f1:.3f} [{f.low:.3f}, {f.high:.3f}]"
                       for f in c.forecasts)
        print(f"\nLearning curve [{c.dataset}]: f(n) = a - b n^-c, {params}; forecast {fc or '-'}\n  {c.message}")


def print_time(tr) -> None:
    if isinstance(tr, str):
        print(f"annotation time: {tr}")
        return
    print("\n| person | labels | median s | p90 s | per hour | last hour | last day |\n|---|---|---|---|---|---|---|")
    for p in tr.people:
        print(f"| {p.user} | {p.labels} | {fmt(p.median_s, '.1f')} | {fmt(p.p90_s, '.1f')} | {fmt(p.per_hour, '.0f')} "
              f"| {p.last_hour} | {p.last_day} |")
    print(f"team median {fmt(tr.team_median_s, '.1f')} s; last hour {tr.team_last_hour}, last day {tr.team_last_day}; "
          f"{tr.items_left} items left x {tr.annotations_per_item} = {tr.annotations_left} annotations, "
          f"{fmt(tr.hours_left, '.1f')} person-hours at the median "
          f"({fmt(getattr(tr, 'hours_left_at_pace', None), '.1f')} h at the last day's pace)\n  {tr.message}")


def print_audit(audit, truth: dict, labels: tuple[str, ...]) -> dict:
    """The audit against the script's truth; what it detected."""
    if isinstance(audit, str):
        print(f"suggestion audit: {audit}")
        return {}
    print("\n| condition | labels | " + " | ".join(labels) + " | agrees with model | median s | script: accuracy "
          "vs gold |\n|---|---|" + "---|" * len(labels) + "---|---|---|")
    for cs in (audit.shown, audit.hidden):
        acc = truth["conditions"].get(cs.condition, {}).get("accuracy_vs_gold")
        print(f"| {cs.condition} | {cs.labels} | " + " | ".join(fmt(cs.distribution.get(x)) for x in labels)
              + f" | {fmt(cs.agree_model)} | {fmt(cs.median_s, '.1f')} | {fmt(acc)} |")
    agree_p = None
    if audit.shown.agree_model is not None and audit.hidden.agree_model is not None:
        agree_p = two_proportion_p(audit.shown.agree_model, audit.shown.labels, audit.hidden.agree_model,
                                   audit.hidden.labels)
    print(f"distribution gap (total variation) {fmt(audit.distribution_gap)}, chi-square p {fmt(audit.p_value, '.2g')}; "
          f"agreement with the model shown - hidden {fmt(_diff(audit.shown.agree_model, audit.hidden.agree_model))}"
          f" (two-proportion p {fmt(agree_p, '.2g')})\n  {audit.message}")
    print("\n| person | shown | hidden | accepted | acceptance (script) | fast accepts | longest fast run | flagged |"
          "\n|---|---|---|---|---|---|---|---|")
    for p in audit.people:
        scripted = truth["people"].get(p.user, {}).get("rate")
        print(f"| {p.user} | {p.shown} | {p.hidden} | {p.accepted} | {fmt(p.acceptance_rate)} ({fmt(scripted)}) | "
              f"{p.fast_accepts} | {p.longest_fast_run} | {p.flagged} |")
    return {"distribution": audit.p_value is not None and audit.p_value < 0.05,
            "agreement_with_model": agree_p is not None and agree_p < 0.05, "agreement_p": agree_p,
            "flagged": sorted(p.user for p in audit.people if p.flagged)}


def _diff(a, b):
    return None if a is None or b is None else a - b


def as_api(x):
    return x if isinstance(x, str) else x.as_api()


def plot(rows: list[VersionRow], curve, stopping, alt: float, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    c = None if isinstance(curve, str) else curve.curves[0]
    if c is not None:
        pts = [p for p in c.points]
        left.plot([p.labels for p in pts], [p.macro_f1 for p in pts], "o", label="app: validation split")
        if c.params is not None:
            xs = np.linspace(min(p.labels for p in pts), max(p.labels for p in pts) + 500, 200)
            left.plot(xs, c.predict(xs), "-", label="fit a - b n^-c")
            left.errorbar([f.labels for f in c.forecasts], [f.macro_f1 for f in c.forecasts],
                          yerr=[[f.macro_f1 - f.low for f in c.forecasts], [f.high - f.macro_f1 for f in c.forecasts]],
                          fmt="s", capsize=4, label="forecast, 80% interval")
    left.plot([r.labels for r in rows], [r.test_f1 for r in rows], "^", label="held-out gold tweets")
    left.set_xlabel("labels trained on")
    left.set_ylabel("macro-F1")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    if not isinstance(stopping, str) and stopping.steps:
        right.plot([st.version for st in stopping.steps], [st.kappa for st in stopping.steps], "o-", label="kappa")
        right.axhline(stopping.threshold, ls="--", color="grey", label=f"threshold {stopping.threshold}")
        right.axhline(alt, ls=":", color="grey", label=f"threshold {alt}")
    right.set_xlabel("version (kappa with the previous one, on the stopping pool)")
    right.set_ylabel("Cohen's kappa")
    right.grid(alpha=0.3)
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="rounds of labels, one version after each")
    ap.add_argument("--per-round", type=int, default=200, help="labels per round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--accept", type=float, default=0.6, help="chance an annotator accepts a shown suggestion")
    ap.add_argument("--error", type=float, default=0.1, help="chance an own answer is a wrong label")
    ap.add_argument("--share", type=float, default=0.2, help="the audit's share of hidden suggestions")
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps of each version's fine-tune (batch 32)")
    ap.add_argument("--init", choices=("base", "active"), default="base",
                    help="each version starts from the base encoder (the default recipe) or the active version")
    ap.add_argument("--annotators", type=int, default=3, choices=(1, 2, 3))
    ap.add_argument("--corpus", type=int, default=2500, help="airline tweets imported without labels")
    ap.add_argument("--test", type=int, default=1000, help="other airline tweets held out for a gold macro-F1")
    ap.add_argument("--pool", type=int, default=1000, help="stopping pool size (Settings.stop_pool_size)")
    ap.add_argument("--kappa-alt", type=float, default=0.9, help="a second threshold the kappa rule is read at")
    ap.add_argument("--out", type=Path, default=HERE / "labelling_value.jsonl")
    ap.add_argument("--plot", type=Path, default=HERE / "labelling_value.png")
    ap.add_argument("--dry-run", action="store_true", help="no reports, no output files (tries the harness)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    return ap.parse_args()


def simulate(services: Services, corpus: Corpus, args) -> tuple[list[VersionRow], list[Decision], object]:
    labelling, work = make_labelling(services, args.seed)
    rng = np.random.default_rng(args.seed)
    args.labels = labelling.labels
    clock, decisions, rows = Clock(), [], []
    team = TEAM[:args.annotators]
    for rnd in range(1, args.rounds + 1):
        started = time.perf_counter()
        decisions += label_round(labelling, corpus, clock, args.per_round, args, rng, team)
        label_s = time.perf_counter() - started
        rows.append(train_version(services, corpus, args, len(decisions)))
        r = rows[-1]
        clock.t += r.train_s + r.activate_s  # the team waits for the new version
        clock.free_at = dict.fromkeys(clock.free_at, clock.t)
        shown = Counter(d.condition for d in decisions[-args.per_round:])
        log.info("round %d: %d labels (%s) in %.0f s; %s trained in %.0f s, activated + re-scored in %.0f s, "
                 "macro-F1 %s (held-out %.3f)", rnd, len(decisions), dict(shown), label_s, r.name, r.train_s,
                 r.activate_s, fmt(r.macro_f1), r.test_f1)
    return rows, decisions, work


def main() -> int:
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "bertdemo", "alembic", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-value-"))
    services = make_services(data_dir, args)
    try:
        corpus = load_corpus(services, args)
        share = set_share(services, args.share)
        log.info("%d tweets imported unlabelled, %d held out; audit share %s; data dir %s", len(corpus.ids),
                 len(corpus.test_texts), share, data_dir)
        rows, decisions, work = simulate(services, corpus, args)
        written = rewrite_times(services, decisions)
        if args.dry_run:
            print(script_truth(decisions, services.settings.labels))
            print("kappa of stored predictions (all examples), consecutive versions:", stored_kappas(services))
            return 0
        got = reports(services, work)
        seconds = time.perf_counter() - started
        report_all(args, rows, decisions, got, services.settings.labels, (seconds, written, share))
    finally:
        services.engine.dispose()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


def report_all(args, rows, decisions, got, labels, extra) -> None:
    """Print the tables, append the JSON line, save the figure."""
    seconds, written, share = extra
    cpu, day = cpu_model(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    truth = script_truth(decisions, labels)
    print(f"\n{day}, {cpu}; {args.rounds} rounds x {args.per_round} labels by {args.annotators} annotators "
          f"(accept {args.accept}, error {args.error}), audit share {share}, {args.steps} steps per version; "
          f"corpus {args.corpus}, held-out {args.test}; run {seconds:.0f} s; times written for {written[0]} saves, "
          f"{written[1]} hand-outs\n")
    print_versions(rows, got["stopping"])
    print_stopping(got["stopping"], args.kappa_alt)
    print_curve(got["curve"])
    print_time(got["time"])
    detected = print_audit(got["audit"], truth, labels)
    print(f"\nscript's truth: {json.dumps(truth['conditions'])}\ndetected: {json.dumps(detected)}")
    settings = {k: getattr(args, k) for k in ("rounds", "per_round", "seed", "accept", "error", "share", "steps", "init",
                                              "annotators", "corpus", "test", "pool")}
    record = {"date": day, "cpu": cpu, "settings": settings, "seconds": round(seconds, 1),
              "versions": [dataclasses.asdict(r) for r in rows], "truth": truth, "detected": detected,
              **{k: as_api(v) for k, v in got.items()}}
    with args.out.open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")
    plot(rows, got["curve"], got["stopping"], args.kappa_alt, args.plot,
         f"{args.rounds} rounds x {args.per_round}, accept {args.accept}, error {args.error}, share {args.share} ({cpu})")
    print(f"\nwrote {args.out} and {args.plot}")


if __name__ == "__main__":
    raise SystemExit(main())
