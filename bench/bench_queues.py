"""Every Annotate queue's first and second `next_item` right after a version's re-scoring, at a
corpus size, on SQLite and PostgreSQL, without the model (issue 26: first calls under 0.5 s with
the right count).

The corpus: `--size` examples, the bundled tweets with bench_scale.py's small edits (so a common
word such as "delayed" is in ~5 % of the rows), half unlabelled, written in bulk; the active
version's stored scores and sentence embeddings are synthetic (384-D, clustered by each tweet's
label so that a model fitted on them agrees with ~80 % of the labels); 1,400 labels saved first
(`--saves`: bench_scale's guest saves as many during the re-scoring). Then, as after an
activation's re-scoring, a fresh Labelling adapter (empty queue caches) per round, and per queue a
person's first `next_item` and a second one, and the count it reports against the database's.
Rounds: the stored scores rank ("stored"); a fresh quick-model fit ranks, as in bench_scale's 300k
runs ("quick"); the stored scores rank while a quick-model fit runs in a thread beside ("busy").
Prints one markdown table (with `lscpu`'s model name) and a JSON line.

    flock /tmp/bertdemo-pytest.lock nice -n 5 .venv/bin/python bench/bench_queues.py --size 300000 \
        [--db sqlite,postgresql] [--work DIR] [--profile QUEUE|all] [--saves 1400]

`--work DIR` keeps the SQLite data dir and the PostgreSQL schema (named after the size) there and
reuses them on the next run (building 300k takes a minute or two per backend); without it both are
made afresh and dropped. `--profile QUEUE` prints cProfile's top functions of that queue's first call.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_scale import PG_DEFAULT, SEARCH, bundled, edited
from benchlib import cpu_model
from sqlalchemy import create_engine, func, insert, make_url, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.config import Settings
from bertdemo.db import versions
from bertdemo.db.engine import like_pattern
from bertdemo.db.models import Example, Lease, Score, now
from bertdemo.model import vectors
from bertdemo.services import Services
from bertdemo.text import try_clean
from bertdemo.training.quick import fit_quick

LABELS = ("negative", "neutral", "positive")
QUEUES = ("unlabeled", "informative", "uncertain", "margin", "diverse", "disagree", "search")
DIM, CHUNK = 384, 20_000
# stored: the version's stored scores rank; quick: a fresh quick-model fit ranks the model queues;
# busy: the stored scores rank while a quick-model fit runs beside (right after an activation)
RANKERS = ("stored", "quick", "busy")


# ------------------------------------------------------------------------------- the corpus
def corpus_rows(n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """`n` example rows (bundled tweets, then edited copies; half unlabelled) and each one's true
    label index (the embeddings cluster by it)."""
    rng = random.Random(seed)
    src = [(t, lab) for t, lab in bundled() if lab in LABELS]
    rng.shuffle(src)
    rows, truth, stamp = [], np.zeros(n, dtype=np.int64), now()
    for k in range(n):
        raw, label = src[k % len(src)]
        raw = raw if k < len(src) else edited(raw, rng)
        cleaned = try_clean(raw)[0] or raw
        rows.append({"id": k + 1, "text": cleaned, "raw_text": raw, "text_key": f"k{k}", "source": "import",
                     "dataset": "import", "meta": {}, "created_at": stamp,
                     "label": label if rng.random() < 0.5 else None, "version": 1})
        truth[k] = LABELS.index(label)
    return rows, truth


def build(services: Services, n: int, folder: Path) -> None:
    """The examples, the active version's embeddings file and its stored scores."""
    rows, truth = corpus_rows(n)
    # a fifth of the rows sit in another label's cluster: the quick model disagrees with ~20 % of the labels
    moved = np.random.default_rng(1).random(n) < 0.2
    truth[moved] = (truth[moved] + np.random.default_rng(2).integers(1, len(LABELS), moved.sum())) % len(LABELS)
    with Session(services.engine) as s, s.begin():
        for a in range(0, n, CHUNK):
            s.execute(insert(Example), rows[a:a + CHUNK])
    del rows
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(LABELS), DIM))
    centres *= 1.2 / np.linalg.norm(centres, axis=1, keepdims=True)
    ids = np.arange(1, n + 1, dtype=np.int64)
    with Session(services.engine) as s, s.begin():
        v = versions.add_version(s, name="v1", path=str(folder), base_model="synthetic", is_active=False)
        vid = v.id
    with vectors.Writer(folder / vectors.VECTORS_FILE, ids, DIM) as w:
        for a in range(0, n, CHUNK):
            x = centres[truth[a:a + CHUNK]] + rng.normal(scale=0.3, size=(len(ids[a:a + CHUNK]), DIM))
            w.add(x)
            logits = 0.2 * x @ centres.T
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            with Session(services.engine) as s, s.begin():
                versions.save_scores(s, vid, ids[a:a + CHUNK].tolist(), p / p.sum(axis=1, keepdims=True), LABELS)
    with Session(services.engine) as s, s.begin():
        versions.activate_version(s, vid)
    if services.engine.dialect.name == "postgresql":  # as autovacuum leaves the tables after a re-scoring
        with services.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE examples")
            c.exec_driver_sql("VACUUM ANALYZE scores")


