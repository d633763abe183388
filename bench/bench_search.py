"""Annotate's text search at corpus scale (run through bench_vectors.py --search): the LIKE scan
it was against the search index of migration 0010 (bertdemo/db/search.py): SQLite FTS5 with the
trigram tokenizer, PostgreSQL pg_trgm GIN indexes.

Two databases with the same N examples (bundled tweets, each with a small unique edit): one at
revision 0009 (no index: LIKE / ILIKE scans), one at head (the index). Prints the import cost of
the index (rows inserted through the triggers / with the GIN indexes), the index build on rows
already there (the migration), and per search text the search queue (all matching ids) and the
table's first 500 rows, p50 of 5 runs.

    flock /tmp/bertdemo-pytest.lock .venv/bin/python bench/bench_vectors.py --search [--n 300000]
        [--db-url postgresql+psycopg://bertdemo:bertdemo@127.0.0.1:5432/bertdemo_test]
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from benchlib import cpu_model
from sqlalchemy import insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from bertdemo.config import BUNDLED_DATASET
from bertdemo.db import examples, migrate
from bertdemo.db.engine import make_engine
from bertdemo.db.models import Example, now, text_key
from bertdemo.text import clean_text

NEEDLES = ["flight", "baggage claim", "Cancelled Flightled", "zzqx", "ok"]  # many, some, few, none, 2 chars
WORDS = ["today", "again", "please", "thanks", "really", "now", "still", "why", "just", "never"]


def rows(n: int) -> Iterator[list[dict]]:
    """`n` unique example rows in batches of 10,000: bundled tweets, each with two words appended."""
    tweets = pd.read_csv(BUNDLED_DATASET, keep_default_na=False)["text"].tolist()
    stamp, batch = now(), []
    for i in range(n):
        raw = f"{tweets[i % len(tweets)]} {WORDS[i % 10]} {WORDS[(i // 10) % 10]}{i // 100}"
        cleaned = clean_text(raw)
        batch.append({"text": cleaned, "raw_text": raw, "text_key": text_key(cleaned), "source": "import",
                      "dataset": "import", "meta": {}, "created_at": stamp, "version": 0})
        if len(batch) == 10_000:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(engine: Engine, n: int) -> float:
    """Insert `n` rows; seconds taken (the triggers / GIN indexes included where the index exists)."""
    start = time.perf_counter()
    for batch in rows(n):
        with engine.begin() as conn:
            conn.execute(insert(Example), batch)
    return time.perf_counter() - start


def p50(fn) -> float:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(engine: Engine) -> dict[str, tuple[int, float, float]]:
    """{needle: (hits, search queue p50 ms, table p50 ms)}."""
    out = {}
    with Session(engine) as s:
        for needle in NEEDLES:
            hits = len(examples.queue_ids(s, "search", None, needle))
            out[needle] = (hits, p50(lambda n=needle: examples.queue_ids(s, "search", None, n)),
                           p50(lambda n=needle: examples.table_rows(s, None, search=n)))
    return out


def backend(url: str, n: int, name: str) -> None:
    plain, indexed = make_engine(url("like")), make_engine(url("index"))
    migrate.upgrade(plain, "0009")
    migrate.upgrade(indexed)
    scan_s, trig_s = fill(plain, n), fill(indexed, n)
    start = time.perf_counter()
    migrate.upgrade(plain)  # 0010 on rows already there: the index build
    build_s = time.perf_counter() - start
    migrate.downgrade(plain, "0009")
    with Session(plain) as s, s.begin():  # statistics for the planner, as after a while in use
        s.execute(sa.text("ANALYZE"))
    with Session(indexed) as s, s.begin():
        s.execute(sa.text("ANALYZE"))
    like, fts = measure(plain), measure(indexed)
    print(f"\n{name}: insert {n:,} rows {scan_s:.1f} s without the index, {trig_s:.1f} s with it; "
          f"building it on {n:,} rows (migration 0010) {build_s:.1f} s")
    print("| search text | matches | search queue: scan ms | index ms | table (500 rows): scan ms | index ms |")
    print("|---|---|---|---|---|---|")
    for needle in NEEDLES:
        (hits, q0, t0), (hits1, q1, t1) = like[needle], fts[needle]
        assert hits == hits1, f"{needle!r}: {hits} by LIKE, {hits1} from the index"
        print(f"| {needle!r} | {hits:,} | {q0:.1f} | {q1:.1f} | {t0:.1f} | {t1:.1f} |", flush=True)
    plain.dispose()
    indexed.dispose()


def run_search(n: int, db_url: str | None) -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {cpu_model()}; text search at {n:,} rows")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        backend(lambda which: f"sqlite:///{Path(tmp) / which}.sqlite3", n, "SQLite (FTS5 trigram)")
    if db_url:
        schemas = {which: f"bench_{which}_{uuid.uuid4().hex[:8]}" for which in ("like", "index")}
        admin = sa.create_engine(db_url, poolclass=sa.NullPool)
        with admin.begin() as conn:
            for schema in schemas.values():
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            backend(lambda which: make_url(db_url).update_query_dict(
                {"options": f"-csearch_path={schemas[which]}"}).render_as_string(hide_password=False),
                n, "PostgreSQL (pg_trgm GIN)")
        finally:
            with admin.begin() as conn:
                for schema in schemas.values():
                    conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()
