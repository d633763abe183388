"""Two real app processes (`python app.py`) on one PostgreSQL database and one data directory,
as behind a reverse proxy (docs/operations.md, "Several app processes"):

- an activation in one (a rollback to v1 through /activate_version) is served by the other within
  a few seconds (its /predict answers as v1 does, where v2 answered differently);
- two people asking for work at the same moment on different processes never hold the same
  item's lease (/next_item, concurrently, round after round);
- while a training run runs in one process, /start_training on the other is refused naming it,
  and its /training_status shows the run.

The data is the `two_versions` data dir (v1 and v2 trained, v2 serving, both scored) copied into
a PostgreSQL schema of its own; skipped unless BERTDEMO_DB_URL names a PostgreSQL database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.config import REPO_ROOT
from bertdemo.db import examples
from bertdemo.db.engine import init_db, make_engine
from bertdemo.db.models import Base
from bertdemo.text import clean_text
from tests.support import LABELS, free_port, postgres_schema, postgres_url, wait_for

BOSS, ANN, BOB = ("boss", "boss-password"), ("ann", "ann-password"), ("bob", "bob-password")
TEXT = "the crew was lovely but the flight was late"
ROUNDS = 8  # of /next_item by ann and bob at once
# a run that lasts some seconds (3 epochs of the tiny sample), not served when trained
TRAIN = (3, 1e-4, 16, 32, 1, "full fine-tune", "base encoder", 0, False)

pytestmark = pytest.mark.skipif(postgres_url() is None, reason="BERTDEMO_DB_URL is not a postgresql:// URL")


def _copy_database(sqlite_file: Path, url: str) -> None:
    """Every row of the app's tables from the SQLite file into the (migrated) database at `url`,
    ids kept, then the id sequences moved past them."""
    src, dst = make_engine(f"sqlite:///{sqlite_file}"), make_engine(url)
    init_db(src)  # the same schema on both sides
    init_db(dst)
    with src.connect() as a, dst.begin() as b:
        for table in Base.metadata.sorted_tables:
            rows = [dict(r._mapping) for r in a.execute(table.select())]
            if rows:
                b.execute(table.insert(), rows)
            if "id" in table.c and rows:
                b.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                  f"(SELECT max(id) FROM {table.name}))"))
    src.dispose()
    for name, password, role in (BOSS + ("admin",), ANN + ("annotator",), BOB + ("annotator",)):
        auth.add_user(dst, name, password, role)
    with Session(dst) as s, s.begin():  # work to hand out: the tiny sample is all labelled
        examples.import_examples(s, [examples.NewExample(clean_text(t), t) for t in
                                     (f"flight {i} to Boston was {w}" for i in range(40) for w in ("late",))],
                                 "import", "test", LABELS)
    dst.dispose()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A schema of its own in the database of BERTDEMO_DB_URL, dropped afterwards."""
    with postgres_schema(postgres_url()) as url:
        yield url


def _client(url: str, who: tuple[str, str]):
    from gradio_client import Client

    return Client(url, auth=who, verbose=False)


