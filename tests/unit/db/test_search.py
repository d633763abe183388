"""Text search (bertdemo.db.search, through db.examples' search queue and table) on every backend of
the `engine` fixture: the same answers as the LIKE scan it replaces (a case-insensitive substring of
the raw or the cleaned text, by id, wildcards taken literally), from SQLite's FTS5 trigram table or
PostgreSQL's trigram indexes, kept in step with inserts, edits and deletes."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import delete, inspect, select, text
from sqlalchemy.orm import Session

from bertdemo.db import examples, migrate, search
from bertdemo.db.examples import NewExample
from bertdemo.db.models import Example

LABELS = ("negative", "neutral", "positive")
ROWS = [  # (cleaned, raw)
    ("the flight was late", "@united The FLIGHT was late!!"),
    ("great crew on board url", "Great crew on board http://t.co/x"),
    ("100% on time, 5_star", "100% on time, 5_star"),
    ('she said "never again"', 'she said "never again" \\o/'),
    ("ça va très bien", "Ça va TRÈS bien"),
    ("late again", "late again"),
]


def fill(engine) -> list[int]:
    with Session(engine) as s, s.begin():
        examples.import_examples(s, [NewExample(t, r) for t, r in ROWS], "import", "ann", LABELS)
    with Session(engine) as s:
        return list(s.scalars(select(Example.id).order_by(Example.id)))


def found(engine, needle: str) -> list[int]:
    with Session(engine) as s:
        return examples.queue_ids(s, "search", None, needle)


def scanned(engine, needle: str) -> list[int]:
    """What the LIKE scan answered, for an ASCII needle: the semantics the index must keep."""
    needle = needle.strip().lower()
    with Session(engine) as s:
        rows = s.execute(select(Example.id, Example.raw_text, Example.text)).all()
    return sorted(i for i, raw, cleaned in rows if needle in raw.lower() or needle in cleaned.lower())


def before_0010() -> str:
    return ScriptDirectory.from_config(migrate.alembic_config()).get_revision("0010").down_revision


NEEDLES = ["late", "LATE", "flight was", "great crew", "100%", "5_star", "%", "_", '"never', "\\o/", "t.co",
           "on", "a", "nowhere", "ight w", "board url"]


def test_search_finds_the_substrings_the_like_scan_found(engine):
    fill(engine)
    for needle in NEEDLES:
        assert found(engine, needle) == scanned(engine, needle), needle
    assert found(engine, "board url") == found(engine, "BOARD URL") != []


def test_search_matches_the_cleaned_text_as_well_as_the_raw_one_and_orders_by_id(engine):
    ids = fill(engine)
    assert found(engine, "@united") == [ids[0]]  # only in the raw text
    assert found(engine, "late") == [ids[0], ids[5]]
    assert found(engine, "  late  ") == [ids[0], ids[5]]  # what the person typed, trimmed
    assert found(engine, "   ") == []


def test_search_folds_case_beyond_ascii_on_the_index(engine):
    ids = fill(engine)
    # LIKE folds ASCII only; the trigram index folds Unicode case too (a wider match, never a narrower one)
    assert ids[4] in set(found(engine, "très")) & set(found(engine, "TRÈS"))


def test_the_table_searches_the_raw_text_only(engine):
    ids = fill(engine)
    with Session(engine) as s:
        got = [r[0] for r in examples.table_rows(s, None, search="http://")]
        none = examples.table_rows(s, None, search="board url")  # in the cleaned text only
    assert got == [ids[1]] and none == []


def test_the_index_follows_inserts_edits_and_deletes(engine):
    ids = fill(engine)
    with Session(engine) as s, s.begin():
        edited = s.get(Example, ids[1])
        edited.raw_text, edited.text = "Lovely crew", "lovely crew"  # an edit of the text
        s.get(Example, ids[2]).label = "positive"  # a label: the index is not touched
        s.execute(delete(Example).where(Example.id == ids[5]))
        examples.import_examples(s, [NewExample("late once more", "Late once more")], "import", "ann", LABELS)
    assert found(engine, "lovely") == [ids[1]] and found(engine, "great crew") == []
    assert found(engine, "100%") == [ids[2]]
    with Session(engine) as s:
        added = s.scalar(select(Example.id).where(Example.raw_text == "Late once more"))
    assert found(engine, "late") == [ids[0], added]  # the deleted "late again" is gone (SQLite may reuse its id)
    assert found(engine, "late again") == [] and found(engine, "once more") == [added]


def test_the_search_index_is_there_and_used(engine):
    fill(engine)
    with Session(engine) as s:
        cond = str(search.contains(s, "late").compile(s.get_bind()))
        short = str(search.contains(s, "la").compile(s.get_bind()))
        if engine.dialect.name == "sqlite":
            assert search.has_fts(s) and "MATCH" in cond and "MATCH" not in short
        else:
            names = {ix["name"] for ix in inspect(s.connection()).get_indexes("examples")}
            has_trgm = s.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first()
            assert set(search.TRGM_INDEXES) <= names or not has_trgm
            assert "ILIKE" in cond.upper() and "||" not in cond
            assert "||" in short  # 1-2 characters: no trigram, the planner must not scan the whole index


def test_downgrade_removes_the_index_and_upgrade_indexes_the_rows_already_there(engine):
    ids = fill(engine)
    migrate.downgrade(engine, before_0010())
    tables = set(inspect(engine).get_table_names())
    assert not {t for t in tables if t.startswith(search.FTS_TABLE)}
    with Session(engine) as s:
        assert not (engine.dialect.name == "sqlite" and search.has_fts(s))
    assert found(engine, "late") == [ids[0], ids[5]]  # LIKE, as before
    migrate.upgrade(engine)
    assert found(engine, "late") == [ids[0], ids[5]]


def test_the_drift_check_ignores_only_the_search_objects():
    assert not search.outside_models("examples_fts", "table", {})
    assert not search.outside_models("examples_fts_data", "table", {})
    assert not search.outside_models("ix_examples_text_trgm", "index", {})
    assert search.outside_models("examples", "table", {}) and search.outside_models("ix_examples_label", "index", {})


def test_the_queue_reads_every_match_of_a_dataset_by_id_and_leaves_the_planner_as_it_was(engine):
    ids = fill(engine)
    with Session(engine) as s, s.begin():
        s.get(Example, ids[5]).dataset = "other"
    with Session(engine) as s:
        assert search.matching_ids(s, "late").tolist() == [ids[0], ids[5]]
        assert search.matching_ids(s, "late", "other").tolist() == [ids[5]]
        assert examples.queue_ids(s, "search", None, "late", limit=1) == [ids[0]]
        assert search.matching_ids(s, "zzqx").tolist() == [] and search.matching_ids(s, "la").tolist() == [ids[0], ids[5]]
        if engine.dialect.name == "postgresql":
            assert search.has_trigram_indexes(s)
            # the scans are off for the queue's query only: the caller's transaction plans as before
            assert s.execute(text("SHOW enable_seqscan")).scalar() == "on"
            assert s.execute(text("SHOW enable_indexscan")).scalar() == "on"


def test_on_postgresql_the_queue_answers_from_the_trigram_indexes_even_for_a_common_word(engine):
    """Where a table scan costs less than the indexes by the planner's model (a word in many rows;
    here a table of 6 rows), the queue's query still reads the indexes (3-6 x faster at 300k rows:
    bench/README.md); 1-2 characters have no trigram and scan."""
    if engine.dialect.name != "postgresql":
        return
    fill(engine)

    def plan(needle: str) -> str:
        sql = search.matching(needle, "", s).compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        with search.on_the_indexes(s, needle):
            return "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {sql}")))

    with Session(engine) as s:
        assert "Seq Scan" in "\n".join(r[0] for r in s.execute(text(
            "EXPLAIN " + str(search.matching("the", "", s).compile(s.get_bind(), compile_kwargs={"literal_binds": True})))))
        assert "Bitmap Index Scan on ix_examples_raw_text_trgm" in plan("the") and "Seq Scan" not in plan("the")
        assert "Seq Scan" in plan("th")
