"""Out-of-domain evaluation of training recipes (issue 23): leave one topic out.

The bundled tweets cover five topics (airline, self-driving cars, Coachella 2015, Apple, Claritin).
Each fold trains a recipe from the packaged encoder with the app's loop on every topic but one and
scores the one left out (bertdemo/training/topics.py); 10% of the airline tweets are held out of
every fold's training, which gives the in-domain airline figure (mean over the four folds that
train on airline tweets). Every fold's rows are drawn once (--budget rows stratified by topic and
label, seed 42), so recipes and seeds are compared on the same rows (paired).

Each (recipe, seed, fold) appends one JSON line to RESULTS/runs.jsonl and its test probabilities to
RESULTS/probs/ (post-hoc analyses without retraining); a rerun skips what is there. --report
prints the tables from it: per topic, the mean of the five and the worst, the mean with every test
class weighted equally ("balanced"), the in-domain airline figure, the seed-to-seed spread, and the
ensemble of a recipe's seeds (the bound for distilling or averaging several fine-tunes into one).

    .venv/bin/python bench/ood.py --recipes default la1 --seeds 1 2 3 [--budget 3000] [--results DIR]
    .venv/bin/python bench/ood.py --report [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.config import Settings  # noqa: E402
from bertdemo.db.models import Example, now  # noqa: E402
from bertdemo.services import Services  # noqa: E402
from bertdemo.training import loop  # noqa: E402
from bertdemo.training.config import TrainConfig, TrainingData  # noqa: E402
from bertdemo.training.topics import macro_f1, topic_folds  # noqa: E402
from bertdemo.training.weights import example_weights  # noqa: E402

TOPICS = ("airline", "self_driving_cars", "coachella_2015", "apple", "claritin")
BOTH, AIRLINE = ("airline", "general"), ("airline",)
# the default before issue 23 (round three of bench/recipes.py), scored on its final weights
OLD = TrainConfig(evals_per_epoch=1, logit_adjustment=0.0)
RECIPES = {  # name -> (datasets trained on, config): each changes one thing of the old default unless named
    "default": (BOTH, OLD),
    "la1": (BOTH, replace(OLD, logit_adjustment=1.0)),  # the default since issue 23
    "la0.5": (BOTH, replace(OLD, logit_adjustment=0.5)),
    "la1-general1.0": (BOTH, replace(OLD, logit_adjustment=1.0, general_weight=1.0)),
    "class-weighted": (BOTH, replace(OLD, class_weighted=True)),
    "ls0.1": (BOTH, replace(OLD, label_smoothing=0.1)),
    "cls": (BOTH, replace(OLD, pooling="cls")),
    "general1.0": (BOTH, replace(OLD, general_weight=1.0)),
    "no-conf": (BOTH, replace(OLD, confidence_weighted=False)),
    "lr5e-5": (BOTH, replace(OLD, learning_rate=5e-5)),
    "2ep": (BOTH, replace(OLD, epochs=2.0)),
    "airline-only": (AIRLINE, OLD),
    # issue 23's plain reference fine-tune: airline only, class-weighted loss, [CLS] pooler, lr 5e-5, 2 epochs
    "reference": (AIRLINE, replace(OLD, class_weighted=True, pooling="cls", learning_rate=5e-5, epochs=2.0,
                                   dropout=None, confidence_weighted=False, keep_class_shares=False)),
}
assert RECIPES["la1"][1] == TrainConfig(evals_per_epoch=1), "the app's default is the recipe la1"


def load(settings: Settings) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """texts, label ids, datasets, topics and crowd confidences of the bundled tweets, imported as
    the app imports them (cleaned, de-duplicated)."""
    services = Services.create(settings)
    services.ensure_dataset()
    with Session(services.engine) as s:
        rows = s.execute(select(Example.text, Example.label, Example.dataset, Example.meta)
                         .where(Example.label.is_not(None)).order_by(Example.id)).all()
    services.engine.dispose()
    labels = settings.labels
    meta = [m if isinstance(m, dict) else {} for *_r, m in rows]
    topics = np.array([m.get("topic") or d for (_t, _l, d, _m), m in zip(rows, meta)], dtype=object)
    conf = np.array([m.get("label_confidence") for m in meta], dtype=object)
    return ([t for t, *_r in rows], np.array([labels.index(lab) for _t, lab, *_r in rows]),
            np.array([d for _t, _l, d, _m in rows], dtype=object), topics, conf)


def run_fold(settings: Settings, config: TrainConfig, sets: tuple[str, ...], fold, texts, y, datasets,  # noqa: ANN001
             conf, soup: tuple[int, ...] = ()) -> dict:
    """Train one recipe on one fold; the probabilities on its test and in-domain rows. soup: train one
    model per seed there from the same new head (config.seed's) and score the average of their weights
    (a uniform model soup, Wortsman et al. 2022): one served model from several fine-tunes."""
    train = np.array([i for i in fold.train if datasets[i] in sets])
    if len(train) == 0:
        return {}
    w = example_weights([conf[i] if config.confidence_weighted else None for i in train], datasets[train], y[train],
                        config.general_weight, config.keep_class_shares)
    weighted = config.confidence_weighted or config.general_weight != 1.0
    data = TrainingData([texts[i] for i in train], y[train], [texts[i] for i in fold.val], y[fold.val],
                        w if weighted else None)
    clf = loop.start_model(settings.model_source, settings.labels, settings.device, config.max_length, config)
    start = time.perf_counter()
    if soup:
        head = {k: v.clone() for k, v in clf.model.state_dict().items()}
        members = []
        for seed in soup:
            clf.model.load_state_dict(head)
            loop.fit(clf, data, replace(config, seed=seed))
            members.append({k: v.detach().clone() for k, v in clf.model.state_dict().items()})
        clf.model.load_state_dict({k: sum(m[k].float() for m in members).div(len(members)).to(v.dtype)
                                   if v.is_floating_point() else v for k, v in members[0].items()})
    else:
        loop.fit(clf, data, config)
    seconds = time.perf_counter() - start
    prior = np.bincount(y[train], weights=w if weighted else None, minlength=len(settings.labels))
    out = {"train_n": len(train), "train_s": round(seconds, 1), "prior": (prior / prior.sum()).tolist(),
           "test": clf.predict_proba([texts[i] for i in fold.test], batch_size=128)}
    if len(fold.in_domain):
        out["in_domain"] = clf.predict_proba([texts[i] for i in fold.in_domain], batch_size=128)
    return out


def scores(probs: np.ndarray, y: np.ndarray, n: int) -> dict:
    pred = probs.argmax(1)
    return {"macro_f1": macro_f1(y, pred, n), "balanced_f1": macro_f1(y, pred, n, balanced=True),
            "accuracy": float((pred == y).mean())}


def run(args: argparse.Namespace) -> None:
    results = Path(args.results)
    (results / "probs").mkdir(parents=True, exist_ok=True)
    log = results / "runs.jsonl"
    done = {(r["recipe"], r["seed"], r["topic"]) for r in _rows(log)}
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="bench-ood-")) / "runtime", bootstrap=False)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    texts, y, datasets, topics, conf = load(settings)
    folds = topic_folds(topics, y, budget=args.budget, test_cap=args.test_cap)
    n = len(settings.labels)
    np.savez(results / "probs" / "labels.npz", **{f.topic: y[f.test] for f in folds},
             in_domain=y[folds[1].in_domain])
    for base in args.recipes:
        sets, config = RECIPES[base]
        name = f"{base}+soup{len(args.soup)}" if args.soup else base
        for seed in args.seeds:
            for fold in folds:
                if (name, seed, fold.topic) in done or (args.topics and fold.topic not in args.topics):
                    continue
                out = run_fold(settings, replace(config, seed=seed), sets, fold, texts, y, datasets, conf,
                               tuple(s + 100 * seed for s in args.soup))
                row = {"recipe": name, "seed": seed, "topic": fold.topic, "budget": args.budget,
                       "at": f"{now():%Y-%m-%d %H:%M}", "cpu": _cpu(), "config": asdict(replace(config, seed=seed))}
                if out:
                    stem = f"{name}-{seed}-{fold.topic}"
                    np.savez(results / "probs" / f"{stem}.npz", test=out["test"], in_domain=out.get("in_domain"),
                             prior=out["prior"])
                    row |= {k: out[k] for k in ("train_n", "train_s", "prior")} | scores(out["test"], y[fold.test], n)
                    if "in_domain" in out:
                        row["in_domain"] = scores(out["in_domain"], y[fold.in_domain], n)
                with log.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(json.dumps({k: row.get(k) for k in ("recipe", "seed", "topic", "train_n", "train_s", "macro_f1",
                                                          "balanced_f1")}), flush=True)


def _rows(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def report(args: argparse.Namespace) -> None:
    results = Path(args.results)
    rows = [r for r in _rows(results / "runs.jsonl") if "macro_f1" in r]
    labels = np.load(results / "probs" / "labels.npz", allow_pickle=True)
    by = defaultdict(dict)  # recipe -> {(seed, topic): row}
    for r in rows:
        by[r["recipe"]][(r["seed"], r["topic"])] = r
    cpus = sorted({r["cpu"] for r in rows})
    print(f"CPU: {', '.join(cpus)}; budget {sorted({r['budget'] for r in rows}, key=str)} training rows per fold\n")
    head = " | ".join(t.replace("_", " ") for t in TOPICS)
    print(f"| recipe | seeds | {head} | OOD mean (± sd over seeds) | worst | OOD mean, balanced | 4 general topics "
          "| airline in-domain | train s |")
    print("|---|---|" + "---|" * (len(TOPICS) + 6))
    for name, cells in by.items():
        seeds = sorted({s for s, _t in cells})
        full = [s for s in seeds if all((s, t) in cells for t in TOPICS)]
        general = [s for s in seeds if all((s, t) in cells for t in TOPICS[1:])]
        use = full or general
        if not use:
            continue
        topics = TOPICS if full else TOPICS[1:]
        per_topic = {t: np.mean([cells[(s, t)]["macro_f1"] for s in use]) for t in topics}
        means = [np.mean([cells[(s, t)]["macro_f1"] for t in topics]) for s in use]
        bal = [np.mean([cells[(s, t)]["balanced_f1"] for t in topics]) for s in use]
        gen = [np.mean([cells[(s, t)]["macro_f1"] for t in TOPICS[1:]]) for s in general]
        ind = [cells[(s, t)]["in_domain"]["macro_f1"] for s in use for t in TOPICS[1:] if "in_domain" in cells[(s, t)]]
        secs = [cells[(s, t)]["train_s"] for s in use for t in topics]
        cols = " | ".join(f"{per_topic[t]:.3f}" if t in per_topic else "–" for t in TOPICS)
        sd = f" ± {np.std(means, ddof=1):.3f}" if len(means) > 1 else ""
        print(f"| {name} | {len(use)} | {cols} | **{np.mean(means):.3f}**{sd} | {min(per_topic.values()):.3f} "
              f"| {np.mean(bal):.3f} | {np.mean(gen):.3f} | {np.mean(ind):.3f} | {np.mean(secs):.0f} |")
        plain = name in RECIPES and not (RECIPES[name][1].logit_adjustment or RECIPES[name][1].class_weighted)
        if plain:
            _derived_row(f"... post hoc, log prior subtracted | {len(use)}",
                         _per_topic(results, name, use, topics, labels, _posthoc_f1))
        if len(use) > 1:
            _derived_row(f"... ensemble of its {len(use)} seeds |",
                         _per_topic(results, name, use, topics, labels, _ensemble_f1))


def _per_topic(results: Path, name: str, seeds: list[int], topics: tuple[str, ...], labels,  # noqa: ANN001
               score) -> dict | None:  # noqa: ANN001
    """{topic: score(the seeds' saved runs on it, its gold labels)}, None when a run's file is missing."""
    out = {}
    for t in topics:
        paths = [results / "probs" / f"{name}-{s}-{t}.npz" for s in seeds]
        if not all(p.exists() for p in paths):
            return None
        out[t] = score([np.load(p, allow_pickle=True) for p in paths], labels[t])
    return out


def _posthoc_f1(runs: list, y: np.ndarray) -> float:
    """Macro-F1 (mean over the runs) when each run's log training prior is subtracted from its
    log-probabilities at prediction time (post-hoc logit adjustment, tau 1): the serving-time version
    of the logit-adjusted loss, for recipes trained without it."""
    f1s = []
    for z in runs:
        adjusted = np.log(np.clip(z["test"], 1e-12, None)) - np.log(np.asarray(z["prior"], dtype=float))
        f1s.append(macro_f1(y, adjusted.argmax(1), adjusted.shape[1]))
    return float(np.mean(f1s))


def _ensemble_f1(runs: list, y: np.ndarray) -> float:
    """Macro-F1 of the mean probability over the runs."""
    probs = np.mean([z["test"] for z in runs], axis=0)
    return macro_f1(y, probs.argmax(1), probs.shape[1])


def _derived_row(head: str, per: dict | None) -> None:
    """A report row computed from saved probabilities: per topic, the mean and the worst."""
    if per is None:
        return
    print(f"| {head} | " + " | ".join(f"{per[t]:.3f}" if t in per else "–" for t in TOPICS)
          + f" | {np.mean(list(per.values())):.3f} | {min(per.values()):.3f} | | | | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="*", default=["default"], choices=sorted(RECIPES))
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    ap.add_argument("--budget", type=int, default=3000, help="training rows per fold (0: the whole pool)")
    ap.add_argument("--test-cap", type=int, default=3000, help="test rows per left-out topic (stratified)")
    ap.add_argument("--topics", nargs="*", choices=TOPICS, help="only these left-out topics (default: all)")
    ap.add_argument("--results", default="/tmp/bench-ood")
    ap.add_argument("--soup", nargs="*", type=int, default=[],
                    help="per seed, train one member per value (seed + 100 x value) and score their averaged weights")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    args.budget = args.budget or None
    report(args) if args.report else run(args)


if __name__ == "__main__":
    main()
