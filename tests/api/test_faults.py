"""Faults: the launched app (`python app.py`) killed with SIGKILL, then restarted on the same data.

One data dir, one first start (imports the 240-tweet sample and trains a 2-step version 1), then
kill/restart cycles:

- killed mid-training: the database passes `PRAGMA integrity_check`, the interrupted run is
  recorded failed ("the app stopped during this run"), version 1 is still the active version and
  answers /predict exactly as before, and no half-written version is registered or left on disk
  (leftovers of a kill during the save itself, planted here, are removed at start);
- killed during a burst of concurrent /save_label calls: integrity_check ok, every acknowledged
  save is in `label_events` and in `examples`, and no example is half-written (its version equals
  its number of history rows, its label is its newest row's).

Why this holds: SQLite runs in WAL mode with synchronous=NORMAL. A transaction is acknowledged
only after its commit, and a commit is in the WAL file (the OS's page cache) when it returns, so
it survives the death of the process (SIGKILL, OOM killer, a crash), which is what is tested here.
It is not fsynced per commit, so a power loss or kernel crash may lose the last transactions
(never corrupt the database); model version files are fsynced before they are registered.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bertdemo.actions.train import MODES, STARTS
from bertdemo.config import REPO_ROOT
from bertdemo.ui.common import guest_name
from tests.support import LABELS, free_port, serves_a_version, wait_for

TEXTS = ["@united lost my bag again, worst airline", "thanks for the upgrade, the crew was great",
         "what time does the flight to Boston leave"]
BURST_THREADS = 8


class App:
    """`python app.py` on one data dir, started and SIGKILLed as often as a test likes."""

    def __init__(self, data_dir: Path, tiny_csv: Path) -> None:
        self.data_dir, self.tiny_csv = data_dir, tiny_csv
        self.db = data_dir / "bertdemo.sqlite3"
        self.log = data_dir.parent / "app.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.ssl = ssl.create_default_context()  # one for every client (gradio_client builds one per call)

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, ssl_verify=self.ssl)  # type: ignore[arg-type]

    def start(self, timeout: float = 240) -> None:
        """Start and wait until /predict answers (on a first start: once version 1 is trained)."""
        port = free_port()
        env = os.environ | {
            "BERTDEMO_DATA_DIR": str(self.data_dir), "BERTDEMO_DATASET": str(self.tiny_csv), "BERTDEMO_DATASETS": "airline",
            "BERTDEMO_INITIAL_EPOCHS": "0.3", "BERTDEMO_DB_URL": "", "BERTDEMO_SERVING": "bf16", "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
            "BERTDEMO_QUICK_FIRST": "0"}  # version 1 is the fine-tuned one (tests/api/test_quick_first.py: on)
        with open(self.log, "a") as out:
            out.write(f"\n===== start on port {port}\n")
            out.flush()
            self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=out,
                                         stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if not serves_a_version(self.db):  # a file read while version 1 trains, not a client
                    raise RuntimeError("no version serves yet")
                self.client().predict("hello", api_name="/predict")
                return
            except Exception:  # noqa: BLE001 - still starting, or version 1 still training
                if time.time() > deadline:
                    raise RuntimeError(f"app.py not ready in {timeout:.0f} s: {self.log.read_text()[-3000:]}") from None
                time.sleep(0.5)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler, no atexit, no flush runs in the app."""
        assert self.running()
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL

    def sql(self, query: str, *params) -> list[tuple]:
        """A query on the database file with plain sqlite3 (not the app's code)."""
        con = sqlite3.connect(self.db, timeout=30)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_csv):
    a = App(tmp_path_factory.mktemp("faults") / "runtime", tiny_csv)
    a.start()
    yield a
    if a.running():
        a.proc.kill()
        a.proc.wait(30)


def _predictions(client) -> list[dict]:
    return [client.predict(t, api_name="/predict") for t in TEXTS]


def _same_predictions(a: list[dict], b: list[dict]) -> bool:
    for x, y in zip(a, b, strict=True):
        if x["label"] != y["label"]:
            return False
        cx = {c["label"]: c["confidence"] for c in x["confidences"]}
        cy = {c["label"]: c["confidence"] for c in y["confidences"]}
        if cx.keys() != cy.keys() or any(abs(cx[k] - cy[k]) > 1e-4 for k in cx):
            return False
    return True


