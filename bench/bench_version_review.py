"""The version review of two real versions (the Train tab's review, /review_version) on a data
dir: from the versions' stored scores (what the tab does when both were activated: the
validation split's slices and flips, then the flips over the whole corpus) against running both
models over the candidate's validation split (what it does for a version never activated), each
from a cold start (no model loaded, nothing cached).

    python bench/bench_version_review.py --data-dir DIR [--a v1] [--b v2]

A and B default to the oldest and the newest version. Prints a table with the seconds of each
path, the review set's size, the flips on the validation split and on the whole corpus, and the
CPU model. Work on a copy of a data dir that nothing else uses: the review only reads, but it
loads the models. Both versions need stored scores for the whole-corpus flips (activate each
once; `bertdemo train` activates what it trains unless --no-activate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import cpu_model  # noqa: E402

from bertdemo.actions import review as version_review  # noqa: E402
from bertdemo.actions.train import TrainingActions  # noqa: E402
from bertdemo.config import Settings  # noqa: E402
from bertdemo.services import Services  # noqa: E402
from bertdemo.training.comparison import review_set  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="a copy of a data dir with two or more versions")
    p.add_argument("--a", help="the baseline version (default: the oldest)")
    p.add_argument("--b", help="the candidate version (default: the newest)")
    args = p.parse_args()
    services = Services.create(Settings.from_env().with_(data_dir=args.data_dir.resolve()))
    labels = services.settings.labels
    by_name = {v.name: v for v in sorted(services.registry.versions(), key=lambda v: v.id)}
    if not by_name:
        sys.exit(f"no versions in {args.data_dir}")
    a = by_name[args.a or next(iter(by_name))]
    b = by_name[args.b or list(by_name)[-1]]

    started = time.perf_counter()
    stored = TrainingActions(services).review(a.name, b.name)  # what the tab runs: stored scores where there are
    stored_s = time.perf_counter() - started
    started = time.perf_counter()
    corpus = version_review.corpus_flips(services.engine, (a, b), labels)  # the whole-corpus part alone
    corpus_s = time.perf_counter() - started

    started = time.perf_counter()
    rs = review_set(services.engine, services.registry.folder(b), b.name, labels)
    scored = version_review.score(services.engine, rs, (a, b), services.registry.load, labels, use_stored=False)
    models = version_review.build(scored, (a.name, b.name), labels, None)
    models_s = time.perf_counter() - started
    services.engine.dispose()

    cpu = cpu_model()
    n = stored.flips.n
    whole = f"{corpus.flips.total:,} of {corpus.flips.n:,}" if corpus else "not counted (no stored scores)"
    print(f"| path ({b.name} against {a.name}, {n:,} validation examples) | seconds | flips, validation | "
          "flips, whole corpus | stored examples A / B | CPU |")
    print("|---|---|---|---|---|---|")
    print(f"| stored scores (the tab: validation, then the corpus) | {stored_s:.2f} | {stored.flips.total:,} of {n:,} | "
          f"{whole} | {stored.stored[0]:,} / {stored.stored[1]:,} | {cpu} |")
    print(f"| of which the whole-corpus flips | {corpus_s:.2f} | | {whole} | | {cpu} |")
    print(f"| both models (load + score, validation only) | {models_s:.2f} | {models.flips.total:,} of {n:,} | | "
          f"0 / 0 | {cpu} |")


if __name__ == "__main__":
    main()
