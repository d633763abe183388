"""Experiments behind the default first-start recipe (issue 13): which data and which options give
the packaged 22M-parameter encoder the best macro-F1 on held-out airline tweets AND on held-out
general tweets (data/general_tweets.csv), within a first start of about 6 minutes on 2 CPU cores.

Every recipe trains from the packaged encoder with the app's own loop (training.loop.fit) on one
fixed split: both datasets imported as the app imports them (de-duplicated by cleaned text, airline
first), split once by (dataset, label) with seed 42, 10% held out. A recipe that trains on the
airline tweets only picks its checkpoint on the airline validation tweets, as the app does; every
recipe is then scored on both validation sets (training/evaluation.py: macro-F1 per dataset and
expected calibration error).

    .venv/bin/python bench/recipes.py [--only NAME-OR-PREFIX ...] [--save-probs DIR]
        (e.g. --only r2-: round two; --only r3-new-default r3-general0.5-shares: today's default)
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.config import Settings  # noqa: E402
from bertdemo.datasets import stratified_split  # noqa: E402
from bertdemo.db import examples  # noqa: E402
from bertdemo.db.models import now  # noqa: E402
from bertdemo.services import Services  # noqa: E402
from bertdemo.training import loop  # noqa: E402
from bertdemo.training.config import TrainConfig, TrainingData  # noqa: E402
from bertdemo.training.evaluation import evaluate  # noqa: E402
from bertdemo.training.loop import fit  # noqa: E402
from bertdemo.training.weights import example_weights  # noqa: E402

DEFAULT_ORDER = loop.length_grouped_batches

# the options every recipe starts from: the defaults before issue 13 ([CLS] pooling, class-weighted
# loss, lr 8e-5, batch 32, max length 64, BERT's dropout 0.1, no confidence weights), so each recipe
# below names what it changes
BASE = TrainConfig(epochs=2.0, pooling="cls", class_weighted=True, dropout=None, confidence_weighted=False,
                   general_weight=1.0, keep_class_shares=False, logit_adjustment=0.0)
BOTH = ("airline", "general")
# the second round (issue 13/14, 2026-12-01 afternoon): from the round-one default, scored on the
# final weights (one evaluation per epoch); "conf" = label-confidence weights, as the app trains
ROUND2 = replace(BASE, epochs=1.0, pooling="mean", class_weighted=False, evals_per_epoch=1)
ORDERS = {}  # recipe name -> "airline-last": the general tweets' batches first, the airline ones last
EMA = {}  # recipe name -> decay: also score an exponential moving average of the weights
AIRLINE_WEIGHT = {}  # recipe name -> factor on the airline tweets' loss weights
DEFAULT = replace(ROUND2, dropout=0.0, confidence_weighted=True)  # round two's default, where round three starts
RECIPES = {  # name -> (datasets trained on, config)
    "airline-2ep (old default)": (("airline",), replace(BASE, epochs=2.0)),
    "both-1ep": (("airline", "general"), replace(BASE, epochs=1.0)),
    "both-1.5ep": (("airline", "general"), replace(BASE, epochs=1.5)),
    "both-2ep": (("airline", "general"), replace(BASE, epochs=2.0)),
    "both-1ep-mean": (BOTH, replace(BASE, epochs=1.0, pooling="mean")),
    "both-1ep-mean-freeze-emb": (BOTH, replace(BASE, epochs=1.0, pooling="mean", freeze_word_embeddings=True)),
    "both-1ep-mean-lr1.2e-4": (BOTH, replace(BASE, epochs=1.0, pooling="mean", learning_rate=1.2e-4)),
    "both-1ep-mean-ls0.1": (BOTH, replace(BASE, epochs=1.0, pooling="mean", label_smoothing=0.1)),
    "both-1ep-mean-unweighted": (BOTH, replace(BASE, epochs=1.0, pooling="mean", class_weighted=False)),
    "both-1ep-mean-seed7": (BOTH, replace(BASE, epochs=1.0, pooling="mean", class_weighted=True, seed=7)),
    "both-1ep-mean-unweighted-seed7": (BOTH, replace(BASE, epochs=1.0, pooling="mean", class_weighted=False, seed=7)),
    # round 2
    "r2-dropout0.1": (BOTH, ROUND2),
    "r2-nodrop": (BOTH, replace(ROUND2, dropout=0.0)),
    "r2-nodrop-airline-last": (BOTH, replace(ROUND2, dropout=0.0)),
    "r2-new-default-seed42": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True)),
    "r2-new-default-seed7": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True, seed=7)),
    "r2-new-default-seed1": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True, seed=1)),
    "r2-new-default-1.3ep": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True, epochs=1.3)),
    "r2-new-default-no-warmup-no-decay": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True,
                                                        warmup_ratio=0.0, weight_decay=0.0)),
    "r2-new-default-lr6e-5": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True, learning_rate=6e-5)),
    "r2-new-default-batch16": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True, batch_size=16)),
    "r2-new-default-batch16-seed7": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True, batch_size=16,
                                                   seed=7)),
    "r2-new-default-batch16-seed1": (BOTH, replace(ROUND2, dropout=0.0, confidence_weighted=True, batch_size=16,
                                                   seed=1)),
    # round 3 (2026-12-01 evening): from the new default
    **{f"r3-default-seed{seed}": (BOTH, replace(DEFAULT, seed=seed)) for seed in (42, 7, 1, 2, 3)},
    **{f"r3-llrd0.85-lr1e-4-seed{seed}": (BOTH, replace(DEFAULT, layer_lr_decay=0.85, learning_rate=1e-4, seed=seed))
       for seed in (42, 7, 1)},
    **{f"r3-airline{a}-seed{seed}": (BOTH, replace(DEFAULT, seed=seed)) for a in (1.5, 2.0) for seed in (42, 7, 1)},
    **{f"r3-general{g}-seed{seed}": (BOTH, replace(DEFAULT, general_weight=g, seed=seed))
       for g in (0.5, 0.33) for seed in (42, 7, 1)},
    **{f"r3-general0.5-shares-seed{seed}": (BOTH, replace(DEFAULT, general_weight=0.5, keep_class_shares=True,
                                                          seed=seed)) for seed in (42, 7, 1)},
    **{f"r3-shares-seed{seed}": (BOTH, replace(DEFAULT, keep_class_shares=True, seed=seed)) for seed in (42, 7)},
    # the app's default from round three to issue 23 (TrainConfig() without the logit adjustment), on its final weights
    **{f"r3-new-default-seed{seed}": (BOTH, TrainConfig(evals_per_epoch=1, seed=seed, logit_adjustment=0.0))
       for seed in (2, 3)},
}
for _a in (1.5, 2.0):
    for _seed in (42, 7, 1):
        AIRLINE_WEIGHT[f"r3-airline{_a}-seed{_seed}"] = _a
assert TrainConfig(evals_per_epoch=1, seed=2, logit_adjustment=0.0) == replace(DEFAULT, general_weight=0.5,
                                                                                keep_class_shares=True, seed=2)
ORDERS["r2-nodrop-airline-last"] = "airline-last"
EMA["r2-dropout0.1"] = EMA["r2-nodrop"] = 0.99


def airline_last(groups: np.ndarray):  # noqa: ANN201
    """A batch order for loop.fit: the general tweets' length-grouped batches, then the airline ones'."""
    def order(lengths, batch_size, rng, mega=50):  # noqa: ANN001, ANN202
        parts = []
        for airline in (False, True):
            keep = [i for i in range(len(lengths)) if (groups[i] == "airline") == airline]
            batches = loop.length_grouped_batches([lengths[i] for i in keep], batch_size, rng, mega)
            parts += [[keep[j] for j in b] for b in batches]
        return parts
    return order


def ema_tracker(model, decay: float):  # noqa: ANN001, ANN201
    """An on_progress hook keeping an exponential moving average of the weights (decay warmed up
    as min(decay, (1 + step) / (10 + step)))."""
    params = list(model.parameters())
    shadow = [p.detach().clone() for p in params]

    def update(progress) -> None:  # noqa: ANN001
        d = min(decay, (1 + progress.step) / (10 + progress.step))
        with torch.no_grad():
            torch._foreach_lerp_(shadow, [p.detach() for p in params], 1 - d)
    update.shadow = shadow
    return update


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="recipe names or name prefixes (default: all)")
    ap.add_argument("--save-probs", metavar="DIR", help="save each recipe's validation probabilities there (.npz)")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-recipes-")) / "runtime"
    settings = Settings(data_dir=data, bootstrap=False)
    services = Services.create(settings)
    services.ensure_dataset()
    with Session(services.engine) as s:
        rows = examples.labeled_examples(s)
        dataset_of = examples.datasets_of(s, [r[0] for r in rows])
        confidence = examples.label_confidences(s, [r[0] for r in rows])  # as the runner weighs them
    labels = settings.labels
    texts = [t for _i, t, _l in rows]
    y = np.array([labels.index(lab) for _i, _t, lab in rows])
    groups = np.array([dataset_of[i] for i, _t, _l in rows])
    weights = np.array([confidence.get(i, 1.0) for i, _t, _l in rows], dtype=np.float32)
    tr, va = stratified_split(y, 0.1, 42, list(groups))
    print(f"# {now():%Y-%m-%d %H:%M} UTC; examples: " + ", ".join(
        f"{g} {int((groups == g).sum()):,} (validation {int((groups[va] == g).sum()):,})" for g in sorted(set(groups))))
    print("| recipe | trained on | train examples | train s | airline macro-F1 | general macro-F1 | ECE | val accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (sets, config) in RECIPES.items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        t_idx = [i for i in tr if groups[i] in sets]
        v_sel = [i for i in va if groups[i] in sets]  # checkpoint choice: the trained-on datasets
        # as the app starts a run: the new head's initial weights drawn from the run's seed
        clf = loop.start_model(settings.model_source, labels, settings.device, config.max_length, config)
        loop.length_grouped_batches = (airline_last(groups[t_idx]) if ORDERS.get(name) == "airline-last"
                                       else DEFAULT_ORDER)
        ema = ema_tracker(clf.model, EMA[name]) if name in EMA else None
        start = time.perf_counter()
        # the loss weights as the runner computes them (training/weights.py), with round three's variants
        w = example_weights(weights[t_idx] if config.confidence_weighted else [None] * len(t_idx), groups[t_idx],
                            y[t_idx], config.general_weight, config.keep_class_shares)
        w = w * np.where(groups[t_idx] == "airline", AIRLINE_WEIGHT.get(name, 1.0), 1.0).astype(np.float32)
        weighted = config.confidence_weighted or name in AIRLINE_WEIGHT or config.general_weight != 1.0
        data = TrainingData([texts[i] for i in t_idx], y[t_idx], [texts[i] for i in v_sel], y[v_sel],
                            w if weighted else None)
        fit(clf, data, config, on_progress=ema)
        seconds = time.perf_counter() - start
        scored = [(name, clf)]
        if ema:
            averaged = copy.deepcopy(clf)
            with torch.no_grad():
                for p, q in zip(averaged.model.parameters(), ema.shadow):
                    p.copy_(q)
            scored.append((f"{name}, EMA {EMA[name]}", averaged))
        for label, model in scored:
            probs = model.predict_proba([texts[i] for i in va], batch_size=128)
            ev = evaluate(probs, y[va], list(groups[va]), labels)
            acc = float((probs.argmax(1) == y[va]).mean())
            print(f"| {label} | {'+'.join(sets)} | {len(t_idx):,} | {seconds:.0f} | "
                  f"{ev.per_dataset['airline']['macro_f1']:.4f} | {ev.per_dataset['general']['macro_f1']:.4f} "
                  f"| {ev.ece:.4f} | {acc:.4f} |", flush=True)
            if args.save_probs:  # the validation probabilities and labels, for analysis
                np.savez(Path(args.save_probs) / f"{label.replace(' ', '_').replace(',', '')}.npz", probs=probs,
                         y=y[va], groups=groups[va])
            air = [i for i in range(len(va)) if groups[va[i]] == "airline"]
            per_class = f1_score(y[va][air], probs[air].argmax(1), average=None, labels=range(len(labels)))
            print("<!-- airline F1 per class: " + ", ".join(f"{lab} {f:.4f}" for lab, f in zip(labels, per_class))
                  + " -->", flush=True)

if __name__ == "__main__":
    main()