# ------------------------------------------------------------------------------- the truth
def truth(services: Services, fit) -> dict[str, int]:
    """Each queue's count as the database has it: what `next_item` may still hand out, so the model
    queues leave out the items finished (a done lease: the saves made during the "re-scoring");
    disagree by the quick fit's predictions when one ranks, else by the stored ones."""
    with Session(services.engine) as s:
        done = {i for (i,) in s.execute(select(Lease.example_id).where(Lease.done.is_(True)))}
        unlabelled = s.scalar(select(func.count()).select_from(Example).where(Example.label.is_(None)))
        total = s.scalar(select(func.count()).select_from(Example))
        pattern = like_pattern(SEARCH)
        found = s.scalar(select(func.count()).select_from(Example).where(
            Example.raw_text.ilike(pattern, escape="\\") | Example.text.ilike(pattern, escape="\\")))
        labelled = dict(s.execute(select(Example.id, Example.label).where(Example.label.is_not(None))).all())
        if fit is None:
            predicted = dict(s.execute(select(Score.example_id, Score.predicted)).all())
        else:
            predicted = dict(zip(fit.ids.tolist(), (LABELS[t] for t in np.asarray(fit.probs).argmax(axis=1))))
    disagree = sum(1 for i, lab in labelled.items() if i in predicted and predicted[i] != lab and i not in done)
    return {"unlabeled": unlabelled, "informative": unlabelled, "uncertain": total - len(done),
            "margin": total - len(done), "diverse": total - len(done), "disagree": disagree, "search": found}


def first_calls(services: Services, ranker: str, profile: str) -> list[dict]:
    """A fresh adapter (empty caches, as right after a re-scoring), ranked by the stored scores or a
    fresh quick-model fit, then each queue's first and second call by one person."""
    adapters = AnnotateAdapters.create(services)
    fit = adapters.quick.refit() if ranker == "quick" else None
    beside = None
    if ranker == "busy":  # a quick-model fit in a thread beside the calls, as after an activation
        beside = threading.Thread(target=lambda: fit_quick(
            services.engine, services.registry.folder(services.registry.active_version()) / vectors.VECTORS_FILE,
            (1, "v1"), LABELS), daemon=True)
        beside.start()
    acts, out = adapters.labelling, []
    for queue in QUEUES:
        who, search = "bench", SEARCH if queue == "search" else ""  # one person: no one else's lease to count
        times, item = [], None
        for call in range(2):
            prof = cProfile.Profile() if call == 0 and profile in (queue, "all") else None
            started = time.perf_counter()
            if prof:
                prof.enable()
            item = acts.next_item(queue, search, [], who)
            if prof:
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(18)
                print(f"--- {ranker} {queue}", buf.getvalue()[buf.getvalue().index("ncalls"):], flush=True)
            times.append(time.perf_counter() - started)
        out.append({"queue": queue, "first_s": times[0], "second_s": times[1],
                    "count": item.remaining if item else 0})
    if beside is not None:
        beside.join()
    want = truth(services, fit)
    for row in out:
        row["db"] = want[row["queue"]]
    if fit is not None:
        print(f"(quick model fit: {fit.seconds:.1f} s on {fit.labels_used:,} labels)", flush=True)
    return out


