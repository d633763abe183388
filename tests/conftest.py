"""Shared fixtures: temporary settings and database, the packaged MiniLM BERT, a tiny labelled
sample of the bundled tweets, a small trained version, and the launched app (for API and
browser tests).

Storage tests take `engine` (migrated to head) or `bare_engine` (empty), parametrized over
SQLite (a new temporary file) and PostgreSQL (a new schema per test in the database of
BERTDEMO_DB_URL; skipped unless that is a postgresql URL, e.g.
postgresql+psycopg://bertdemo:bertdemo@127.0.0.1:5432/bertdemo_test)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from bertdemo import auth
from bertdemo.config import BUNDLED_DATASET, REPO_ROOT, Settings, packaged_model_path
from bertdemo.db import examples
from bertdemo.db.engine import init_db, make_engine
from bertdemo.model.classifier import Classifier
from bertdemo.services import Services
from bertdemo.training.config import TrainConfig

LABELS = ("negative", "neutral", "positive")
# a few optimizer steps: enough to move predictions, small enough for CI's 2 cores
TINY_TRAIN = TrainConfig(epochs=1, max_length=32, batch_size=16, evals_per_epoch=2, learning_rate=1e-4)


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """240 bundled tweets, 80 per class (balanced so a few steps learn something)."""
    df = pd.read_csv(BUNDLED_DATASET, dtype={"id": str}, keep_default_na=False)
    sample = df.groupby("label", group_keys=False).sample(n=80, random_state=0)
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    sample.to_csv(path, index=False)
    return path


@pytest.fixture
def settings(tmp_path, tiny_csv) -> Settings:
    return Settings(data_dir=tmp_path / "runtime", dataset_path=tiny_csv, initial_epochs=1)


@pytest.fixture
def services(settings) -> Services:
    return Services.create(settings)


def postgres_url() -> str | None:
    """BERTDEMO_DB_URL when it names a PostgreSQL database (the storage tests' second backend)."""
    url = os.environ.get("BERTDEMO_DB_URL", "")
    return url if url.startswith("postgresql") else None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """The URL of a clean, empty database of each backend, removed afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 't.sqlite3'}"
        return
    base = postgres_url()
    if base is None:
        pytest.skip("BERTDEMO_DB_URL is not a postgresql:// URL")
    # a schema per test: as clean as a new database, much cheaper, and nothing is left behind
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def bare_engine(db_url) -> Iterator[Engine]:
    """An engine (store.make_engine) on the empty database of `db_url`."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()  # PostgreSQL: close pooled connections before the schema is dropped


@pytest.fixture
def engine(bare_engine) -> Engine:
    """An engine on a database migrated to the newest schema (store.init_db)."""
    init_db(bare_engine)
    return bare_engine


@pytest.fixture(scope="session")
def base_clf() -> Classifier:
    """The packaged encoder with a fresh (untrained) 3-class head."""
    return Classifier.load(packaged_model_path(), LABELS)


@pytest.fixture(scope="session")
def trained_services(tmp_path_factory, tiny_csv) -> Services:
    """Services with the tiny sample imported and version v1 trained and active (read-only use)."""
    s = Settings(data_dir=tmp_path_factory.mktemp("trained") / "runtime", dataset_path=tiny_csv)
    services = Services.create(s)
    services.ensure_dataset()
    services.jobs.run_sync(TINY_TRAIN, user="test")
    return services


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launched_app(data_dir: Path, tiny_csv: Path, ready: Callable[[str], bool], timeout: float = 300) -> Iterator[str]:
    """`python app.py` in a subprocess on `data_dir` (first start: imports the tiny sample and
    trains version 1, exactly as a fresh install does with the full data); yields its URL once
    `ready(url)` returns True, and stops it afterwards."""
    port = _free_port()
    env = os.environ | {
        "BERTDEMO_DATA_DIR": str(data_dir), "BERTDEMO_DATASET": str(tiny_csv), "BERTDEMO_INITIAL_EPOCHS": "1",
        "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
        "BERTDEMO_MAX_UPLOAD_MB": "1",
        "BERTDEMO_DB_URL": "",  # its own SQLite file, never the database the storage tests were pointed at
    }
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
    example's (id, label, version, text key), of the label history, the versions and the runs.
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
                            ("users", "id, name, role")):
            rows = con.execute(f"SELECT {cols} FROM {table} ORDER BY id").fetchall()  # noqa: S608 - fixed names
            out[table] = (len(rows), hashlib.sha1(repr(rows).encode()).hexdigest())
        return out
    finally:
        con.close()


@pytest.fixture(scope="session")
def app_launcher():
    """`launched_app`, for test modules that need the app with their own data (accounts, ...)."""
    return launched_app


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, tiny_csv):
    """The app on a fresh data dir, once version 1 answers /predict."""
    from gradio_client import Client

    def ready(url: str) -> bool:
        Client(url, verbose=False).predict("hello", api_name="/predict")  # raises until version 1 is ready
        return True

    with launched_app(tmp_path_factory.mktemp("app") / "runtime", tiny_csv, ready, timeout=240) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Debian chromium driven by playwright (its own browser download does not work here)."""
    pw_mod = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        if os.environ.get("CI"):  # CI installs it (.ci/run): a missing browser there is a failure
            pytest.fail("Debian chromium is missing: .ci/run should have installed it")
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    with pw_mod.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def seed_data_dir(data_dir: Path, accounts: list[tuple[str, str, str]], unlabeled: list[str]) -> None:
    """A data dir for `launched_app` with accounts (name, password, role) and unlabelled examples
    (imported as a person would, cleaned) besides what the first start imports."""
    from sqlalchemy.orm import Session

    from bertdemo.text import clean_text

    data_dir.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{data_dir / 'bertdemo.sqlite3'}")
    init_db(engine)
    for name, password, role in accounts:
        auth.add_user(engine, name, password, role)
    with Session(engine) as s, s.begin():
        examples.import_examples(s, [examples.NewExample(clean_text(t), t) for t in unlabeled], "import", "test", LABELS)
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


@pytest.fixture
def page(browser, app_url):
    ctx = browser.new_context(viewport={"width": 1300, "height": 1400})
    pg = ctx.new_page()
    pg.goto(app_url)
    yield pg
    ctx.close()
