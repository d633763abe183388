"""What the load benchmarks share: launching `app.py` on a data dir, gradio_client sessions that
do not burn the load generator's CPU, latency percentiles, server CPU, and the check of label
saves against the database (lost / duplicated writes)."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.db import versions
from bertdemo.db.engine import init_db, make_engine
from bertdemo.db.models import Example, LabelEvent, Score

PASSWORD = "bench-password"

# One SSL context for every request: gradio_client makes a new httpx client per call, and httpx
# builds a fresh SSLContext for each (~10-20 ms of CPU) even on plain http. Sharing one keeps the
# load generator from eating the 2 cores the server needs; it changes nothing on the server side.
SSL_CONTEXT = ssl.create_default_context()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def db_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'bertdemo.sqlite3'}"


def add_accounts(data_dir: Path, names: Sequence[str], role: str = "annotator") -> None:
    """One account per name (password PASSWORD), on the database of `data_dir`; existing ones are kept."""
    engine = make_engine(db_url(data_dir))
    init_db(engine)
    for name in names:
        try:
            auth.add_user(engine, name, PASSWORD, role)
        except ValueError as exc:
            if "exists already" not in str(exc):
                raise
    engine.dispose()


def launch(data_dir: Path, port: int, **env: str) -> subprocess.Popen:
    """`python app.py` on `data_dir` (its own SQLite file), output to data_dir/app.log."""
    full = os.environ | {"BERTDEMO_DATA_DIR": str(data_dir), "BERTDEMO_DB_URL": "",
                         "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                         "GRADIO_ANALYTICS_ENABLED": "False"} | env
    with open(data_dir / "app.log", "a") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=full, stdout=out, stderr=subprocess.STDOUT)


def client(url: str, user: str | None):
    """A gradio_client session (signed in as `user` with PASSWORD, if given) sharing SSL_CONTEXT."""
    from gradio_client import Client

    return Client(url, auth=(user, PASSWORD) if user else None, verbose=False,
                  ssl_verify=SSL_CONTEXT)  # type: ignore[arg-type]


def wait_ready(url: str, proc: subprocess.Popen, user: str | None, timeout: float = 180,
               probe: Callable[[object], object] | None = None) -> None:
    """Until a session opens (and `probe(client)` succeeds, if given); SystemExit if the app dies."""
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}")
        try:
            c = client(url, user)
            if probe is not None:
                probe(c)
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.time() > deadline:
                raise SystemExit(f"app.py was not ready within {timeout:.0f} s") from None
            time.sleep(1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serving_and_scored(data_dir: Path) -> bool:
    """An active version whose scores cover every example (the start's re-scoring is done); False
    too while the starting app has not made the tables yet."""
    engine = make_engine(db_url(data_dir))
    try:
        with Session(engine) as s:
            v = versions.active_version(s)
            if v is None:
                return False
            n = s.scalar(select(func.count()).select_from(Score).where(Score.version_id == v.id))
            return n == s.scalar(select(func.count()).select_from(Example)) > 0
    except OperationalError:  # no such table: the app is still migrating a new database
        return False
    finally:
        engine.dispose()


def prepare_trained(data_dir: Path, initial_epochs: float, timeout: float = 1800) -> None:
    """Make `data_dir` a data dir with a trained, scored version 1: the app's first start (bundled
    tweets, v1 fine-tuned for `initial_epochs`), stopped once v1 serves and its scores are stored."""
    if (data_dir / "bertdemo.sqlite3").exists():
        if serving_and_scored(data_dir):
            return
        raise SystemExit(f"{data_dir} has a database without a scored active version: remove it first")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = launch(data_dir, port, BERTDEMO_INITIAL_EPOCHS=str(initial_epochs))
    try:
        deadline = time.time() + timeout
        while not serving_and_scored(data_dir):
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"no scored version 1 in {data_dir} (see its app.log)")
            time.sleep(3)
    finally:
        stop(proc)


def copy_data_dir(source: Path, data_dir: Path) -> None:
    """A data dir made by prepare_trained into `data_dir`: its SQLite file copied with SQLite's
    online backup (consistent even while an app uses it), its model folders hard-linked (the app
    only reads them; linking costs no disk and no time)."""
    src_path = source / "bertdemo.sqlite3"
    if not src_path.is_file():
        raise SystemExit(f"--data-dir: no database at {src_path}")
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    dst = sqlite3.connect(data_dir / "bertdemo.sqlite3")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    if (source / "models").is_dir():
        shutil.copytree(source / "models", data_dir / "models", copy_function=os.link)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), for the report."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def percentiles(seconds: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, max) in milliseconds; NaN when empty."""
    ms = sorted(x * 1000 for x in seconds)
    if not ms:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(ms), ms[int(0.95 * (len(ms) - 1))], ms[-1]


def examples(data_dir: Path) -> list[tuple[int, int]]:
    """(id, version) of every example, by id."""
    engine = make_engine(db_url(data_dir))
    with Session(engine) as s:
        rows = [(int(i), int(v)) for i, v in s.execute(select(Example.id, Example.version)
                                                       .order_by(Example.id))]
    engine.dispose()
    return rows


def last_event_id(data_dir: Path) -> int:
    """The newest history row's id (0 if none): verify_saves looks only at rows after it."""
    engine = make_engine(db_url(data_dir))
    with Session(engine) as s:
        n = s.scalar(select(func.max(LabelEvent.id))) or 0
    engine.dispose()
    return int(n)


def verify_saves(data_dir: Path, acks: Sequence[tuple[int, int, str]], after_event_id: int = 0) -> tuple[int, int, int]:
    """(lost, duplicated, version mismatches) between acknowledged saves, as (example id, version,
    user), and the `annotator` history rows written after `after_event_id`: lost = acknowledged
    but not stored, duplicated = stored but not acknowledged, or stored twice; a mismatch is an
    example (any) whose version is not its number of history rows."""
    engine = make_engine(db_url(data_dir))
    with Session(engine) as s:
        stored = Counter((e, v, u) for e, v, u in s.execute(
            select(LabelEvent.example_id, LabelEvent.version, LabelEvent.user)
            .where(LabelEvent.source == "annotator", LabelEvent.id > after_event_id)))
        n_events = dict(s.execute(select(LabelEvent.example_id, func.count())
                                  .group_by(LabelEvent.example_id)).all())
        mismatched = sum(1 for i, v in s.execute(select(Example.id, Example.version))
                         if v != n_events.get(i, 0))
    engine.dispose()
    acked = Counter(acks)
    lost = sum((acked - stored).values())
    duplicated = sum((stored - acked).values()) + sum(n - 1 for n in stored.values() if n > 1)
    return lost, duplicated, mismatched


def cpu_model() -> str:
    """`lscpu`'s model name, printed with every bench row (a path that wins on one CPU can lose on another)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"