def label_some(services: Services, saves: int) -> None:
    """`saves` labels given by one person from the Unlabeled queue, as bench_scale's guest does during
    the re-scoring (their items are finished: every model queue leaves them out)."""
    settings = replace(services.settings, quick_refit_every=0)  # no refits meanwhile
    acts = AnnotateAdapters.create(replace(services, settings=settings)).labelling
    for k in range(saves):
        item = acts.next_item("unlabeled", "", [], "labeller")
        acts.save_label(item.id, LABELS[k % len(LABELS)], item.version, "labeller")


# ------------------------------------------------------------------------------- backends
def run_backend(kind: str, n: int, work: Path, keep: bool, profile: str, saves: int) -> dict[str, list[dict]]:
    data_dir = work / f"{kind}-{n}"
    url, admin, schema = "", None, f"benchq_{n}"
    if kind == "postgresql":
        admin = create_engine(PG_DEFAULT, poolclass=NullPool)
        with admin.begin() as c:
            exists = c.execute(text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                               {"n": schema}).first() is not None
            if exists and not (data_dir / "built").exists():
                c.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                exists = False
            if not exists:
                c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(PG_DEFAULT).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    elif not (data_dir / "built").exists():
        shutil.rmtree(data_dir, ignore_errors=True)
    try:
        services = Services.create(Settings(serving="bf16", data_dir=data_dir, bootstrap=False, db_url=url,
                                            quick_refit_every=20, labels=LABELS))
        if not (data_dir / "built").exists():
            started = time.perf_counter()
            build(services, n, data_dir / "models" / "v1")
            (data_dir / "built").write_text("ok")
            print(f"{kind}: built {n:,} examples in {time.perf_counter() - started:.0f} s", flush=True)
        if not (data_dir / "labelled").exists():
            started = time.perf_counter()
            label_some(services, saves)
            (data_dir / "labelled").write_text(str(saves))
            print(f"{kind}: {saves:,} labels saved in {time.perf_counter() - started:.0f} s", flush=True)
        rows = {ranker: first_calls(services, ranker, profile) for ranker in RANKERS}
        services.engine.dispose()
        return rows
    finally:
        if admin is not None:
            if not keep:
                with admin.begin() as c:
                    c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=300_000)
    ap.add_argument("--db", default="sqlite,postgresql", help="backends, comma-separated")
    ap.add_argument("--work", type=Path, help="keep the databases here and reuse them")
    ap.add_argument("--profile", default="", help="cProfile this queue's first call ('all': every queue's)")
    ap.add_argument("--saves", type=int, default=1400, help="labels saved before (bench_scale's ~1,400)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_queues-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for kind in args.db.split(","):
            results[kind] = run_backend(kind, args.size, work, args.work is not None, args.profile, args.saves)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.size:,} examples, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, CPU: {cpu_model()}")
    cols = [(kind, ranker) for kind in results for ranker in RANKERS]
    print("| queue | " + " | ".join(f"{k}, {r}: 1st / 2nd call, count (db)" for k, r in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for k, queue in enumerate(QUEUES):
        cells = []
        for kind, ranker in cols:
            r = results[kind][ranker][k]
            mark = "" if r["count"] == r["db"] else " WRONG"
            cells.append(f"{r['first_s']:.2f} / {r['second_s']:.2f} s, {r['count']:,} ({r['db']:,}){mark}")
        print(f"| {queue} | " + " | ".join(cells) + " |")
    print(json.dumps({"size": args.size, "cpu": cpu_model(), "results": results}))


if __name__ == "__main__":
    main()
