"""Experiments behind the default first-start recipe (issue 13): which data and which options give
the packaged 22M-parameter encoder the best macro-F1 on held-out airline tweets AND on held-out
general tweets (data/general_tweets.csv), within a first start of about 6 minutes on 2 CPU cores.

Every recipe trains from the packaged encoder with the app's own loop (training.loop.fit) on one
fixed split: both datasets imported as the app imports them (de-duplicated by cleaned text, airline
first), split once by (dataset, label) with seed 42, 10% held out. A recipe that trains on the
airline tweets only picks its checkpoint on the airline validation tweets, as the app does; every
recipe is then scored on both validation sets (training/evaluation.py: macro-F1 per dataset and
expected calibration error).

    .venv/bin/python bench/recipes.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.config import Settings  # noqa: E402
from bertdemo.datasets import stratified_split  # noqa: E402
from bertdemo.db import examples  # noqa: E402
from bertdemo.db.models import now  # noqa: E402
from bertdemo.model.classifier import Classifier  # noqa: E402
from bertdemo.services import Services  # noqa: E402
from bertdemo.training.config import TrainConfig  # noqa: E402
from bertdemo.training.evaluation import evaluate  # noqa: E402
from bertdemo.training.loop import fit  # noqa: E402

# the options every recipe starts from: the defaults before issue 13 ([CLS] pooling, class-weighted
# loss, lr 8e-5, batch 32, max length 64), so each recipe below names what it changes
BASE = TrainConfig(epochs=2.0, pooling="cls", class_weighted=True)
BOTH = ("airline", "general")
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
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="recipe names (default: all)")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-recipes-")) / "runtime"
    settings = Settings(data_dir=data, bootstrap=False)
    services = Services.create(settings)
    services.ensure_dataset()
    with Session(services.engine) as s:
        rows = examples.labeled_examples(s)
        dataset_of = examples.datasets_of(s, [r[0] for r in rows])
    labels = settings.labels
    texts = [t for _i, t, _l in rows]
    y = np.array([labels.index(lab) for _i, _t, lab in rows])
    groups = np.array([dataset_of[i] for i, _t, _l in rows])
    tr, va = stratified_split(y, 0.1, 42, list(groups))
    print(f"# {now():%Y-%m-%d %H:%M} UTC; examples: " + ", ".join(
        f"{g} {int((groups == g).sum()):,} (validation {int((groups[va] == g).sum()):,})" for g in sorted(set(groups))))
    print("| recipe | trained on | train examples | train s | airline macro-F1 | general macro-F1 | ECE | val accuracy |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (sets, config) in RECIPES.items():
        if args.only and name not in args.only:
            continue
        t_idx = [i for i in tr if groups[i] in sets]
        v_sel = [i for i in va if groups[i] in sets]  # checkpoint choice: the trained-on datasets
        clf = Classifier.load(settings.model_source, labels, settings.device, config.max_length,
                              pooling=config.pooling)
        start = time.perf_counter()
        fit(clf, [texts[i] for i in t_idx], y[t_idx], [texts[i] for i in v_sel], y[v_sel], config)
        seconds = time.perf_counter() - start
        probs = clf.predict_proba([texts[i] for i in va], batch_size=128)
        ev = evaluate(probs, y[va], list(groups[va]), labels)
        acc = float((probs.argmax(1) == y[va]).mean())
        print(f"| {name} | {'+'.join(sets)} | {len(t_idx):,} | {seconds:.0f} | {ev.per_dataset['airline']['macro_f1']:.4f} "
              f"| {ev.per_dataset['general']['macro_f1']:.4f} | {ev.ece:.4f} | {acc:.4f} |", flush=True)


if __name__ == "__main__":
    main()