@pytest.fixture(scope="module")
def apps(tmp_path_factory, two_versions, pg_url) -> Iterator[tuple[str, str, Path]]:
    """Two app processes on one data dir and one PostgreSQL schema, started at once; (url A,
    url B, data dir) once both answer /predict."""
    data = tmp_path_factory.mktemp("two-processes") / "runtime"
    shutil.copytree(two_versions, data)
    _copy_database(data / "bertdemo.sqlite3", pg_url)
    for f in data.glob("bertdemo.sqlite3*"):  # the apps must use PostgreSQL: no SQLite file to fall back on
        f.unlink()
    procs, urls, logs = [], [], []
    for name in ("a", "b"):
        port = free_port()
        env = os.environ | {
            "BERTDEMO_DATA_DIR": str(data), "BERTDEMO_DB_URL": pg_url, "BERTDEMO_SERVING": "bf16",
            "BERTDEMO_BOOTSTRAP": "0", "BERTDEMO_QUICK_FIRST": "0", "BERTDEMO_SHARED": "0",
            "BERTDEMO_ADMIN_PASSWORD": "", "BERTDEMO_PICKUP_SECONDS": "1",
            "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
        logs.append(open(data.parent / f"app-{name}.log", "w"))  # noqa: SIM115 - the child writes it until the end
        procs.append(subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=logs[-1],
                                      stderr=subprocess.STDOUT))
        urls.append(f"http://127.0.0.1:{port}/")
    try:
        for proc, url, name in zip(procs, urls, "ab"):
            def ready(proc=proc, url=url, name=name) -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"app {name} exited: {(data.parent / f'app-{name}.log').read_text()[-3000:]}")
                try:
                    return bool(_client(url, ANN).predict(TEXT, api_name="/predict")["label"])
                except Exception:  # noqa: BLE001 - still starting
                    return False

            wait_for(ready, timeout=180, interval=1, what=f"app {name} answering /predict")
        yield urls[0], urls[1], data
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def _confidences(client) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in client.predict(TEXT, api_name="/predict")["confidences"]}


def _same(p: dict[str, float], q: dict[str, float], tol: float = 1e-4) -> bool:
    return all(abs(p[k] - q[k]) <= tol for k in p)


def test_an_activation_in_one_process_is_served_by_the_other(apps):
    url_a, url_b, data = apps
    boss_a, ann_b = _client(url_a, BOSS), _client(url_b, ANN)
    v2 = _confidences(ann_b)
    assert _same(v2, _confidences(_client(url_a, ANN)))  # both serve v2
    assert boss_a.predict("v1", api_name="/activate_version").startswith("Now serving **v1**")
    v1 = _confidences(_client(url_a, ANN))
    assert not _same(v1, v2, 1e-3), (v1, v2)  # the two versions answer differently
    activated = time.monotonic()
    wait_for(lambda: _same(_confidences(ann_b), v1), timeout=10, interval=0.25, what="process B serving v1")
    assert time.monotonic() - activated < 10
    assert not (data / "bertdemo.sqlite3").exists()  # they did use PostgreSQL


def test_two_people_on_two_processes_never_hold_the_same_item(apps):
    url_a, url_b, _data = apps
    people = {"ann": _client(url_a, ANN), "bob": _client(url_b, BOB)}
    for _round in range(ROUNDS):
        got: dict[str, int | None] = {}
        barrier = threading.Barrier(2)

        def ask(name: str, barrier: threading.Barrier = barrier, got: dict = got) -> None:
            barrier.wait()
            item = people[name].predict("unlabeled", "", [], api_name="/next_item")
            got[name] = item["id"] if item else None

        threads = [threading.Thread(target=ask, args=(n,)) for n in people]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert got["ann"] is not None and got["bob"] is not None, got
        assert got["ann"] != got["bob"], f"both hold example {got['ann']}"
        for name, client in people.items():  # free both: the next round races for the same first items again
            assert client.predict(got[name], api_name="/skip_item") is True


def test_a_second_training_start_on_the_other_process_is_refused(apps):
    from gradio_client.exceptions import AppError

    url_a, url_b, _data = apps
    boss_a, boss_b = _client(url_a, BOSS), _client(url_b, BOSS)
    started = boss_a.predict(*TRAIN, api_name="/start_training")
    assert started.startswith("Training run #"), started
    run_id = int(started.split("#")[1].split(" ")[0].rstrip(";"))
    with pytest.raises(AppError, match=rf"run #{run_id} \(started by boss\) is in progress in another app process"):
        boss_b.predict(*TRAIN, api_name="/start_training")
    st = boss_b.predict(api_name="/training_status")
    assert st["state"] == "running" and st["run_id"] == run_id and "another app process" in st["message"], st
    done = wait_for(lambda: (s := boss_a.predict(api_name="/training_status"))["state"] != "running" and s,
                    timeout=120, interval=1, what="the run in process A ending")
    assert done["state"] == "succeeded", done
