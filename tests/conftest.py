"""Shared fixtures: temporary settings and database, the packaged MiniLM BERT, a tiny labelled
sample of the bundled tweets, a small trained version, and the launched app (for API and
browser tests). Plain helpers and constants (LABELS, TINY_TRAIN, launched_app, ...) are in
tests/support.py.

Storage tests take `engine` (migrated to head) or `bare_engine` (empty), parametrized over
SQLite (a new temporary file) and PostgreSQL (a new schema per test in the database of
BERTDEMO_DB_URL; skipped unless that is a postgresql URL, e.g.
postgresql+psycopg://bertdemo:bertdemo@127.0.0.1:5432/bertdemo_test)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from bertdemo.config import BUNDLED_DATASET, Settings, packaged_model_path
from bertdemo.db.engine import init_db, make_engine
from bertdemo.model.classifier import Classifier
from bertdemo.services import Services
from bertdemo.training.config import TrainConfig
from tests.support import LABELS, TINY_TRAIN, launched_app, postgres_schema, postgres_url

# PyTorch serves in tests and in the apps and CLI runs they start, unless a test chooses a path:
# building and gating the int8 graph adds ~15 s of CPU after every training run (its own tests,
# tests/unit/model/test_int8.py and tests/unit/training/test_serving.py, ask for it)
os.environ.setdefault("BERTDEMO_SERVING", "bf16")


@pytest.fixture(autouse=True)
def _suggestion_audit_off(monkeypatch) -> None:
    """The suggestion-bias audit hides the suggestion of a random 10% of hand-outs by default: off in
    tests that do not set its share themselves (tests of the audit set it; see also first_start)."""
    monkeypatch.setattr("bertdemo.actions.distribution.AUDIT_DEFAULT", 0.0)


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
    return Settings(serving="bf16", data_dir=tmp_path / "runtime", dataset_path=tiny_csv, datasets=("airline",), initial_epochs=1)


@pytest.fixture
def services(settings) -> Services:
    return Services.create(settings)


@pytest.fixture
def team_services(tmp_path) -> Services:
    """Services on an empty database (no bundled data, 5-minute leases) with an admin `boss` and the
    annotators `ann` and `bob` (the suggestion-bias audit's and the annotation time's tests)."""
    from bertdemo.auth import add_user

    settings = Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False, lease_minutes=5)
    services = Services.create(settings)
    add_user(services.engine, "boss", "password-boss", "admin")
    for name in ("ann", "bob"):
        add_user(services.engine, name, f"password-{name}", "annotator")
    return services


@pytest.fixture
def behaviour_actions(tmp_path) -> Iterator:
    """BehaviourActions on an empty database (no bundled data) with an admin `boss` and an annotator
    `ann` (the behaviour tests' actions and their panel's handlers)."""
    from bertdemo.actions.behaviour import BehaviourActions
    from bertdemo.auth import add_user

    services = Services.create(Settings(serving="bf16", data_dir=tmp_path / "rt", bootstrap=False))
    add_user(services.engine, "boss", "password-boss", "admin")
    add_user(services.engine, "ann", "password-ann", "annotator")
    yield BehaviourActions(services)
    services.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """The URL of a clean, empty database of each backend, removed afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 't.sqlite3'}"
        return
    base = postgres_url()
    if base is None:
        pytest.skip("BERTDEMO_DB_URL is not a postgresql:// URL")
    with postgres_schema(base) as url:  # a schema per test: nothing is left behind
        yield url


@pytest.fixture
def bare_engine(db_url) -> Iterator[Engine]:
    """An engine (bertdemo.db.engine.make_engine) on the empty database of `db_url`."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()  # PostgreSQL: close pooled connections before the schema is dropped


@pytest.fixture
def engine(bare_engine) -> Engine:
    """An engine on a database migrated to the newest schema (bertdemo.db.engine.init_db)."""
    init_db(bare_engine)
    return bare_engine


@pytest.fixture(scope="session")
def base_clf() -> Classifier:
    """The packaged encoder with a fresh (untrained) 3-class head."""
    return Classifier.load(packaged_model_path(), LABELS)


@pytest.fixture(scope="session")
def trained_services(tmp_path_factory, tiny_csv) -> Services:
    """Services with the tiny sample imported and version v1 trained and active (read-only use)."""
    s = Settings(serving="bf16", data_dir=tmp_path_factory.mktemp("trained") / "runtime", dataset_path=tiny_csv, datasets=("airline",))
    services = Services.create(s)
    services.ensure_dataset()
    services.jobs.run_sync(TINY_TRAIN, user="test")
    return services


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory, trained_services):
    """A data directory with v1 and v2 (v2 active): a copy of the trained one plus a short run
    (read-only: tests copy it before they change it)."""
    data = tmp_path_factory.mktemp("two") / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    services = Services.create(trained_services.settings.with_(data_dir=data))
    # 2 steps with the plain loss: seeded, it passes the activation gate against the tiny v1 (0.29 vs
    # 0.43, an interval that holds 0 on 24 validation tweets); with the logit-adjusted loss its interval
    # ends below 0 and the gate rightly keeps v1 serving
    services.jobs.run_sync(TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 2, "logit_adjustment": 0.0})),
                           user="test")
    assert services.registry.active_version().name == "v2"
    services.engine.dispose()
    return data


@pytest.fixture(scope="session")
def app_launcher():
    """`tests.support.launched_app`, for test modules that need the app with their own data (accounts, ...)."""
    return launched_app


@pytest.fixture(scope="session")
def first_start(tmp_path_factory, tiny_csv) -> Path:
    """A data dir as the launched app's first start leaves it (the tiny sample imported, version 1
    fine-tuned for one epoch, served and every example scored), made once in-process. The app
    fixtures that do not test the first start itself copy it (`copy_first_start`), so each launch
    is a restart (~15 s on 2 cores) instead of a first start (~40 s)."""
    data = tmp_path_factory.mktemp("first-start") / "runtime"
    settings = Settings(serving="bf16", data_dir=data, dataset_path=tiny_csv, datasets=("airline",),
                        initial_epochs=1, quick_first=False)  # what launched_app's environment sets
    services = Services.create(settings)
    services.start()
    status = services.jobs.wait(600)  # the run thread ends after v1 serves and its re-scoring
    assert status.state == "succeeded", status
    assert services.registry.active_version().name == "v1"
    from bertdemo.actions.suggestion_audit import SuggestionAudit
    SuggestionAudit(services).set_share(0, None)  # the launched apps' audit is off unless a test sets it
    services.engine.dispose()
    return data


@pytest.fixture(scope="session")
def copy_first_start(first_start):
    """copy(data_dir): `data_dir` becomes a copy of `first_start` (then seed it, launch on it)."""
    def copy(data_dir: Path) -> Path:
        shutil.copytree(first_start, data_dir)
        return data_dir

    return copy


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, tiny_csv, copy_first_start):
    """The app on a copy of the first start's data dir, once version 1 answers /predict."""
    from gradio_client import Client

    def ready(url: str) -> bool:
        Client(url, verbose=False).predict("hello", api_name="/predict")  # raises until version 1 is ready
        return True

    data_dir = copy_first_start(tmp_path_factory.mktemp("app") / "runtime")
    with launched_app(data_dir, tiny_csv, ready, timeout=240) as url:
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


@pytest.fixture
def page(browser, app_url):
    ctx = browser.new_context(viewport={"width": 1300, "height": 1400})
    pg = ctx.new_page()
    pg.goto(app_url)
    yield pg
    ctx.close()
