"""Similar examples and the corpus map on the whole bundled corpus (14.6k airline tweets): what
storing the sentence embeddings with the re-scoring pass costs, and what a query then costs,
against the obvious baseline of running the model over the corpus for each query.

Prints: the re-scoring pass with scores only vs. scores + embeddings (the same forward pass), the
embeddings file's size, similar-to-an-example and similar-to-typed-text p50/p95, the map's first
draw (PCA) and a cached one, a box selection of half the map, and a bulk label of that selection
with its undo (one transaction each).

    .venv/bin/python bench/bench_similar.py [--queries 50]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from benchlib import percentiles  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bertdemo.actions.annotate import AnnotateAdapters  # noqa: E402
from bertdemo.config import Settings  # noqa: E402
from bertdemo.db import examples as db_examples  # noqa: E402
from bertdemo.db.models import now  # noqa: E402
from bertdemo.model import vectors  # noqa: E402
from bertdemo.services import Services  # noqa: E402
from bertdemo.training.config import TrainConfig  # noqa: E402


def timed(fn, *args):  # noqa: ANN001, ANN002, ANN201
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=50)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-similar-")) / "runtime"
    services = Services.create(Settings(data_dir=data, bootstrap=False))
    services.ensure_dataset()
    print(f"# {now():%Y-%m-%d %H:%M} UTC, data dir {data}")
    # a version to query: a short run (its head barely trained; the embeddings' cost does not depend on it)
    services.jobs.run_sync(TrainConfig(epochs=1, max_steps=20, evals_per_epoch=1), user="bench")
    info, clf = services.registry.active_version(), services.registry.active()
    acts = AnnotateAdapters.create(services)
    with Session(services.engine) as s:
        texts = [t for _i, t in db_examples.all_texts(s)]
    n = len(texts)
    _, scores_s = timed(clf.predict_proba, texts, 128)
    _, both_s = timed(clf.scores_and_embeddings, texts, 128)
    path = services.registry.folder(info) / vectors.VECTORS_FILE
    rows = [("re-scoring pass, scores only", f"{scores_s:.1f} s", f"{n / scores_s:.0f} tweets/s"),
            ("re-scoring pass, scores + embeddings", f"{both_s:.1f} s", f"x{both_s / scores_s:.2f} of scores only"),
            ("embeddings file (float16)", f"{path.stat().st_size / 2**20:.1f} MiB", f"{n:,} x 384")]
    rng = random.Random(0)
    ids = [int(i) for i in rng.sample(list(acts.similar.index().ids), args.queries)]
    acts.similar.of_example(ids[0], 10)  # load the index once
    ex_s = [timed(acts.similar.of_example, i, 10)[1] for i in ids]
    p50, p95, _ = percentiles(ex_s)  # ms
    rows.append(("similar to an example (k=10)", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
                 f"x{scores_s * 1e3 / p50:,.0f} faster than a model pass over the corpus ({scores_s:.0f} s)"))
    typed = [texts[i] for i in rng.sample(range(n), args.queries)]
    tx_s = [timed(acts.similar.of_text, t, 10)[1] for t in typed]
    p50, p95, _ = percentiles(tx_s)
    rows.append(("similar to typed text (k=10)", f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
                 "one forward pass + one matrix-vector product"))
    view, first = timed(acts.map.view, "label")
    _, again = timed(acts.map.view, "disagreement")
    rows.append(("map, first draw (PCA of the embeddings)", f"{first:.2f} s", f"{view.total:,} points"))
    rows.append(("map, another colouring (PCA cached)", f"{again:.2f} s", ""))
    xy = acts.similar.index().projection()
    mid = float(np.median(xy[:, 0]))
    chosen, sel_s = timed(acts.map.select, {"box": [float(xy[:, 0].min()), float(xy[:, 1].min()), mid,
                                                   float(xy[:, 1].max())]})
    rows.append(("box selection of half the map", f"{sel_s * 1e3:.0f} ms", f"{len(chosen):,} examples"))
    preview, prev_s = timed(acts.bulk.preview, chosen, "neutral")
    result, apply_s = timed(acts.bulk.apply, preview, None)
    undone, undo_s = timed(acts.bulk.undo, result.batch, None)
    rows.append(("bulk label preview", f"{prev_s:.2f} s", f"{sum(preview.changes.values()):,} would change"))
    rows.append(("bulk label apply (one transaction)", f"{apply_s:.2f} s", f"{result.changed:,} history rows"))
    rows.append(("undo of the whole batch", f"{undo_s:.2f} s", f"{undone.changed:,} restored"))
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'time':<28}  note")
    for what, t, note in rows:
        print(f"{what:<{width}}  {t:<28}  {note}")


if __name__ == "__main__":
    main()
