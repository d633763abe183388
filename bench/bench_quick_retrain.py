"""Quick retrain against full retrain (issue 24, item 4): does a quick retrain learn a few hundred
corrections, in how long, and without forgetting?

The simulation: the crowd mislabelled N tweets (default 300, half airline, half general, stratified
by label) the way crowds confuse neighbouring classes (negative or positive -> neutral, neutral ->
negative or positive), and version v1 was fine-tuned on those labels with the default recipe. A
person then corrects them back to the bundled label. From there:
  (a) the quick retrain (training/quick_retrain.py, through JobRunner.run_sync as the Train tab
      runs it): from v1, on the corrected labels + the replay sample, for each --repeats value
      (how many times each correction is trained on);
  (b) the full retrain: the default recipe from the base encoder on every label, on the SAME
      validation split (v1's, which the quick retrain validates on), so the two compare paired.
Printed: wall time, training time, accuracy on the corrected tweets the runs trained on (before =
v1), validation macro-F1 per dataset, and quick - full with a paired bootstrap 95% interval; the
CPU model in every row.

    flock /tmp/bertdemo-pytest.lock nice -n 0 .venv/bin/python bench/bench_quick_retrain.py

v1 (~5 min) is trained once into --work/base and reused by later invocations.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bertdemo.config import Settings
from bertdemo.db import examples
from bertdemo.services import Services
from bertdemo.training import quick_retrain
from bertdemo.training.config import TrainConfig, TrainingData
from bertdemo.training.inputs import read_inputs
from bertdemo.training.loop import fit, start_model
from bertdemo.training.review import paired_bootstrap
from bertdemo.training.weights import example_weights

log = logging.getLogger("bench_quick_retrain")
CONFUSED = {"negative": ("neutral",), "positive": ("neutral",), "neutral": ("negative", "positive")}
QUICK = TrainConfig(init_from="active", train_on="changed")  # the Train tab's defaults, quick retrain
FULL = TrainConfig()  # the default recipe from the base encoder


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, serving="bf16", quick_first=False)


def prepare_base(base: Path, n: int, seed: int) -> dict[int, str]:
    """v1 trained on labels with `n` crowd-style mistakes, in `base` (once); {example id: bundled label}."""
    marker = base / "corrections.json"
    if marker.is_file():
        return {int(k): v for k, v in json.loads(marker.read_text()).items()}
    shutil.rmtree(base, ignore_errors=True)
    services = Services.create(settings_for(base))
    services.ensure_dataset()
    with Session(services.engine) as s:
        rows = examples.labeled_examples(s)
        ds = examples.datasets_of(s, [r[0] for r in rows])
    gold = {i: lab for i, _t, lab in rows}
    rng = np.random.default_rng(seed)
    picked = []
    for name in ("airline", "general"):
        ids = [i for i in gold if ds[i] == name]
        picked += quick_retrain.replay_sample(ids, {i: gold[i] for i in ids}, n // 2, seed)
    with Session(services.engine) as s, s.begin():
        for i in picked:
            examples.set_label(s, i, str(rng.choice(CONFUSED[gold[i]])), "crowd", "dataset", services.settings.labels)
    started = time.perf_counter()
    services.jobs.run_sync(FULL, user="bench", activate=False)
    v1 = services.registry.versions()[0]
    services.registry.activate(v1.id, user="bench", reason="bench: v1 trained on the mislabelled tweets")
    log.info("v1 trained in %.0f s (macro-F1 %.4f)", time.perf_counter() - started, v1.macro_f1)
    services.engine.dispose()
    corrections = {i: gold[i] for i in picked}
    marker.write_text(json.dumps(corrections))
    return corrections


def predict(clf, texts: list[str]) -> np.ndarray:
    return clf.predict_proba(texts, batch_size=128).argmax(axis=1) if texts else np.zeros(0, dtype=int)


def quick_run(services: Services, repeat: int) -> tuple[dict, object]:
    """One quick retrain from v1 through the runner (read, train, evaluate, save); its row and its model."""
    quick_retrain.REPEAT_CHANGED = repeat
    started = time.perf_counter()
    services.jobs.run_sync(QUICK, user="bench", activate=False)
    wall = time.perf_counter() - started
    info = services.registry.versions()[0]
    row = {"run": f"quick retrain (corrections x{repeat})", "wall_s": wall, "train_s": info.metrics["seconds"],
           "rows": info.metrics["train_size"], "trained_on": info.metrics["trained_on"]}
    return row, services.registry.load(info, int8_now=False)


def full_run(services: Services, val_ids: set[int]) -> tuple[dict, object]:
    """The default recipe from the base encoder on every label but the validation split (v1's)."""
    started = time.perf_counter()
    with Session(services.engine) as s:
        rows = [r for r in examples.labeled_examples(s) if r[0] not in val_ids]
        ids = [r[0] for r in rows]
        ds, conf = examples.datasets_of(s, ids), examples.label_confidences(s, ids)
    labels = services.settings.labels
    y = np.array([labels.index(lab) for _i, _t, lab in rows])
    w = example_weights([conf.get(i) for i in ids], [ds[i] for i in ids], y, FULL.general_weight,
                        FULL.keep_class_shares)
    inputs = read_inputs(services.settings, services.engine, services.registry, QUICK)  # v1's validation split
    data = TrainingData([t for _i, t, _l in rows], y, inputs.data.val_texts, inputs.data.val_labels, w)
    s = services.settings
    clf = start_model(s.model_source, labels, s.device, s.max_length, FULL)
    result = fit(clf, data, FULL)
    predict(clf, list(data.val_texts))  # as the runner evaluates: part of the wall time
    row = {"run": "full retrain from base", "wall_s": time.perf_counter() - started, "train_s": result.seconds,
           "rows": len(rows), "trained_on": "every label but the validation split"}
    return row, clf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-quick-retrain"), help="work folder (v1 kept in base/)")
    p.add_argument("--corrections", type=int, default=300, help="mislabelled tweets that a person corrects")
    p.add_argument("--repeats", default="1,2,3", help="times each correction is trained on, one quick run per value")
    p.add_argument("--seed", type=int, default=0, help="which tweets are mislabelled, and how")
    p.add_argument("--no-full", action="store_true", help="skip the full retrain (~5 min)")
    p.add_argument("--max-steps", type=int, default=None, help="cut every run to this many steps (a smoke run)")
    args = p.parse_args(argv)
    if args.max_steps:
        global QUICK, FULL
        QUICK, FULL = (TrainConfig(**(c.to_dict() | {"max_steps": args.max_steps})) for c in (QUICK, FULL))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cpu = cpu_model()
    corrections = prepare_base(args.work / "base", args.corrections, args.seed)
    run_dir = args.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(args.work / "base", run_dir)
    services = Services.create(settings_for(run_dir))
    labels = services.settings.labels
    with Session(services.engine) as s, s.begin():
        for i, label in corrections.items():  # the person's corrections
            examples.set_label(s, i, label, "person", "annotator", labels)
    inputs = read_inputs(services.settings, services.engine, services.registry, QUICK)
    with Session(services.engine) as s:
        text_of = {i: t for i, t, _l in examples.labeled_examples(s)}
        val_ids = {r[0] for r in examples.review_rows(s, list(inputs.data.val_texts)).values()}
    learnt = sorted(set(corrections) - val_ids)  # the corrections the runs train on
    c_texts, c_y = [text_of[i] for i in learnt], np.array([labels.index(corrections[i]) for i in learnt])
    val_texts, val_y, val_ds = list(inputs.data.val_texts), np.asarray(inputs.data.val_labels), inputs.val_datasets
    v1 = services.registry.active()
    before = {"run": "v1 (before the corrections)", "wall_s": None, "train_s": None, "rows": None,
              "trained_on": "the mislabelled tweets"}
    results = [(before, predict(v1, c_texts), predict(v1, val_texts))]
    for r in [int(x) for x in args.repeats.split(",") if x.strip()]:
        row, clf = quick_run(services, r)
        results.append((row, predict(clf, c_texts), predict(clf, val_texts)))
    if not args.no_full:
        row, clf = full_run(services, val_ids)
        results.append((row, predict(clf, c_texts), predict(clf, val_texts)))
    report(results, c_y, val_y, val_ds, len(learnt), len(corrections) - len(learnt), cpu)
    return 0


def report(results, c_y, val_y, val_ds, k: int, in_val: int, cpu: str) -> None:
    ds = np.asarray([d or "other" for d in val_ds])
    slices = {"airline": ds == "airline", "general": ds == "general", "all": np.ones(len(ds), bool)}
    print(f"\n{k} corrections trained on ({in_val} more in the validation split); validation: v1's split, "
          f"{len(val_y):,} tweets ({', '.join(f'{n} {int(m.sum()):,}' for n, m in slices.items() if n != 'all')})\n")
    print("| run | trained on | rows | wall s | train s | accuracy on the corrections | val macro-F1 airline | general "
          "| all | CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row, c_pred, v_pred in results:
        f1 = {n: paired_bootstrap(val_y[m], v_pred[m], v_pred[m], n_boot=0, n_classes=3).a.value
              for n, m in slices.items()}
        cells = [row["run"], row["trained_on"], f"{row['rows']:,}" if row["rows"] else "",
                 f"{row['wall_s']:.1f}" if row["wall_s"] else "", f"{row['train_s']:.1f}" if row["train_s"] else "",
                 f"{(c_pred == c_y).mean():.3f}", *(f"{f1[n]:.4f}" for n in slices), cpu]
        print("| " + " | ".join(cells) + " |")
    full = next((r for r in results if r[0]["run"].startswith("full")), None)
    if full is None:
        return
    print("\nquick - full, validation macro-F1, paired bootstrap (1000 rounds, stratified by dataset for 'all'):\n")
    print("| quick run | airline | general | all | CPU |")
    print("|---|---|---|---|---|")
    for row, _c, v_pred in results[1:-1]:
        cells = [row["run"]]
        for n, m in slices.items():
            b = paired_bootstrap(val_y[m], full[2][m], v_pred[m], n_classes=3,
                                 groups=ds[m] if n == "all" else None)
            cells.append(b.diff.brief(signed=True))
        print("| " + " | ".join(cells + [cpu]) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
