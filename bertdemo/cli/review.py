"""`bertdemo review vA vB`: the review of candidate vB against baseline vA (training/comparison.py):
macro-F1 per slice with paired bootstrap intervals on vB's validation split, the flips, the stored
behaviour suite (the Train tab's behaviour tests) on vB, and the activation gate. Exit 0 when the
gate passes, 1 when it fails, 2 on a usage error; so a headless run (`bertdemo train
--no-activate`) can be checked before it serves. `review v1 v1` passes: a version is never worse than itself."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bertdemo review", description="Review a candidate version against a baseline "
                                "(BERTDEMO_DATA_DIR, BERTDEMO_DB_URL choose the data).")
    p.add_argument("baseline", help="the version to compare against, e.g. v1 (usually the serving one)")
    p.add_argument("candidate", help="the version under review, e.g. v2; its validation split is the test set")
    p.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds for the intervals (default 1000)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 100 <= args.rounds <= 100_000:
        print(f"error: --rounds takes 100 to 100000, got {args.rounds}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bertdemo.config import Settings
    from bertdemo.errors import UserError
    from bertdemo.services import Services
    from bertdemo.training.behaviour import stored_suite
    from bertdemo.training.comparison import compare, review_set

    services = Services.create(Settings.from_env())
    reg, labels = services.registry, services.settings.labels
    try:
        by_name = {v.name: v for v in sorted(reg.versions(), key=lambda v: v.id)}  # oldest first
        missing = [n for n in (args.baseline, args.candidate) if n not in by_name]
        if missing:
            print(f"error: no version named {', '.join(missing)}; there are {', '.join(by_name) or 'none'}",
                  file=sys.stderr)
            return 2
        a, b = by_name[args.baseline], by_name[args.candidate]
        rs = review_set(services.engine, reg.folder(b), b.name, labels)
        clf_a = reg.load(a)
        clf_b = clf_a if b.id == a.id else reg.load(b)
        result = compare((a.name, clf_a.predict_proba), (b.name, clf_b.predict_proba), rs, labels, n_boot=args.rounds,
                         tests=stored_suite(services.engine, labels))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        services.engine.dispose()
    print(result.report())
    return 0 if result.gate.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
