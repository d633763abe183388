"""Plain helpers and constants shared by the tests (the fixtures are in tests/conftest.py):
the labels, a tiny training configuration, the PostgreSQL URL of the storage tests, the launched
app and what its database holds, a seeded data dir and a signed-in browser page.

Import them as `from tests.support import ...`."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa

from bertdemo import auth
from bertdemo.config import REPO_ROOT
from bertdemo.db import examples
from bertdemo.db.engine import init_db, make_engine
from bertdemo.training.config import TrainConfig

LABELS = ("negative", "neutral", "positive")
# a few optimizer steps: enough to move predictions, small enough for CI's 2 cores
TINY_TRAIN = TrainConfig(epochs=1, max_length=32, batch_size=16, evals_per_epoch=2, learning_rate=1e-4)


class FakeRequest:
    """The parts of a gr.Request that ui/common.user_of and guest_key read: the signed-in name, the
    Gradio session, and the HTTP request's cookies (a browser's guest key)."""

    def __init__(self, username: str | None = None, cookies: dict | None = None,
                 session_hash: str | None = None) -> None:
        self.username, self.session_hash = username, session_hash
        self.request = types.SimpleNamespace(cookies=cookies or {})


def postgres_url() -> str | None:
    """BERTDEMO_DB_URL when it names a PostgreSQL database (the storage tests' second backend)."""
    url = os.environ.get("BERTDEMO_DB_URL", "")
    return url if url.startswith("postgresql") else None


@contextlib.contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL of the database `base` names, in a fresh schema of its own (as clean as a new database,
    much cheaper), dropped with everything in it afterwards."""
    import uuid

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def old_export(io, dest: Path) -> None:
    """The export as it was built before streaming (issue 26): every row in one DataFrame, then
    write_csv; what the streamed export must equal (tests) and is measured against (bench)."""
    import pandas as pd
    from sqlalchemy.orm import Session

    from bertdemo.actions.transfer import EXPORT_COLUMNS
    from bertdemo.datasets import write_csv
    from bertdemo.db.models import Example as E

    with Session(io.engine) as s:
        rows = s.execute(sa.select(E.id, E.external_id, E.raw_text, E.text, E.label, E.updated_by, E.updated_at,
                                   E.source, E.dataset).order_by(E.id)).all()
        changes = examples.change_counts(s)
    notes = io._notes.for_export()
    frame = pd.DataFrame(
        [(i, ext or "", raw, cleaned, lab or "", who or "", at.isoformat(sep=" ", timespec="seconds") if at else "",
          changes.get(i, 0), src, ds or "", notes.get(i, "")) for i, ext, raw, cleaned, lab, who, at, src, ds in rows],
        columns=EXPORT_COLUMNS)
    write_csv(frame, dest)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serves_a_version(db: Path) -> bool:
    """True once the app's SQLite file marks a version active. A `ready` probe usually builds a
    gradio_client (and signs in), a second or more of CPU on these 2 cores each time; polling with
    it while version 1 trains slowed every launch."""
    if not db.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT 1 FROM model_versions WHERE is_active LIMIT 1").fetchone() is not None
        finally:
            con.close()
    except sqlite3.Error:  # not created or not migrated yet, or locked for a moment
        return False


@contextlib.contextmanager
def launched_app(data_dir: Path, tiny_csv: Path, ready: Callable[[str], bool], timeout: float = 300,
                 env: dict[str, str] | None = None) -> Iterator[str]:
    """`python app.py` in a subprocess on `data_dir` (first start: imports the tiny sample and
    trains version 1, exactly as a fresh install does with the full data); yields its URL once
    `ready(url)` returns True, and stops it afterwards. `env`: more variables (e.g. BERTDEMO_SHARED)."""
    port = free_port()
    env = os.environ | {
        "BERTDEMO_DATA_DIR": str(data_dir), "BERTDEMO_DATASET": str(tiny_csv), "BERTDEMO_DATASETS": "airline",
        "BERTDEMO_INITIAL_EPOCHS": "1",
        "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
        "BERTDEMO_MAX_UPLOAD_MB": "1", "BERTDEMO_MAX_IMPORT_MB": "1", "BERTDEMO_MAX_IMPORT_ROWS": "200000",
        # PyTorch serves: building the int8 graph would add ~10 s of CPU to every launched app
        # (tests/unit/training/test_serving.py covers that path)
        "BERTDEMO_SERVING": "bf16",
        "BERTDEMO_DB_URL": "",  # its own SQLite file, never the database the storage tests were pointed at
        "BERTDEMO_SHARED": "0", "BERTDEMO_ADMIN_PASSWORD": "",  # a local app unless the test says otherwise
        # version 1 is the fine-tuned one, as most tests expect; tests/api/test_quick_first.py turns the
        # quick first version (training/quick_first.py) on
        "BERTDEMO_QUICK_FIRST": "0",
    } | (env or {})
    log_path = data_dir.parent / "app.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
            if time.time() > deadline:
                raise RuntimeError(f"app.py was not ready within {timeout:.0f} s: {log_path.read_text()[-3000:]}")
            if not serves_a_version(data_dir / "bertdemo.sqlite3"):
                time.sleep(0.5)  # a file read: no client on the app's cores while version 1 trains
                continue
            try:
                if ready(url):
                    break
            except Exception:  # noqa: BLE001 - still starting or still training
                pass
            time.sleep(2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def db_fingerprint(data_dir: Path) -> dict:
    """What a refused request must leave unchanged in the database of an app launched on
    `data_dir` (launched_app gives it its own SQLite file there): row counts, and digests of every
    example's (id, label, version, text key), of the label history, the versions, the runs, the leases,
    the admin settings and the comments.
    Read through a read-only connection, so the check itself never writes."""
    import hashlib
    import sqlite3

    path = data_dir / "bertdemo.sqlite3"
    assert path.exists(), f"no database at {path}"
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        out: dict = {}
        for table, cols in (("examples", "id, label, version, text_key"),
                            ("label_events", "id, example_id, label, user, source"),
                            ("model_versions", "id, name, is_active"), ("training_runs", "id, status"),
                            ("users", "id, name, role"), ("leases", "example_id, slot, user, done"),
                            ("app_settings", "key, value"), ("comments", "id, example_id, user, text")):
            rows = con.execute(f"SELECT {cols} FROM {table} ORDER BY {cols}").fetchall()  # noqa: S608 - fixed names
            out[table] = (len(rows), hashlib.sha1(repr(rows).encode()).hexdigest())
        return out
    finally:
        con.close()


def seed_data_dir(data_dir: Path, accounts: list[tuple[str, str, str]], unlabeled: list[str]) -> None:
    """A data dir for `launched_app` with accounts (name, password, role) and unlabelled examples
    (imported as a person would, cleaned) besides what the first start imports (or imported: on a
    copy of the first start the app scores them when it starts, Services.start -> rescore_if_missing)."""
    from sqlalchemy.orm import Session

    from bertdemo.text import clean_text

    data_dir.mkdir(parents=True, exist_ok=True)  # empty, or a copy of the first start (conftest.copy_first_start)
    engine = make_engine(f"sqlite:///{data_dir / 'bertdemo.sqlite3'}")
    init_db(engine)
    for name, password, role in accounts:
        auth.add_user(engine, name, password, role)
    with Session(engine) as s, s.begin():
        examples.import_examples(s, [examples.NewExample(clean_text(t), t) for t in unlabeled], "import", "test",
                                 LABELS)
        # on a copy of the first start: v1's scores are dropped, so the app re-scores every example
        # when it starts (Services.start -> rescore_if_missing), the new ones included
        s.execute(sa.text("DELETE FROM scores"))
    engine.dispose()


def signed_in_page(browser, url: str, who: tuple[str, str]):
    """A new browser context on the app's sign-in page, signed in as who = (name, password);
    (context, page) once the tabs show. The caller closes the context."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1300, "height": 1400})
    page = ctx.new_page()
    page.goto(url)
    page.get_by_label("username").fill(who[0])
    page.get_by_label("password").fill(who[1])
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_role("tab", name="Predict")).to_be_visible(timeout=30_000)
    return ctx, page


