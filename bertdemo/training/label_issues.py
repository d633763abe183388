"""The suspicious-labels ranking of a version (model/label_noise.py: confident learning over the
labelled examples and the version's stored scores), in a child process once the corpus is large.

Why a child process: the ranking is seconds to tens of seconds of Python (reading every labelled
row, TF-IDF over their texts, five folds of SGD). In a thread of the app it holds the GIL, and a
request that reads rows from SQLite beside it (which drops and re-takes the GIL per row) waits at
every row: the corpus map's first draw at 300k took 6.8 s instead of 0.3 s beside it (measured,
bench/README.md). A child also takes the ranking's memory (+345 MB private at 150k labelled rows)
out of the serving process, and gives it back when it exits. Below IN_PROCESS_MAX labelled rows the
ranking takes a second or two, so it runs in the calling thread (no ~3 s of child start-up).

The child is `python -m bertdemo.training.label_issues`: its arguments (the database URL, with
any password, the version, the labels) come on stdin as JSON, never on the command line (where
`ps` would show them); its answer is one JSON line on stdout."""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import examples
from bertdemo.db.engine import make_engine, sqlite_path
from bertdemo.errors import NotReady, UserError
from bertdemo.model.label_noise import find_suspicious

log = logging.getLogger(__name__)
IN_PROCESS_MAX = 20_000  # labelled rows ranked in the calling thread (~1-2 s); more go to a child process
CHILD_NICE = 10  # the child's nice value, as the runner's background threads (runner.BACKGROUND_NICE; not
# imported: the runner imports torch, which the child does not need)


@dataclass(frozen=True)
class Ranking:
    """A version's suspicious labels: the ids, most suspicious first, the newest history row the
    ranking saw (examples changed after it leave the queue without a new ranking), how many labelled
    rows it ranked, and where: in a child process (with that process's peak resident memory) or not."""

    newest: int
    ids: list[int]
    rows: int
    seconds: float
    child_peak_mb: float | None = None  # None: ranked in the calling process


def rank(engine: Engine, version_id: int, labels: Sequence[str], in_child: bool | None = None) -> Ranking:
    """Rank `version_id`'s labelled examples; in a child process when `in_child` (default: more than
    IN_PROCESS_MAX labelled rows, on a database another process can open). Raises what the ranking
    raises (NotReady: too few labels of a class; RuntimeError: the child failed, with its reason)."""
    url = engine.url.render_as_string(hide_password=False)
    if in_child is None:
        with Session(engine) as s:
            labelled = sum(n for label, n in examples.label_counts(s).items() if label is not None)
        in_child = labelled > IN_PROCESS_MAX and _shared(url)
    return _in_child(url, version_id, labels) if in_child else _here(engine, version_id, labels)


def _shared(url: str) -> bool:
    """Whether another process can open this database (not an in-memory SQLite one)."""
    return not url.startswith("sqlite") or sqlite_path(url) is not None


def _here(engine: Engine, version_id: int, labels: Sequence[str]) -> Ranking:
    started = time.perf_counter()
    with Session(engine) as s:
        newest = examples.newest_event_id(s)
        rows = examples.scored_examples(s, version_id, labelled_only=True)
    ids = find_suspicious(rows, tuple(labels))
    return Ranking(newest, ids, len(rows), time.perf_counter() - started)


def _in_child(url: str, version_id: int, labels: Sequence[str]) -> Ranking:
    started = time.perf_counter()
    ask = json.dumps({"url": url, "version_id": int(version_id), "labels": list(labels)})
    done = subprocess.run([sys.executable, "-m", __name__], input=ask, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RuntimeError(f"the suspicious-labels ranking process failed: {reason[0][:300]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in answer:  # a UserError (too few labels of a class): said to whoever asks
        raise NotReady(answer["error"])
    return Ranking(answer["newest"], answer["ids"], answer["rows"], time.perf_counter() - started,
                   answer["peak_mb"])


def main() -> None:
    """The child: read the request on stdin, rank behind predictions (nice), answer on stdout."""
    try:
        os.nice(CHILD_NICE)
    except OSError:  # not allowed: the same priority
        pass
    ask = json.loads(sys.stdin.read())
    engine = make_engine(ask["url"])
    try:
        r = _here(engine, ask["version_id"], ask["labels"])
        answer = {"newest": r.newest, "ids": [int(i) for i in r.ids], "rows": r.rows}
    except UserError as exc:
        answer = {"error": str(exc)}
    finally:
        engine.dispose()
    answer["peak_mb"] = _peak_mb()
    print(json.dumps(answer))


def _peak_mb() -> float:
    """This process's peak resident memory since it started (VmHWM: per address space, so after the
    exec; getrusage's ru_maxrss would also count the app's pages the fork shared before the exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: an upper bound


if __name__ == "__main__":
    main()