def test_sigkill_mid_training_keeps_the_database_and_the_serving_version(app):
    client = app.client()
    before = _predictions(client)
    assert app.sql("SELECT name FROM model_versions WHERE is_active") == [("v1",)]
    # v1 serves before its run ends (re-scoring follows, slower on a busy machine): wait for the run's end
    wait_for(lambda: client.predict(api_name="/training_status")["state"] != "running", timeout=120, interval=0.5,
             what="the first start's run to end")
    # long enough to be mid-run when killed: 20 epochs of 27 steps; serve it when done (it never is)
    msg = client.predict(20, 1e-4, 8, 32, 1, MODES[0], STARTS[0], 0, True, api_name="/start_training")
    run_id = int(msg.split("#")[1].split()[0])
    def stepped() -> dict | None:
        st = client.predict(api_name="/training_status")
        assert st["run_id"] == run_id and st["state"] == "running", st
        return st if st["step"] > 0 else None

    st = wait_for(stepped, timeout=60, interval=0.2, what="the run's first step")
    app.kill()
    assert st["step"] < st["total_steps"]

    # the state the crash left, before anything repairs it
    assert app.sql("PRAGMA integrity_check") == [("ok",)]
    assert app.sql("SELECT status FROM training_runs WHERE id = ?", run_id) == [("running",)]
    # what a kill during the save itself leaves (before the rename; after it, before the row's commit)
    models = app.data_dir / "models"
    for leftover in (".v2.partial", "v2"):
        (models / leftover).mkdir()
        (models / leftover / "model.safetensors").write_bytes(b"half")

    app.start()
    assert app.sql("PRAGMA integrity_check") == [("ok",)]
    [(status, message, version_id)] = app.sql("SELECT status, message, version_id FROM training_runs WHERE id = ?",
                                              run_id)
    assert status == "failed" and "the app stopped during this run" in message and version_id is None
    assert app.sql("SELECT name, is_active FROM model_versions") == [("v1", 1)]  # nothing half-registered
    assert sorted(p.name for p in models.iterdir()) == ["v1"]  # no partial or unregistered folder
    client = app.client()
    st = client.predict(api_name="/training_status")
    assert st["run_id"] == run_id and st["state"] == "failed" and "stopped during this run" in st["message"]
    assert _same_predictions(_predictions(client), before)  # version 1, unchanged


def test_sigkill_during_a_burst_of_label_saves_loses_no_acknowledged_write(app):
    if not app.running():
        app.start()
    rows = app.sql("SELECT id, version FROM examples ORDER BY id")
    history_before = app.sql("SELECT count(*) FROM label_events")[0][0]
    acks: list[tuple[int, str, int, str]] = []  # (example id, label, version, guest) of every acknowledged save
    failures: list[tuple[float, str]] = []  # (time, error) of calls that got no answer
    lock = threading.Lock()
    killed_at = [float("inf")]
    clients = [app.client() for _ in range(BURST_THREADS)]
    # without accounts each API client is its own guest (one per gradio_client session)
    guests = [guest_name(c.session_hash) for c in clients]
    assert len(set(guests)) == BURST_THREADS

    def saver(k: int) -> None:
        mine = rows[k::BURST_THREADS]
        versions = dict(mine)
        for n in range(10_000):
            ex_id = mine[n % len(mine)][0]
            label = LABELS[(n + k) % len(LABELS)]
            try:
                saved = clients[k].predict(ex_id, label, versions[ex_id], api_name="/save_label")
            except Exception as exc:  # noqa: BLE001 - the app was killed under this call (checked below)
                with lock:
                    failures.append((time.time(), f"{type(exc).__name__}: {exc}"[:200]))
                return
            assert (saved["example_id"], saved["label"], saved["user"]) == (ex_id, label, guests[k]), saved
            versions[ex_id] = saved["version"]
            with lock:
                acks.append((ex_id, label, saved["version"], guests[k]))

    threads = [threading.Thread(target=saver, args=(k,), daemon=True) for k in range(BURST_THREADS)]
    for t in threads:
        t.start()
    def well_into_the_burst() -> bool:  # every thread has saves in flight
        assert not failures, failures
        return len(acks) >= 150

    wait_for(well_into_the_burst, timeout=60, interval=0.01, what="150 acknowledged saves")
    killed_at[0] = time.time()
    app.kill()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    acked = list(acks)
    assert all(when >= killed_at[0] for when, _e in failures), failures  # no call failed before the kill
    assert len(failures) == BURST_THREADS  # every thread was stopped by the kill, not by anything else

    def check() -> None:
        assert app.sql("PRAGMA integrity_check") == [("ok",)]
        events = {(e, v): (lab, user, src) for e, v, lab, user, src in app.sql(
            "SELECT example_id, version, label, user, source FROM label_events")}
        for ex_id, label, version, guest in acked:  # every acknowledged save, exactly as acknowledged
            assert events.get((ex_id, version)) == (label, guest, "annotator"), (ex_id, version)
        stored = app.sql("SELECT id, label, version FROM examples ORDER BY id")
        counts = dict(app.sql("SELECT example_id, count(*) FROM label_events GROUP BY example_id"))
        newest = {e: events[(e, v)][0] for e, v in app.sql(
            "SELECT example_id, max(version) FROM label_events GROUP BY example_id")}
        last_ack = {}
        for ex_id, label, version, _guest in acked:
            last_ack[ex_id] = max(last_ack.get(ex_id, (0, "")), (version, label))
        for ex_id, label, version in stored:  # never half-written
            assert version == counts.get(ex_id, 0) and label == newest.get(ex_id), (ex_id, label, version)
            if ex_id in last_ack:  # at most one save per thread was in flight unacknowledged
                assert version in (last_ack[ex_id][0], last_ack[ex_id][0] + 1)
                assert version != last_ack[ex_id][0] or label == last_ack[ex_id][1]
        in_flight = sum(counts.values()) - history_before - len(acked)
        assert 0 <= in_flight <= BURST_THREADS  # stored but never acknowledged: the killed calls, at most

    check()  # as the crash left it
    app.start()
    check()  # and after a restart
    ex_id = acked[-1][0]  # the restarted app goes on from the stored state
    [(version,)] = app.sql("SELECT version FROM examples WHERE id = ?", ex_id)
    saved = app.client().predict(ex_id, "neutral", version, api_name="/save_label")
    assert (saved["example_id"], saved["version"]) == (ex_id, version + 1)