def wait_for(probe: Callable[[], object], timeout: float = 60.0, interval: float = 0.5,
             what: str = "the condition") -> object:
    """Call `probe` until it returns something truthy and return that; fail the test after `timeout`
    seconds, naming `what` and the last value seen. The one polling loop of the tests."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s (last seen: {last!r})")
        time.sleep(interval)


class FixedIndex:
    """What CorpusMap asks of SimilarExamples (its `index()`), over a fixed VectorIndex."""

    def __init__(self, index) -> None:
        self._index = index

    def index(self):
        return self._index


def synthetic_corpus(services, n: int, dim: int = 16, seed: int = 0):
    """`n` examples, half unlabelled, 1 % neutral (a rare colour), stored in one bulk insert
    (import_examples checks duplicates row by row: minutes at this size), and their VectorIndex:
    unit vectors of width `dim` around 5 centres. The map's browser test and bench/bench_map.py."""
    import numpy as np
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from bertdemo.db.models import Example, now
    from bertdemo.model.vectors import VectorIndex

    rng = np.random.default_rng(seed)
    labels = rng.choice([None, "negative", "positive", "neutral"], size=n, p=[0.5, 0.3, 0.19, 0.01])
    stamp = now()
    rows = [{"id": k + 1, "text": f"synthetic {k}", "raw_text": f"synthetic {k}", "text_key": f"k{k}",
             "source": "import", "dataset": "import", "meta": {}, "created_at": stamp, "label": lab,
             "version": int(lab is not None)} for k, lab in enumerate(labels)]
    with Session(services.engine) as s, s.begin():
        s.execute(insert(Example), rows)
    centres = rng.normal(size=(5, dim)) * 2
    v = centres[rng.integers(0, 5, n)] + rng.normal(size=(n, dim))
    return VectorIndex(np.arange(1, n + 1), (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
