"""Active-learning simulation: which query strategy should the Annotate tab's default queue use?

    python bench/al_sim.py [--seeds 3] [--pool 2000] [--test 1000] [--seed-size 100] [--rounds 8]
                           [--batch 50] [--finetune-every 4] [--out bench/al_sim.jsonl] [--plot bench/al_sim.png]

A scripted annotator answers from the bundled airline gold labels. Each (strategy, seed) run starts
from a stratified seed set of `--seed-size` pool tweets and labels `--batch` more per round. After
every round the quick model is refitted, as the app does (training/quick.py's logistic regression,
same solver settings, warm-started, on the current version's sentence embeddings), and its
macro-F1 on a fixed held-out airline test set is recorded. Every `--finetune-every` rounds a short
fine-tune (the app's loop, training/loop.py, from the base encoder) on the labels so far becomes
the new "version": the pool and test tweets are embedded with it and its scores become the stale
scores. Version 0 is the first-start quick version: the frozen encoder's embeddings and a
regression fitted on the seed set.

Strategies: random; entropy over the version's stored (stale) scores, as the queue ranked before
the quick model; entropy, breaking ties (smallest margin) and BADGE (model/strategies.py) over the
fresh quick model. Results go to a JSONL file, one line per (strategy, seed, round); a rerun skips
the runs already complete with the same settings (resumable). Prints the table (macro-F1 mean ±
sd over seeds at each label count, and the area under the curve normalised to the label range)
with the CPU model, and writes a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sklearn.metrics import f1_score

from bertdemo.config import BUNDLED_DATASET, Settings
from bertdemo.datasets import load_bundled, stratified_split
from bertdemo.model import strategies
from bertdemo.training.quick import MAX_ITER, TOLERANCE
from bertdemo.training.quick_first import stratified_sample

STRATEGIES = ("random", "entropy-stale", "entropy", "margin", "badge")
NAMES = {"random": "random", "entropy-stale": "entropy (stale version scores)",
         "entropy": "entropy (fresh quick model)", "margin": "breaking ties (fresh)",
         "badge": "BADGE (fresh, diverse)"}
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Corpus:
    """The simulation's fixed data: pool and test texts with their gold class indices."""
    pool_texts: list[str]
    pool_y: np.ndarray
    test_texts: list[str]
    test_y: np.ndarray
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Version:
    """A model version as the simulation sees it: its sentence embeddings and stored scores."""
    pool_x: np.ndarray  # (P, d) unit-length embeddings of the pool
    test_x: np.ndarray  # (T, d)
    pool_probs: np.ndarray  # (P, C) the version's own probabilities: the stale scores
    test_f1: float | None  # the version's own macro-F1 on the test set (None: version 0)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_corpus(pool: int, test: int) -> Corpus:
    settings = Settings.from_env()
    rows = load_bundled(BUNDLED_DATASET, settings.max_chars)
    labels = tuple(settings.labels)
    y = np.array([labels.index(r.label) for r in rows])
    _rest, picked = stratified_split(y, min((pool + test) / len(rows), 0.99), seed=0)
    pool_idx, test_idx = stratified_split(y[picked], test / len(picked), seed=1)
    pool_idx, test_idx = picked[pool_idx], picked[test_idx]
    return Corpus([rows[i].text for i in pool_idx], y[pool_idx], [rows[i].text for i in test_idx], y[test_idx],
                  labels)


def embed(clf, corpus: Corpus) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pool probs, pool vectors, test probs, test vectors) from one pass, as re-scoring does."""
    probs, vecs = clf.scores_and_embeddings(corpus.pool_texts + corpus.test_texts)
    p = len(corpus.pool_texts)
    return probs[:p], vecs[:p], probs[p:], vecs[p:]


def quick_fit(x: np.ndarray, y: np.ndarray, n_labels: int, previous=None):
    """The app's quick model (training/quick.py): warm-started lbfgs logistic regression, 1 thread."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    model = previous if previous is not None and set(np.unique(y)) == set(previous.classes_) else \
        LogisticRegression(tol=TOLERANCE, max_iter=MAX_ITER, warm_start=True)
    with threadpool_limits(1):
        model.fit(x, y)
    return model


def probs_of(model, x: np.ndarray, n_labels: int) -> np.ndarray:
    p = np.zeros((len(x), n_labels))
    p[:, model.classes_] = model.predict_proba(x)
    return p


def fine_tune(base: str, corpus: Corpus, labelled: np.ndarray, args, seed: int) -> Version:
    """A short fine-tune of the base encoder on the labels so far (the app's loop), then one
    embedding pass over pool + test: the new version's embeddings and stale scores."""
    from bertdemo.training.config import TrainConfig, TrainingData
    from bertdemo.training.loop import fit, start_model

    cfg = TrainConfig(epochs=args.ft_epochs, max_steps=args.ft_steps, batch_size=16, evals_per_epoch=1, seed=seed,
                      max_length=64)
    clf = start_model(base, corpus.labels, args.device, cfg.max_length, cfg)
    y = corpus.pool_y[labelled]
    tr, va = stratified_split(y, 0.1, seed=seed)
    texts = [corpus.pool_texts[i] for i in labelled]
    fit(clf, TrainingData([texts[i] for i in tr], y[tr], [texts[i] for i in va], y[va]), cfg)
    pool_p, pool_x, test_p, test_x = embed(clf, corpus)
    f1 = f1_score(corpus.test_y, test_p.argmax(1), average="macro")
    return Version(pool_x, test_x, pool_p, float(f1))


