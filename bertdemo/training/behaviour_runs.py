"""Running the behaviour suite on the serving paths a version may use, and keeping the results:
PyTorch always, and the version's int8 graph (model/int8.py) when one was built for it and this
machine runs it. Each path's results replace that version's last run on that path in the database
(db/behaviour_tests.py), so the review and the Train tab show them without running the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from bertdemo.db import behaviour_tests
from bertdemo.model import int8
from bertdemo.model.classifier import Classifier
from bertdemo.training.behaviour import BehaviourTest, Failure, TestResult, run_suite

PYTORCH, INT8 = "pytorch", "int8"
PATHS = (PYTORCH, INT8)
KEEP_FAILURES = 50  # failing cases stored per test and path: enough to read, bounded in size


@dataclass(frozen=True)
class PathRun:
    """The suite's results on one serving path of a version."""
    path: str  # pytorch | int8
    note: str  # what scored: "PyTorch bf16", "int8 (OpenVINO)"
    results: tuple[TestResult, ...]


def int8_graph(folder: Path) -> Path | None:
    """The version's int8 graph when it was built and this machine can run it, else None."""
    f = folder / int8.FOLDER / int8.INT8_FILE
    return f if f.is_file() and int8.missing_runtime() is None else None


def run_paths(clf: Classifier, folder: Path, tests: Sequence[BehaviourTest],
              labels: Sequence[str]) -> tuple[list[PathRun], str]:
    """Run `tests` on `clf` (loaded from `folder`) in PyTorch and, when the folder holds an int8
    graph this CPU runs, on that graph; and a sentence on a path that was not run ("" when both
    ran). `clf` must not be the serving classifier: its graph is switched here."""
    graph = clf.graph
    clf.use_graph(None)
    runs = [PathRun(PYTORCH, f"PyTorch {clf.amp_path}", tuple(run_suite(tests, clf.predict_proba, labels)))]
    if clf.device.type != "cpu":
        return runs, f"The int8 path was not run: the model runs on {clf.device.type}, where PyTorch serves."
    f = int8_graph(folder)
    if f is None:
        why = int8.missing_runtime() or "no int8 graph was built for this version (it is built when it first serves)"
        return runs, f"The int8 path was not run: {why}."
    clf.use_graph(graph if getattr(graph, "path", None) == f else int8.open_scorer(f.parent, clf.max_threads))
    runs.append(PathRun(INT8, "int8 (OpenVINO)", tuple(run_suite(tests, clf.predict_proba, labels))))
    return runs, ""


def _failure_json(f: Failure) -> dict:
    return {"text": f.text, "original": f.original, "expected": f.expected, "got": f.got, "probs": list(f.probs)}


def save(engine: Engine, version_id: int, run: PathRun) -> None:
    """Keep `run` as version `version_id`'s results on its path (replacing the last ones)."""
    rows = [{"test_name": r.name, "kind": r.kind, "must_pass": r.must_pass, "n": r.n, "n_failed": r.n_failed,
             "failures": [_failure_json(f) for f in r.failures[:KEEP_FAILURES]]} for r in run.results]
    with Session(engine) as s, s.begin():
        behaviour_tests.save_results(s, version_id, run.path, rows)


def _result(row: behaviour_tests.BehaviourResult) -> TestResult:
    failures = tuple(Failure(f["text"], f.get("original"), f["expected"], f["got"], tuple(f.get("probs") or ()))
                     for f in row.failures or ())
    return TestResult(row.test_name, row.kind, row.must_pass, row.n, row.n_failed, failures)


def stored(engine: Engine, version_id: int) -> list[PathRun]:
    """Version `version_id`'s stored results, one PathRun per path that has them (pytorch first)."""
    with Session(engine) as s:
        rows = behaviour_tests.results_of(s, version_id)
        by_path = {p: tuple(_result(r) for r in rows if r.path == p) for p in sorted({r.path for r in rows},
                                                                                    key=_path_order)}
    return [PathRun(p, "stored", results) for p, results in by_path.items()]


def _path_order(path: str) -> tuple[int, str]:
    return (PATHS.index(path) if path in PATHS else len(PATHS), path)
