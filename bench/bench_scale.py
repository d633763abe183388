"""The app at corpus sizes (issue 26, item 6): a synthetic corpus of `--size` examples (the bundled
tweets with small edits: a word dropped or doubled, a suffix or prefix token, casing; unique by
the app's duplicate key, half unlabelled) imported through `/import_csv` into an app that serves a
fine-tuned version, then the issue's table measured over HTTP on the launched `app.py`:

- re-scoring after an activation (`/activate_version` of the serving version, or `--to NAME`):
  time, the app's peak RSS during it against its idle RSS (from /proc, every 0.2 s), `/predict`
  latency (a call every ~0.5 s) and label-save latency (`/next_item` + `/save_label` every
  ~0.5 s) meanwhile;
- every queue's first and second `/next_item` and the count it reports against the database;
- text search; the map (its draw, the endpoint the page calls, over Gradio's queue): server time
  and payload bytes; `/similar_examples` p50 over 20 queries (as the page calls it: queue join and
  event stream; and through gradio_client, whose 50 ms polling quantizes it), each beside the same call
  of `/training_status` (the floor); `/export_csv` time, size and peak RSS.

    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/bench_scale.py --size 300000 [--db sqlite|postgresql]
        [--data-dir DIR] [--to v1] [--keep] [--serving auto]
    .venv/bin/python bench/bench_scale.py --extrapolate [--since "2026-12-05 04:00"]  # fit, print 1M and 10M
    .venv/bin/python bench/bench_scale.py --table            # the table of the newest run per backend and size

Without `--data-dir` the app's first start makes version 1 on 240 bundled tweets (one epoch,
~1-2 min here); with it, the SQLite database and model folders of DIR are copied. PostgreSQL:
a fresh database `bertdemo_scale_<pid>` next to BERTDEMO_DB_URL's (default the tests' one),
created and dropped as the server's `postgres` user when the bertdemo role may not. Prints progress,
a markdown table at the end, and appends one JSON line per run to bench/bench_scale.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, client, copy_data_dir, cpu_model, free_port, launch, stop
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from bertdemo.db import versions
from bertdemo.db.engine import make_engine
from bertdemo.db.models import Example, Lease, Score, text_key
from bertdemo.text import try_clean

RESULTS = Path(__file__).with_name("bench_scale.jsonl")
QUEUES = ("unlabeled", "informative", "uncertain", "margin", "diverse", "disagree", "suspicious")
IMPORT_PART = 100_000  # rows per /import_csv call when the app caps a file's rows
SEARCH = "delayed"  # the text search's needle (in ~2 % of the bundled tweets)
PG_DEFAULT = "postgresql+psycopg://bertdemo:bertdemo@127.0.0.1:5432/bertdemo_test"
SUFFIXES = ("lol", "smh", "!!", "#travel", "#fail", "thanks", "ugh", "...", "#help", "again", "today", "right now",
            "#customerservice", "seriously", "🙄", "😡", "👍", "pls", "fyi", "#delayed")
PREFIXES = ("so", "honestly", "wow", "ok", "well", "lol", "hey", "just saying:", "update:", "again:")


# ------------------------------------------------------------------------------- the corpus
def bundled() -> list[tuple[str, str]]:
    """(text, label) of every bundled tweet (data/*_tweets.csv)."""
    rows = []
    for path in sorted((REPO / "data").glob("*_tweets.csv")):
        with path.open(newline="") as f:
            rows += [(r["text"], r["label"]) for r in csv.DictReader(f) if r.get("text")]
    return rows


def write_seed_csv(path: Path) -> Path:
    """240 bundled airline tweets, 80 per label (as the tests' tiny sample): the first start's data."""
    import pandas as pd

    df = pd.read_csv(REPO / "data" / "airline_tweets.csv", dtype={"id": str}, keep_default_na=False)
    df.groupby("label", group_keys=False).sample(n=80, random_state=0).to_csv(path, index=False)
    return path


def edited(text: str, rng: random.Random) -> str:
    """The tweet with 1-3 small edits: a word dropped or doubled, a token before or after, casing."""
    words = text.split()
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        k = rng.randrange(len(words)) if words else 0
        if op == 0 and len(words) > 4:
            del words[k]
        elif op == 1 and words:
            words.insert(k, words[k])
        elif op == 2:
            words.append(rng.choice(SUFFIXES))
        elif op == 3:
            words.insert(0, rng.choice(PREFIXES))
        elif op == 4 and words:
            words[k] = rng.choice((str.upper, str.lower, str.title))(words[k])
        else:
            words = text.upper().split() if rng.random() < 0.3 else words + [rng.choice(SUFFIXES)]
    return " ".join(words)


def write_corpus(path: Path, n: int, taken: set[str], seed: int = 0) -> int:
    """`n` rows (text, label) to `path`: each bundled tweet once, then edited copies, unique by the
    app's duplicate key (text_key of the cleaned text) among themselves and `taken`; half unlabelled."""
    rng = random.Random(seed)
    src = bundled()
    rng.shuffle(src)
    seen, written, i, serial = set(taken), 0, 0, 0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        while written < n:
            text, label = src[i % len(src)]
            cand = text if i < len(src) else edited(text, rng)
            i += 1
            for tries in range(50):
                cleaned, _why = try_clean(cand)
                if cleaned is None or text_key(cleaned) not in seen:
                    break
                if tries > 8:  # rare: a short tweet whose edits are all taken; a numbered tag makes it new
                    serial += 1
                    cand = f"{edited(text, rng)} #{serial}"
                else:
                    cand = edited(text, rng)
            if cleaned is None or text_key(cleaned) in seen:
                continue
            seen.add(text_key(cleaned))
            w.writerow([cand, label if rng.random() < 0.5 else ""])
            written += 1
    return written


# ------------------------------------------------------------------------------- the database
class Database:
    """Where the app keeps its data: SQLite in the data dir (`app_url` ""), or a fresh PostgreSQL database."""

    def __init__(self, kind: str, url: str, app_url: str, drop=None) -> None:
        self.kind, self.url, self.app_url, self._drop = kind, url, app_url, drop

    @classmethod
    def create(cls, kind: str, data_dir: Path) -> Database:
        if kind == "sqlite":
            return cls(kind, f"sqlite:///{data_dir / 'bertdemo.sqlite3'}", "")
        env = os.environ.get("BERTDEMO_DB_URL", "")
        base = make_url(env if env.startswith("postgresql") else PG_DEFAULT)
        _pg_up(base)
        name = f"bertdemo_scale_{os.getpid()}"
        url = base.set(database=name).render_as_string(hide_password=False)
        admin = create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

            def drop() -> None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except DBAPIError as exc:  # no CREATEDB: the server's superuser makes it, owned by our role
            if os.geteuid() != 0 or not shutil.which("runuser"):
                raise SystemExit(f"cannot create a database as {base.username} ({exc.orig}); grant it CREATEDB") from None
            su = ["runuser", "-u", "postgres", "--"]
            subprocess.run(su + ["createdb", "-O", str(base.username), name], check=True)

            def drop() -> None:
                subprocess.run(su + ["dropdb", "--if-exists", "--force", name], check=False)
        print(f"PostgreSQL database {name} created", flush=True)
        return cls(kind, url, url, drop)

    def drop(self) -> None:
        if self._drop:
            self._drop()


def _pg_up(url) -> None:
    """Start the local cluster when nothing answers (Debian's pg_ctlcluster, loopback only)."""
    probe = create_engine(url, poolclass=NullPool)
    try:
        with probe.connect():
            return
    except DBAPIError:
        if not shutil.which("pg_ctlcluster"):
            raise
        subprocess.run(["pg_ctlcluster", "15", "main", "start", "--", "-o", "-c listen_addresses=127.0.0.1"], check=False)
        time.sleep(3)
    finally:
        probe.dispose()


def db_size_bytes(url: str) -> int | None:
    if url.startswith("sqlite"):
        path = Path(make_url(url).database)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())
    finally:
        engine.dispose()


class Truth:
    """What the database says, to check the app's counts against (a new engine per question: the
    bench holds no connection the app's writes would wait on)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _ask(self, fn):
        engine = make_engine(self.url)
        try:
            with Session(engine) as s:
                return fn(s)
        finally:
            engine.dispose()

    def served_and_scored(self) -> bool:
        def ask(s):
            v = versions.active_version(s)
            if v is None:
                return False
            n = s.scalar(select(func.count()).select_from(Score).where(Score.version_id == v.id))
            return n == s.scalar(select(func.count()).select_from(Example)) > 0
        try:
            return self._ask(ask)
        except DBAPIError:  # no tables yet: the app is still migrating a new database
            return False

    def keys(self) -> set[str]:
        return set(self._ask(lambda s: s.scalars(select(Example.text_key)).all()))

    def active_name(self) -> str:
        return self._ask(lambda s: versions.active_version(s).name)

    def scores_complete(self) -> bool:
        return self.served_and_scored()

    def sample_ids(self, k: int) -> list[int]:
        return [int(i) for i in self._ask(lambda s: s.scalars(select(Example.id).order_by(func.random()).limit(k)).all())]

    def counts(self) -> dict:
        def ask(s):
            vid = versions.active_version(s).id
            n = s.scalar(select(func.count()).select_from(Example))
            unlabelled = s.scalar(select(func.count()).select_from(Example).where(Example.label.is_(None)))
            disagree = s.scalar(select(func.count()).select_from(Example).join(
                Score, (Score.example_id == Example.id) & (Score.version_id == vid))
                .where(Example.label.is_not(None), Score.predicted != Example.label))
            like = f"%{SEARCH}%"
            search = s.scalar(select(func.count()).select_from(Example).where(
                Example.raw_text.ilike(like) | Example.text.ilike(like)))
            # the model queues rank every scored example (labelled ones too: a review), Unlabeled the rest
            scored = s.scalar(select(func.count()).select_from(Score).where(Score.version_id == vid))
            # what a queue counts is what is left: the items the team finished (a done lease; one
            # annotation per item) are not (the bench's own label saves during the re-scoring)
            scored -= s.scalar(select(func.count(func.distinct(Lease.example_id))).where(Lease.done.is_(True)))
            return {"examples": n, "labelled": n - unlabelled, "disagree": disagree, "search": search,
                    **{q: unlabelled for q in ("unlabeled", "informative")},
                    **{q: scored for q in ("uncertain", "margin", "diverse")}}
        return self._ask(ask)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process (MB), from /proc (0 once it is gone). `field` "RssAnon": its
    private memory only, without the pages of the files it maps (the embeddings, the vector index,
    the model weights: page cache that every process serving the version shares)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def queue_call(url: str, elem_id: str, data: list, timeout: float = 600, api_name: str | None = None,
               client: httpx.Client | None = None) -> list:
    """An event through Gradio's queue as the page calls it (join, then the server-sent events
    stream, no polling): a click on `elem_id` (for handlers that are no public API endpoint, the
    map's draw), or the event named `api_name`. Returns its outputs."""
    c = client or httpx.Client(timeout=timeout)
    try:
        fn_index, trigger = _event(c, url, elem_id, api_name)
        session = uuid.uuid4().hex[:11]
        c.post(f"{url}/gradio_api/queue/join", json={"data": data, "event_data": None, "fn_index": fn_index,
                                                     "trigger_id": trigger, "session_hash": session}).raise_for_status()
        with c.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    if not msg.get("success"):
                        raise RuntimeError(f"{elem_id or api_name}: {msg.get('output')}")
                    return msg["output"]["data"]
    finally:
        if client is None:
            c.close()
    raise RuntimeError(f"{elem_id or api_name}: the event stream ended without a result")


_EVENTS: dict[tuple, tuple[int, int | None]] = {}


def _event(c: httpx.Client, url: str, elem_id: str, api_name: str | None) -> tuple[int, int | None]:
    """(fn_index, trigger id) of a click on `elem_id` or of the event named `api_name` (cached)."""
    key = (url, elem_id, api_name)
    if key not in _EVENTS:
        config = c.get(f"{url}/config").raise_for_status().json()
        if api_name:
            fn = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
            _EVENTS[key] = fn["id"], (fn.get("targets") or [[None]])[0][0]
        else:
            comp = next(x["id"] for x in config["components"] if x.get("props", {}).get("elem_id") == elem_id)
            fn = next(d for d in config["dependencies"] if [comp, "click"] in [list(t) for t in d.get("targets", [])])
            _EVENTS[key] = fn["id"], comp
    return _EVENTS[key]


# ------------------------------------------------------------------------------- 1M and 10M
FITTED = (("rescore_s", "re-scoring, s"), ("rescore_peak_rss_mb", "re-scoring peak RSS, MB"),
          ("rescore_peak_minus_idle_mb", "re-scoring peak - idle, MB"), ("idle_rss_mb", "idle RSS, MB"),
          ("rss_after_rescore_mb", "RSS after re-scoring, MB"), ("import_s", "import, s"),
          ("import_peak_rss_mb", "import peak RSS, MB"), ("export_s", "export, s"),
          ("export_peak_minus_before_mb", "export peak RSS +, MB"), ("map_first_s", "map first draw, s"),
          ("map_payload_bytes", "map payload, bytes"), ("db_bytes", "database, bytes"))


def extrapolate(path: Path, sizes=(1_000_000, 10_000_000), since: str = "") -> str:
    """Least-squares lines (a + b N) through the newest run of each size, per backend, and their
    values at `sizes`; then which resource runs out first on this machine. `since` ("YYYY-MM-DD HH:MM",
    UTC): only runs from then on, so that runs of older code do not enter the fit."""
    import numpy as np

    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    rows = [r for r in rows if r["date"] >= since]
    ram_mb = _meminfo_mb("MemTotal")
    disk = shutil.disk_usage(tempfile.gettempdir())
    out = []
    for db in sorted({r["db"] for r in rows}):
        newest = {r["size"]: r for r in rows if r["db"] == db}  # the file is in time order: the last wins
        if len(newest) < 2:
            out.append(f"{db}: one size measured ({', '.join(f'{n:,}' for n in newest)}); two or more are needed to fit")
            continue
        out += [f"\n{db}: linear fits over {', '.join(f'{n:,}' for n in sorted(newest))} (newest run of each size)",
                "| metric | per 100k | " + " | ".join(f"at {n:,}" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
        est = {}
        for key, label in FITTED:
            pts = [(n, r[key]) for n, r in newest.items() if isinstance(r.get(key), (int, float))]
            if len(pts) < 2:
                continue
            b, a = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
            est[key] = [a + b * n for n in sizes]
            out.append(f"| {label} | {b * 1e5:,.1f} | " + " | ".join(f"{v:,.0f}" for v in est[key]) + " |")
        for n, i in zip(sizes, range(len(sizes))):
            out.append(f"{db} at {n:,}: " + _limit(est, i, ram_mb, disk.free))
    return "\n".join(out) or "no rows in " + str(path)


def _limit(est: dict, i: int, ram_mb: float, disk_free: int) -> str:
    says = []
    peak = est.get("rescore_peak_rss_mb", [None] * 2)[i]
    if peak is not None:
        says.append(f"re-scoring peak RSS {peak / 1024:.1f} GB of {ram_mb / 1024:.0f} GB RAM"
                    + (" -> MEMORY limits" if peak > 0.8 * ram_mb else ""))
    if est.get("db_bytes"):
        size = est["db_bytes"][i]
        says.append(f"database {size / 1e9:.1f} GB of {disk_free / 1e9:.0f} GB free disk"
                    + (" -> DISK limits" if size > 0.5 * disk_free else ""))
    if est.get("rescore_s"):
        says.append(f"re-scoring {est['rescore_s'][i] / 3600:.1f} h on these cores (CPU time: the model)")
    if not any("limits" in x for x in says):
        says.append("-> memory and disk suffice: TIME (the re-scoring's CPU) limits")
    return "; ".join(says)


def _meminfo_mb(field: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


TEXTS = ["@united my flight was delayed again, thanks for nothing", "self-driving cars are the future",
         "great crew on this morning's flight", "lost my bag in Denver, nobody answers the phone"]


def say(msg: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {msg}", flush=True)


class Sampler(threading.Thread):
    """The app process's RSS every `every` s; `peak()` since the last `reset()`."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self._peak, self._halt = pid, every, 0.0, threading.Event()
        self.peak_anon = 0.0  # the same for RssAnon (private memory, no mapped files)

    def run(self) -> None:
        while not self._halt.is_set():
            self._peak = max(self._peak, rss_mb(self.pid))
            self.peak_anon = max(self.peak_anon, rss_mb(self.pid, "RssAnon"))
            time.sleep(self.every)

    def reset(self) -> None:
        self._peak = rss_mb(self.pid)
        self.peak_anon = rss_mb(self.pid, "RssAnon")

    def peak(self) -> float:
        return self._peak

    def stop(self) -> None:
        self._halt.set()


class Loop(threading.Thread):
    """Calls `step(client)` every ~`every` s until stopped; its latencies (s) and failures."""

    def __init__(self, url: str, step, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.url, self.step, self.every = url, step, every
        self.lat: list[float] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        c = client(self.url, None)
        while not self._halt.is_set():
            try:
                took = self.step(c)
                if took is not None:
                    self.lat.append(took)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                self.errors.append(str(exc)[:120])
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(120)


def predict_step(c) -> float:
    t0 = time.perf_counter()
    c.predict(random.choice(TEXTS), api_name="/predict")
    return time.perf_counter() - t0


def save_step(c) -> float | None:
    """Next unlabelled item, then its label saved: the save's latency (the one the issue bounds)."""
    item = c.predict("unlabeled", "", [], "all", api_name="/next_item")
    if item is None:
        return None
    t0 = time.perf_counter()
    c.predict(item["id"], random.choice(["negative", "neutral", "positive"]), item["version"], api_name="/save_label")
    return time.perf_counter() - t0


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def ms_stats(lat: list[float]) -> dict:
    if not lat:
        return {"n": 0, "p50_ms": None, "max_ms": None}
    ms = sorted(x * 1000 for x in lat)
    return {"n": len(lat), "p50_ms": round(statistics.median(ms), 1), "max_ms": round(ms[-1], 1),
            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1), "over_1s": sum(x > 1000 for x in ms)}


def prepare(args, work: Path, data_dir: Path, db: Database) -> None:
    """A data dir (and database) whose active version serves with its scores stored."""
    if args.data_dir:
        if db.kind != "sqlite":
            raise SystemExit("--data-dir copies a SQLite data dir; on PostgreSQL the first start makes version 1")
        data_dir.mkdir(parents=True)
        copy_data_dir(args.data_dir, data_dir)
        return
    data_dir.mkdir(parents=True)
    seed = write_seed_csv(work / "seed.csv")
    say("first start: version 1 on 240 bundled tweets (one epoch)")
    proc = launch(data_dir, free_port(), **app_env(args, db) | {
        "BERTDEMO_DATASET": str(seed), "BERTDEMO_DATASETS": "airline", "BERTDEMO_INITIAL_EPOCHS": "1",
        "BERTDEMO_QUICK_FIRST": "0"})
    try:
        deadline = time.time() + 1800
        while not Truth(db.url).served_and_scored():
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"no scored version 1 (see {data_dir / 'app.log'})")
            time.sleep(3)
    finally:
        stop(proc)
    say("first start done")


def app_env(args, db: Database) -> dict[str, str]:
    env = {"BERTDEMO_DB_URL": db.app_url, "BERTDEMO_SHARED": "0", "BERTDEMO_ADMIN_PASSWORD": "",
           "BERTDEMO_MAX_UPLOAD_MB": "2000", "BERTDEMO_MAX_CSV_ROWS": str(max(20_000, args.size * 2))}
    if args.serving:
        env["BERTDEMO_SERVING"] = args.serving
    return env


def wait_up(url: str, proc, timeout: float = 600):
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}")
        try:
            c = client(url, None)
            c.predict("hello", api_name="/predict")
            return c
        except Exception:  # noqa: BLE001 - not up yet
            if time.time() > deadline:
                raise SystemExit(f"app.py was not ready within {timeout:.0f} s") from None
            time.sleep(2)


def rescore(url: str, c, name: str, sampler: Sampler, timeout: float) -> dict:
    """Activate `name`, follow /training_status until its background work ends, with the
    predict and save loops running; returns the re-scoring figures."""
    pred, save = Loop(url, predict_step), Loop(url, save_step)
    pred.start()
    save.start()
    time.sleep(3)  # both loops warm (their first call pays the client's set-up)
    pred.lat.clear()
    save.lat.clear()
    sampler.reset()
    t0 = time.perf_counter()
    msg = c.predict(name, api_name="/activate_version")
    activate_s = time.perf_counter() - t0
    seen, scoring_at, last_print = False, None, 0.0
    phase, phase_peaks, anon_peak = None, {}, 0.0  # each phase's peak RSS (MB): where the peak is reached
    while True:
        act = c.predict(api_name="/training_status").get("activity")
        now = time.perf_counter() - t0
        name = (act or {}).get("name") or "none"  # before the follow-up shows, or after it
        if name != phase:  # the sampler's peak since the last change belongs to the phase that ended
            if phase is not None:
                phase_peaks[phase] = max(phase_peaks.get(phase, 0), round(sampler.peak()))
                anon_peak = max(anon_peak, sampler.peak_anon)
            sampler.reset()
            phase = name
        if act:
            seen = True
            if scoring_at is None and act.get("name") == "scoring":
                scoring_at = now
            if now - last_print > 30:
                say(f"  re-scoring: {act.get('text', act)} "
                    f"at {now:.0f} s, RSS {rss_mb(sampler.pid):.0f} MB (peak {sampler.peak():.0f})")
                last_print = now
        elif seen or now > 15:
            break
        if now > timeout:
            raise SystemExit(f"re-scoring not done within {timeout:.0f} s")
        time.sleep(1)
    total = time.perf_counter() - t0
    if phase is not None:
        phase_peaks[phase] = max(phase_peaks.get(phase, 0), round(sampler.peak()))
    peak = max(phase_peaks.values(), default=round(sampler.peak()))
    anon_peak = max(anon_peak, sampler.peak_anon)
    pred.stop()
    save.stop()
    return {"activate_msg": msg[:120], "activate_s": round(activate_s, 2), "rescore_s": round(total, 1),
            "scoring_phase_s": round(total - scoring_at, 1) if scoring_at is not None else None,
            "rescore_peak_rss_mb": round(peak), "rescore_peak_anon_mb": round(anon_peak),
            "phase_peak_rss_mb": phase_peaks,
            "predict": ms_stats(pred.lat), "predict_errors": pred.errors[:5],
            "save": ms_stats(save.lat), "save_errors": save.errors[:5]}


def queues(url: str, truth: Truth) -> list[dict]:
    """First and second /next_item per queue, each by a new guest; the count against the database."""
    out = []
    expect = truth.counts()
    for q in (*QUEUES, "search"):
        c = client(url, None)
        search = SEARCH if q == "search" else ""
        row = {"queue": q, "truth": expect.get(q)}
        try:
            if q == "suspicious":  # ranked in the background after the re-scoring: wait until it is ready
                row["ready_after_s"] = wait_ranked(c)
            item, row["first_s"] = timed(c.predict, q, search, [], "all", api_name="/next_item")
            _again, row["second_s"] = timed(c.predict, q, search, [], "all", api_name="/next_item")
            row["count"] = item["remaining"] if item else 0
            row["ranked_by"] = (item or {}).get("ranked_by", "")
            if item:
                c.predict(item["id"], api_name="/skip_item")  # its lease would hide it from the next queue's count
        except Exception as exc:  # noqa: BLE001 - reported (e.g. not ranked yet)
            row["error"] = str(exc)[:160]
        row["ok"] = _count_ok(row, expect)
        out.append(row)
        say(f"  {q}: {row}")
    return out


def wait_ranked(c, timeout: float = 900) -> float:
    """Seconds until the suspicious-labels queue answers instead of saying its ranking is under way
    (it starts when the re-scoring ends, in a child process for a large corpus)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            c.predict("suspicious", "", [], "all", api_name="/next_item")
            return round(time.perf_counter() - t0, 1)
        except Exception as exc:  # noqa: BLE001 - "... Try again in a few seconds." until ready
            if "try again" not in str(exc).lower() and "being stored" not in str(exc).lower():
                raise
        time.sleep(2)
    raise TimeoutError(f"the suspicious labels were not ranked within {timeout:.0f} s")


def _count_ok(row: dict, expect: dict) -> bool | None:
    """The count against the database: None where the database holds no truth to compare."""
    q, count = row["queue"], row.get("count")
    if count is None:
        return None
    if q == "suspicious":  # a ranked subset of the labelled examples: only a bound
        return count <= expect["labelled"]
    if q == "disagree" and "quick" in row.get("ranked_by", ""):  # the quick model's predictions are not stored
        row["truth"] = None
        return None
    return abs(count - row["truth"]) <= 1  # the item handed out, or one lease still held


def measure(args, url: str, proc, truth: Truth, csv_path: Path, sampler: Sampler) -> dict:
    c = wait_up(url, proc)
    r: dict = {"rss_start_mb": round(rss_mb(proc.pid))}
    say(f"importing {csv_path.stat().st_size / 1e6:.1f} MB through /import_csv")
    sampler.reset()
    (summary, r["import_files"]), r["import_s"] = timed(import_csv, c, csv_path, args.timeout)
    r["import_summary"], r["import_peak_rss_mb"] = summary[:200], round(sampler.peak())
    r["examples"] = settled_count(truth)
    say(f"imported in {r['import_s']:.1f} s: {summary[:120]!r}; {r['examples']:,} examples")
    time.sleep(5)
    idle, idle_anon = [], []
    for _ in range(10):
        idle.append(rss_mb(proc.pid))
        idle_anon.append(rss_mb(proc.pid, "RssAnon"))
        time.sleep(0.2)
    r["idle_rss_mb"] = round(statistics.median(idle))
    r["idle_anon_mb"] = round(statistics.median(idle_anon))
    name = args.to or truth.active_name()
    say(f"activating {name} (idle RSS {r['idle_rss_mb']} MB)")
    r |= rescore(url, c, name, sampler, args.timeout)
    r["rescore_peak_minus_idle_mb"] = r["rescore_peak_rss_mb"] - r["idle_rss_mb"]
    r["rescore_anon_peak_minus_idle_mb"] = r["rescore_peak_anon_mb"] - r["idle_anon_mb"]
    r["scores_complete"] = truth.scores_complete()
    time.sleep(2)
    r["rss_after_rescore_mb"] = round(rss_mb(proc.pid))
    say(f"re-scored in {r['rescore_s']} s, peak {r['rescore_peak_rss_mb']} MB; queues")
    r["queues"] = queues(url, truth)
    r |= map_and_similar(url, c, truth)
    say("export")
    sampler.reset()
    before = rss_mb(proc.pid)
    path, r["export_s"] = timed(lambda: c.submit(api_name="/export_csv").result(timeout=args.timeout))
    r["export_bytes"] = Path(path).stat().st_size if path else None
    r["export_peak_minus_before_mb"] = round(sampler.peak() - before)
    r["rss_end_mb"] = round(rss_mb(proc.pid))
    r["db_bytes"] = db_size_bytes(truth.url)
    return r


def settled_count(truth: Truth, timeout: float = 600) -> int:
    """The number of examples once it stops moving (an import that finishes in the background
    after its call returns would otherwise be measured half done)."""
    last, deadline = -1, time.time() + timeout
    while time.time() < deadline:
        n = truth.counts()["examples"]
        if n == last:
            return n
        last = n
        time.sleep(2)
    return last


def import_csv(c, csv_path: Path, timeout: float) -> tuple[str, int]:
    """(summary, files): the corpus in one /import_csv call; when the app refuses a file that many
    rows (a per-file cap, as datasets.MAX_ROWS was), in parts of IMPORT_PART rows, one call each."""
    from gradio_client import handle_file

    def send(path: Path) -> str:
        return c.submit(handle_file(str(path)), api_name="/import_csv").result(timeout=timeout)

    try:
        return send(csv_path), 1
    except Exception as exc:  # only a row cap is worked around (anything else is raised)
        if "limit is" not in str(exc):
            raise
        say(f"  refused as one file ({str(exc)[:100]}); importing in parts of {IMPORT_PART:,} rows")
    with csv_path.open(newline="") as f:
        rows = list(csv.reader(f))
    summaries = []
    for k, start in enumerate(range(1, len(rows), IMPORT_PART)):
        part = csv_path.with_name(f"part{k}.csv")
        with part.open("w", newline="") as f:
            csv.writer(f).writerows([rows[0], *rows[start:start + IMPORT_PART]])
        summaries.append(send(part))
    return " / ".join(summaries), len(summaries)


def map_and_similar(url: str, c, truth: Truth) -> dict:
    say("map (first draw makes the layout; the second is a redraw)")
    r: dict = {}
    try:
        for key in ("map_first", "map_second"):
            out, took = timed(queue_call, url, "map-draw", ["label"])
            r[f"{key}_s"], r["map_payload_bytes"] = round(took, 2), len(json.dumps(out[0]) if out else "")
    except Exception as exc:  # noqa: BLE001 - reported
        r["map_error"] = str(exc)[:200]
    ids = truth.sample_ids(20)
    lat, errors = [], []
    for i in ids:
        try:
            lat.append(timed(c.predict, i, "", 10, api_name="/similar_examples")[1])
        except Exception as exc:  # noqa: BLE001 - reported
            errors.append(str(exc)[:120])
    r["similar"], r["similar_errors"] = ms_stats(lat), errors[:3]
    # the floor of one gradio_client call on this host (two DB reads), to read the figure above against:
    # gradio_client reads its event stream's messages every 50 ms (`time.sleep(0.05)` in
    # gradio_client/utils.py stream_sse_v1plus), so its times come in ~50 ms steps
    r["client_floor"] = ms_stats([timed(c.predict, api_name="/training_status")[1] for _ in range(20)])
    # as the page calls them: queue join + the event stream, on one kept-alive connection, no polling
    with httpx.Client(timeout=60) as h:
        page, floor = [], []
        for i in ids:
            page.append(timed(queue_call, url, "", [i, "", 10], api_name="similar_examples", client=h)[1])
            floor.append(timed(queue_call, url, "", [], api_name="training_status", client=h)[1])
    r["similar_page"], r["page_floor"] = ms_stats(page), ms_stats(floor)
    return r


def table(rows: list[dict]) -> str:
    """The issue's table: one column per run."""
    def q(r, name, what):
        row = next((x for x in r["queues"] if x["queue"] == name), {})
        if "error" in row:
            return "error: " + row["error"][:40]
        verdict = {True: "right", False: "WRONG", None: "unchecked"}[row.get("ok")]
        if name == "suspicious":  # only a bound: at most the labelled rows
            verdict = "within the labelled rows" if row.get("ok") else "MORE than the labelled rows"
            if row.get("ready_after_s") is not None:
                verdict += f"; ready {row['ready_after_s']:.0f} s after the queues were first asked"
        ranked = row.get("ranked_by", "")
        by = ", quick model" if "quick model" in ranked else ", stored scores" if "stored scores" in ranked else ""
        return f"{row.get('first_s', 0):.2f} s / {row.get('second_s', 0):.2f} s, {row.get('count', 0):,} " \
               f"({verdict}; db {row.get('truth') if row.get('truth') is not None else '-'}{by})"

    def ms(d):
        if not d["n"]:
            return "no calls"
        tail = f", p99 {d['p99_ms'] / 1000:.2f} s, {d['over_1s']} over 1 s" if "p99_ms" in d else ""
        return f"max {d['max_ms'] / 1000:.2f} s, p50 {d['p50_ms'] / 1000:.2f} s{tail} ({d['n']} calls)"

    lines = ["| | " + " | ".join(f"{r['size']:,} {r['db']}" for r in rows) + " |",
             "|---|" + "---|" * len(rows)]
    fields = [
        ("examples (after import)", lambda r: f"{r['examples']:,}"),
        ("import", lambda r: f"{r['import_s']:.1f} s in {r['import_files']} call(s), peak RSS {r['import_peak_rss_mb']:,} MB"),
        ("re-scoring after activation", lambda r: f"{r['rescore_s']:.0f} s (scoring {r['scoring_phase_s']} s), "
                                                  f"peak RSS {r['rescore_peak_rss_mb']:,} MB = idle {r['idle_rss_mb']:,}"
                                                  f" + {r['rescore_peak_minus_idle_mb']:,} MB; after {r['rss_after_rescore_mb']:,}"
                                                  + (f"; private (RssAnon) idle {r['idle_anon_mb']:,} + "
                                                     f"{r['rescore_anon_peak_minus_idle_mb']:,} MB"
                                                     if "idle_anon_mb" in r else "")
                                                  + ("; peak RSS by phase: " + ", ".join(
                                                      f"{k} {v:,}" for k, v in r["phase_peak_rss_mb"].items())
                                                     if r.get("phase_peak_rss_mb") else "")),
        ("`/predict` during re-scoring", lambda r: ms(r["predict"]) + (f", {len(r['predict_errors'])}+ errors" if r["predict_errors"] else "")),
        ("label save during re-scoring", lambda r: ms(r["save"]) + (f", {len(r['save_errors'])}+ errors" if r["save_errors"] else "")),
        *[(f"{name} queue: 1st / 2nd call, count", lambda r, n=name: q(r, n, "")) for name in (*QUEUES, "search")],
        ("map: server time 1st / 2nd, payload", lambda r: r.get("map_error", "")[:60] or
         f"{r['map_first_s']:.2f} s / {r['map_second_s']:.2f} s, {r['map_payload_bytes'] / 1e6:.2f} MB"),
        ("similar examples, as the page calls it (20 queries)",
         lambda r: (f"p50 {r['similar_page']['p50_ms']} ms, max {r['similar_page']['max_ms']} ms; a /training_status "
                    f"call the same way: p50 {r['page_floor']['p50_ms']} ms") if "similar_page" in r else "-"),
        ("similar examples, gradio_client (20 queries; reads its stream every 50 ms)",
         lambda r: f"p50 {r['similar']['p50_ms']} ms, max {r['similar']['max_ms']} ms"
                   + (f"; a /training_status call (the client's floor): p50 "
                      f"{r['client_floor']['p50_ms']} ms" if "client_floor" in r else "")
                   if r["similar"]["n"] else "errors: " + "; ".join(r["similar_errors"])[:60]),
        ("export", lambda r: f"{r['export_s']:.1f} s, {r['export_bytes'] / 1e6:.1f} MB, peak RSS +{r['export_peak_minus_before_mb']:,} MB"),
        ("database size", lambda r: f"{r['db_bytes'] / 1e6:.0f} MB" if r.get("db_bytes") else "-"),
        ("wall time of the run", lambda r: f"{r['wall_s'] / 60:.1f} min, load avg {r['loadavg'][0]:.1f} at start"),
    ]
    for label, fn in fields:
        cells = []
        for r in rows:
            try:
                cells.append(fn(r))
            except (KeyError, TypeError) as exc:
                cells.append(f"n/a ({exc})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args) -> dict:
    started, load = time.time(), os.getloadavg()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-scale-"))
    data_dir = work / "data"
    db = Database.create(args.db, data_dir)
    proc = sampler = None
    try:
        prepare(args, work, data_dir, db)
        truth = Truth(db.url)
        csv_path = work / "corpus.csv"
        say(f"writing a synthetic corpus of {args.size:,} examples")
        n, took = timed(write_corpus, csv_path, args.size, truth.keys(), args.seed)
        say(f"  {n:,} rows in {took:.1f} s")
        port = free_port()
        proc = launch(data_dir, port, **app_env(args, db) | {"BERTDEMO_BOOTSTRAP": "0"})
        sampler = Sampler(proc.pid)
        sampler.start()
        r = measure(args, f"http://127.0.0.1:{port}", proc, truth, csv_path, sampler)
    finally:
        if sampler:
            sampler.stop()
        if proc:
            stop(proc)
        if not args.keep:
            db.drop()
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"kept {work} (database {db.url})")
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(),
            "size": args.size, "db": args.db, "serving": args.serving or "default", "loadavg": [round(x, 2) for x in load],
            "wall_s": round(time.time() - started)} | r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=20_000, help="examples in the synthetic corpus")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--data-dir", type=Path, help="a SQLite data dir with a served, scored version (copied)")
    ap.add_argument("--to", help="the version to activate (default: the serving one, re-activated)")
    ap.add_argument("--serving", help="BERTDEMO_SERVING for the app (default: the app's own)")
    ap.add_argument("--timeout", type=float, default=7200, help="seconds for the import, re-scoring and export")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="working folder (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder and database")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench_scale.jsonl")
    ap.add_argument("--extrapolate", action="store_true", help="only fit bench_scale.jsonl and print 1M / 10M")
    ap.add_argument("--since", default="", help='with --extrapolate: only runs from "YYYY-MM-DD HH:MM" (UTC) on')
    ap.add_argument("--table", action="store_true", help="only print the table of bench_scale.jsonl's newest "
                                                         "run of each backend and size")
    args = ap.parse_args()
    if args.table:
        rows = [json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()]
        newest = {(r["db"], r["size"]): r for r in rows}
        print(table([newest[k] for k in sorted(newest)]))
        return
    if args.extrapolate:
        print(extrapolate(RESULTS, since=args.since))
        return
    # stopped (Ctrl-C, kill, a timeout): the finally of run() still stops the app and drops the database
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with SIGINT ignored
    r = run(args)
    if not args.no_record:
        with RESULTS.open("a") as f:
            f.write(json.dumps(r) + "\n")
    print(table([r]))
    print(extrapolate(RESULTS))


if __name__ == "__main__":
    main()