def select(strategy: str, version: Version, quick_probs: np.ndarray, unlabelled: np.ndarray, k: int,
           rng: np.random.Generator) -> np.ndarray:
    """The next `k` pool rows to label."""
    if strategy == "random":
        return rng.choice(unlabelled, min(k, len(unlabelled)), replace=False)
    if strategy == "entropy-stale":
        return np.asarray(strategies.rank(unlabelled, version.pool_probs[unlabelled], "entropy")[:k])
    if strategy in ("entropy", "margin"):
        return np.asarray(strategies.rank(unlabelled, quick_probs[unlabelled], strategy)[:k])
    return np.asarray(strategies.badge(unlabelled, quick_probs[unlabelled], version.pool_x[unlabelled], k,
                                       seed=int(rng.integers(2**31))))


def run_one(strategy: str, seed: int, corpus: Corpus, v0_x: tuple[np.ndarray, np.ndarray], args, emit) -> None:
    """One (strategy, seed) run; `emit(record)` is called after every round."""
    n_labels = len(corpus.labels)
    rng = np.random.default_rng(seed)
    labelled = np.asarray(stratified_sample(corpus.pool_y.tolist(), args.seed_size, seed=seed))
    quick = quick_fit(v0_x[0][labelled], corpus.pool_y[labelled], n_labels)
    version = Version(v0_x[0], v0_x[1], probs_of(quick, v0_x[0], n_labels), None)  # the first-start quick version
    for rnd in range(args.rounds + 1):
        started = time.perf_counter()
        if rnd:
            if args.finetune_every and rnd % args.finetune_every == 0 and rnd < args.rounds:
                version = fine_tune(args.base, corpus, labelled, args, seed)
                quick = None  # another version's embeddings: the app starts a fresh fit
            quick = quick_fit(version.pool_x[labelled], corpus.pool_y[labelled], n_labels, quick)
        quick_probs = probs_of(quick, version.pool_x, n_labels)
        f1 = f1_score(corpus.test_y, probs_of(quick, version.test_x, n_labels).argmax(1), average="macro")
        emit({"strategy": strategy, "seed": seed, "round": rnd, "labels": len(labelled), "macro_f1": float(f1),
              "version_f1": version.test_f1, "seconds": round(time.perf_counter() - started, 2)})
        if rnd == args.rounds:
            break
        mask = np.ones(len(corpus.pool_y), bool)
        mask[labelled] = False
        picked = select(strategy, version, quick_probs, np.flatnonzero(mask), args.batch, rng)
        labelled = np.concatenate([labelled, picked])  # the scripted annotator answers from the gold labels


def settings_key(args) -> dict:
    """The settings a record depends on: a rerun with other settings does not reuse it."""
    return {k: getattr(args, k) for k in ("pool", "test", "seed_size", "rounds", "batch", "finetune_every",
                                          "ft_epochs", "ft_steps", "device")}


def load_done(path: Path, key: dict) -> dict[tuple[str, int], list[dict]]:
    """{(strategy, seed): records} of the complete runs in `path` with these settings."""
    runs: dict[tuple[str, int], dict[int, dict]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
            if rec.get("settings") == key:
                runs.setdefault((rec["strategy"], rec["seed"]), {})[rec["round"]] = rec
    rounds = key["rounds"]
    return {run: [recs[r] for r in range(rounds + 1)] for run, recs in runs.items()
            if all(r in recs for r in range(rounds + 1))}


def auc(labels: list[int], f1: list[float]) -> float:
    """Area under macro-F1 against labels, divided by the label range: the mean F1 over the run."""
    x, y = np.asarray(labels, float), np.asarray(f1, float)
    return float(((y[1:] + y[:-1]) / 2 * np.diff(x)).sum() / (x[-1] - x[0]))


def curves(done: dict[tuple[str, int], list[dict]], strategies_run: list[str]):
    """Per strategy with complete runs: (strategy, label counts, (seeds, rounds) macro-F1 array)."""
    for st in strategies_run:
        runs = [recs for (s, _seed), recs in sorted(done.items()) if s == st]
        if runs:
            yield st, [r["labels"] for r in runs[0]], np.array([[r["macro_f1"] for r in recs] for recs in runs])


def table(done: dict[tuple[str, int], list[dict]], strategies_run: list[str]) -> tuple[str, dict[str, float]]:
    """The markdown table (mean ± sd over seeds) and each strategy's mean AUC."""
    counts = None
    lines, aucs = [], {}
    for st, counts, f1 in curves(done, strategies_run):
        a = np.array([auc(counts, row) for row in f1])
        aucs[st] = float(a.mean())
        cells = [f"{m:.3f} ± {sd:.3f}" for m, sd in zip(f1.mean(0), f1.std(0, ddof=1) if len(f1) > 1 else 0 * f1[0])]
        sd_auc = a.std(ddof=1) if len(a) > 1 else 0.0
        lines.append(f"| {NAMES[st]} | {len(f1)} | " + " | ".join(cells) + f" | **{a.mean():.4f}** ± {sd_auc:.4f} |")
    if counts is None:
        return "(no complete runs)", aucs
    head = "| strategy | seeds | " + " | ".join(f"{c} labels" for c in counts) + " | AUC (mean F1) |"
    sep = "|---|---|" + "---|" * len(counts) + "---|"
    return "\n".join([head, sep, *lines]), aucs


def plot(done: dict[tuple[str, int], list[dict]], strategies_run: list[str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=90)
    for st, x, f1 in curves(done, strategies_run):
        m, sd = f1.mean(0), f1.std(0)
        ax.plot(x, m, marker="o", ms=3, label=f"{NAMES[st]} ({len(f1)} seeds)")
        ax.fill_between(x, m - sd, m + sd, alpha=0.15)
    ax.set_xlabel("labels")
    ax.set_ylabel("macro-F1, held-out airline test set")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="seeds per strategy (0, 1, ...)")
    ap.add_argument("--pool", type=int, default=2000, help="airline tweets the annotator may be asked about")
    ap.add_argument("--test", type=int, default=1000, help="held-out airline tweets the F1 is measured on")
    ap.add_argument("--seed-size", type=int, default=100, help="stratified seed set")
    ap.add_argument("--rounds", type=int, default=8, help="rounds of --batch labels after the seed set")
    ap.add_argument("--batch", type=int, default=50, help="labels per round")
    ap.add_argument("--finetune-every", type=int, default=4, help="rounds between fine-tunes (0: never)")
    ap.add_argument("--ft-epochs", type=float, default=3.0, help="epochs of each fine-tune")
    ap.add_argument("--ft-steps", type=int, default=50, help="at most this many steps per fine-tune")
    ap.add_argument("--only-seeds", default="", help="comma-separated seeds this process runs (two processes "
                    "may share the work; the table covers all --seeds)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated, of " + ", ".join(STRATEGIES))
    ap.add_argument("--out", type=Path, default=HERE / "al_sim.jsonl", help="JSONL results (resumed)")
    ap.add_argument("--plot", type=Path, default=HERE / "al_sim.png")
    ap.add_argument("--base", default="", help="base encoder (default: the app's)")
    ap.add_argument("--device", default="cpu", help="where the fine-tunes and embeddings run (cpu, cuda)")
    return ap.parse_args()


def main() -> None:
    args = parse()
    args.base = args.base or Settings.from_env().model_source
    wanted = [s for s in args.strategies.split(",") if s]
    unknown = set(wanted) - set(STRATEGIES)
    if unknown:
        raise SystemExit(f"unknown strategies: {', '.join(sorted(unknown))}")
    key = settings_key(args)
    done = load_done(args.out, key)
    mine = [int(x) for x in args.only_seeds.split(",") if x] or list(range(args.seeds))
    todo = [(st, seed) for seed in mine for st in wanted if (st, seed) not in done]
    started = time.perf_counter()
    if todo:
        from bertdemo.model.classifier import Classifier

        corpus = load_corpus(args.pool, args.test)
        base = Classifier.load(args.base, corpus.labels, args.device, 64)
        _pp, pool_x, _tp, test_x = embed(base, corpus)  # version 0: the frozen encoder's embeddings
        print(f"embedded {len(corpus.pool_texts) + len(corpus.test_texts)} tweets with the base encoder in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        with args.out.open("a") as f:
            def emit(rec: dict) -> None:
                f.write(json.dumps({**rec, "settings": key}) + "\n")
                f.flush()
            for st, seed in todo:
                if (st, seed) in load_done(args.out, key):  # another process did it meanwhile
                    continue
                t = time.perf_counter()
                run_one(st, seed, corpus, (pool_x, test_x), args, emit)
                print(f"{st} seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    done = load_done(args.out, key)
    runs = {k: v for k, v in done.items() if k[0] in wanted and k[1] < args.seeds}
    text, aucs = table(runs, wanted)
    cpu = cpu_model()
    print(f"\n{time.strftime('%Y-%m-%d', time.gmtime())}, {cpu}; pool {args.pool}, test {args.test}, seed set "
          f"{args.seed_size}, {args.rounds} rounds of {args.batch}, fine-tune every {args.finetune_every} rounds "
          f"({args.ft_steps} steps max); this run {time.perf_counter() - started:.0f} s\n")
    print(text)
    plot(runs, wanted, args.plot, f"airline, {args.seeds} seeds, fine-tune every {args.finetune_every} rounds ({cpu})")
    if aucs:
        best = max(aucs, key=aucs.__getitem__)
        print(f"\nwinner={best} " + " ".join(f"auc_{k.replace('-', '_')}={v:.4f}" for k, v in aucs.items()))


if __name__ == "__main__":
    main()
