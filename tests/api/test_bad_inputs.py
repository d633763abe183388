"""Bad input everywhere: every endpoint of the launched app.py gets the corpus of bad files
(tests/data/bad_inputs/, see make_corpus.py there), the list of bad texts
(tests/data/bad_texts.json; lone surrogates in bad_texts_surrogates.json, sent as raw JSON since
gradio_client cannot encode them) and bad non-text arguments. Each call must either succeed
sensibly or fail with a gradio_client AppError whose message is meant for a person (no "Internal
error", no bare server error, no Python exception text), and a refused call must leave the
database exactly as it was (db_fingerprint before and after). A last test checks that every
endpoint view_api() lists has cases here, so a new endpoint cannot skip this file.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.support import db_fingerprint

DATA = Path(__file__).parents[1] / "data"  # tests/data
CORPUS = DATA / "bad_inputs"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
BAD_TEXTS = json.loads((DATA / "bad_texts.json").read_text())
SURROGATE_TEXTS = json.loads((DATA / "bad_texts_surrogates.json").read_text())
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# what a message meant for a person never contains
TECHNICAL = re.compile(r"Internal error|upstream Gradio app|Traceback|invalid literal|NoneType|has no attribute|"
                       r"codec can't|Errno|not supported between|validation error for|pydantic|Expected a `|"
                       r"object is not|unhashable|IndexError|KeyError|TypeError|sqlite3|sqlalchemy")
WRITES = {"/save_label", "/undo", "/import_csv", "/start_training", "/activate_version", "/set_annotations_per_item",
          "/skip_item", "/next_item",  # next_item claims a lease on the item it hands out
          "/map_selection", "/label_examples", "/undo_bulk_label", "/add_comment", "/set_guidelines",
          "/set_retrain_every", "/adjudicate", "/set_audit_share"}


def text_of(entry: dict) -> str:
    return entry["text"] * entry.get("repeat", 1)


# the bad texts as rows of one CSV: not the blank ones (a blank line is no row), not NUL (the
# whole file would be refused as binary), not the 100 kB one (past the csv field limit)
CSV_TEXTS = [e for e in BAD_TEXTS if text_of(e).strip() and "\x00" not in text_of(e) and len(text_of(e)) < 100_000]


def ids(entries: list[dict]) -> list[str]:
    return [e.get("name") or e.get("file") for e in entries]


# ---------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_csv, app_launcher, copy_first_start) -> Iterator[tuple[str, Path]]:
    """app.py on its own data dir (a copy of the first start: the 240-tweet sample and a tiny
    version 1), so the fingerprints see only this module's calls; yields (url, data dir)."""
    data_dir = copy_first_start(tmp_path_factory.mktemp("bad-inputs") / "runtime")

    def ready(url: str) -> bool:  # version 1 serves and its run is recorded: nothing runs any more
        c = Client(url, verbose=False)
        return bool(c.predict("hello", api_name="/predict")["label"]) and \
            c.predict(api_name="/training_status")["state"] == "succeeded"

    with app_launcher(data_dir, tiny_csv, ready) as url:
        yield url, data_dir


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app[0], verbose=False)


def check_message(message: str) -> None:
    assert message.strip(), "an error without a message"
    assert not TECHNICAL.search(message), f"not a message for a person: {message!r}"


def call(client: Client, data_dir: Path, api: str, *args, refused: str | tuple | None | bool = None):
    """Call `api`; returns the result, or None when it was refused. refused=True, a fragment of
    the message or a tuple of fragments (any one): it must be refused; False: it must succeed;
    None: either. A refused call, and any call of a read-only endpoint, must leave the database
    as it was."""
    before = db_fingerprint(data_dir)
    try:
        result = client.predict(*args, api_name=api)
    except AppError as exc:
        check_message(str(exc))
        assert refused is not False, f"{api}{args!r:.200} was refused: {exc}"
        if isinstance(refused, (str, tuple)):
            fragments = (refused,) if isinstance(refused, str) else refused
            assert any(f in str(exc) for f in fragments), f"{api}: {str(exc)!r} does not say {refused!r}"
        assert db_fingerprint(data_dir) == before, f"{api} was refused but changed the database"
        return None
    assert refused in (None, False), f"{api}{args!r:.200} was accepted: {result!r:.300}"
    if api not in WRITES:
        assert db_fingerprint(data_dir) == before, f"{api} only reads, yet changed the database"
    return result


def raw_call(url: str, api: str, data: list) -> tuple[str, object]:
    """POST /gradio_api/call/<api> with a JSON body built here (so lone surrogates travel as
    \\ud800 escapes, which gradio_client cannot send); ("complete", output) or ("error", message)."""
    base = url.rstrip("/") + "/gradio_api"
    r = httpx.post(f"{base}/call/{api}", content=json.dumps({"data": data}),
                   headers={"content-type": "application/json"}, timeout=60)
    r.raise_for_status()
    with httpx.stream("GET", f"{base}/call/{api}/{r.json()['event_id']}", timeout=120) as s:
        body = "".join(s.iter_text())
    event = re.findall(r"^event: (\w+)$", body, re.M)[-1]
    payload = json.loads(re.findall(r"^data: (.*)$", body, re.M)[-1])
    if event == "error":
        return "error", (payload or {}).get("error")
    return event, payload


# ---------------------------------------------------------------------------- bad texts
TEXT_ENDPOINTS = {  # endpoint -> how a text goes in
    "/predict": lambda t: (t,),
    "/tokenize": lambda t: (t, 0),
    "/explain": lambda t: (t, "predicted", True),
}
EXPLAIN_MAX_CHARS = 300  # Integrated Gradients on 128 real tokens takes seconds here; longer texts
# are the length paths, which predict and tokenize cover
OTHER_TEXT_CALLS = {  # the text as the sentences and as the word of compare_word, and as a search
    "sentences": ("/compare_word", lambda t: (t + "\nA bat flew by.\nHe swung the bat.", "bat", 2)),
    "word": ("/compare_word", lambda t: ("A bat flew by.\nHe swung the bat.", t, 2)),
    "search": ("/next_item", lambda t: ("search", t, [])),
}


class Outcome:
    """One read-only call made in a batch: its result, or the message it was refused with."""

    def __init__(self, client: Client, api: str, args: tuple) -> None:
        self.api, self.result, self.error = api, None, None
        try:
            self.result = client.predict(*args, api_name=api)
        except AppError as exc:
            self.error = str(exc)

    def check(self, refused: str | None | bool = None):  # noqa: ANN201
        """As `call` checks it (the database is checked around the whole batch)."""
        if self.error is not None:
            check_message(self.error)
            assert refused is not False, f"{self.api} was refused: {self.error}"
            if isinstance(refused, str):
                assert refused in self.error, f"{self.api}: {self.error!r} does not say {refused!r}"
            return None
        assert refused in (None, False), f"{self.api} was accepted: {self.result!r:.300}"
        return self.result


def batch(client: Client, data_dir: Path, calls: dict) -> dict:
    """Read-only calls, 6 at a time (the app serves 4 at once; this hides the round trips): the
    Outcome of each, and the database must be the same after all of them."""
    before = db_fingerprint(data_dir)
    local = threading.local()

    def outcome(api: str, args: tuple) -> Outcome:
        # a Client per thread: calls in flight on one Client share its event stream, and
        # gradio_client 2.7 can cancel one of them when another's stream closes (seen on CI)
        if not hasattr(local, "client"):
            local.client = Client(client.src, verbose=False)
        return Outcome(local.client, api, args)

    with ThreadPoolExecutor(6) as pool:
        futures = {key: pool.submit(outcome, api, args) for key, (api, args) in calls.items()}
        out = {key: f.result() for key, f in futures.items()}
    after = db_fingerprint(data_dir)
    before.pop("leases"), after.pop("leases")  # next_item hands out leases (work distribution)
    assert after == before, "a read-only endpoint changed the database"
    return out


@pytest.fixture(scope="module")
def text_outcomes(client, app) -> dict:
    calls = {}
    for e in BAD_TEXTS:
        t = text_of(e)
        calls |= {(e["name"], api): (api, f(t)) for api, f in TEXT_ENDPOINTS.items()
                  if api != "/explain" or len(t) <= EXPLAIN_MAX_CHARS}
        calls |= {(e["name"], key): (api, f(t)) for key, (api, f) in OTHER_TEXT_CALLS.items()}
    return batch(client, app[1], calls)


@pytest.mark.parametrize("entry", BAD_TEXTS, ids=ids(BAD_TEXTS))
def test_bad_texts_on_the_text_endpoints(text_outcomes, entry):
    for api in TEXT_ENDPOINTS:
        if (entry["name"], api) not in text_outcomes:
            continue
        out = text_outcomes[entry["name"], api].check(refused=entry["refused"] or False)
        if out is None:
            continue
        if api == "/predict":
            assert out["label"] in {c["label"] for c in out["confidences"]}
        elif api == "/tokenize":
            tokens = [row[1] for row in out["data"]]
            assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) <= 128
        else:
            highlighted, raw = out
            assert raw["target"] in raw["probabilities"] and raw["tokens"][0]["token"] == "[CLS]"


@pytest.mark.parametrize("entry", BAD_TEXTS, ids=ids(BAD_TEXTS))
def test_bad_texts_as_sentences_word_and_search(app, text_outcomes, entry):
    # compared, or refused with a message
    out = text_outcomes[entry["name"], "sentences"].check()
    if out is not None:
        assert len(out["occurrences"]) >= 2 and len(out["similarity"]) == len(out["occurrences"])
    text_outcomes[entry["name"], "word"].check()
    # refused (too long) with a message, or exactly what a literal search of the database finds
    search = text_outcomes[entry["name"], "search"]
    item = search.check()
    if search.error is None:
        matches = literal_matches(app[1], text_of(entry).strip())
        assert (item is None) == (not matches), (item, matches[:5])
        assert item is None or item["id"] in matches


def literal_matches(data_dir: Path, needle: str) -> list[int]:
    """The ids whose raw or cleaned text holds `needle` literally (%, _ and \\ as themselves), as
    the search queue defines it, read straight from the app's SQLite file."""
    if not needle:
        return []
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    con = sqlite3.connect(data_dir / "bertdemo.sqlite3")
    try:
        return [i for (i,) in con.execute("SELECT id FROM examples WHERE raw_text LIKE ? ESCAPE '\\' "
                                          "OR text LIKE ? ESCAPE '\\' ORDER BY id", (pattern, pattern))]
    finally:
        con.close()


@pytest.mark.parametrize("entry", SURROGATE_TEXTS, ids=ids(SURROGATE_TEXTS))
def test_lone_surrogates_over_raw_json(app, entry):
    url, data_dir = app
    before = db_fingerprint(data_dir)
    for api, args in [*((a, f(entry["text"])) for a, f in TEXT_ENDPOINTS.items()),
                      ("/compare_word", (entry["text"] + "\nbat and bat", "bat", 1)),
                      ("/next_item", ("search", entry["text"], [], "all"))]:
        event, out = raw_call(url, api.strip("/"), list(args))
        assert event in ("complete", "error")
        if event == "error":
            assert out, f"{api}: a bare server error for {entry['name']}"
            check_message(out)
            if entry["refused"] and api in TEXT_ENDPOINTS:
                assert entry["refused"] in out
        else:
            assert not (entry["refused"] and api in TEXT_ENDPOINTS), f"{api} accepted {entry['name']}"
    assert db_fingerprint(data_dir) == before


# ---------------------------------------------------------------------------- bad files
def check_predictions(path: str, rows: int, problems: int) -> None:
    out = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert len(out) == rows and int((out["error"] != "").sum()) == problems
    assert out.loc[out["error"] == "", "predicted_label"].isin(["negative", "neutral", "positive"]).all()
    for cell in [*out.columns, *out.to_numpy().ravel()]:  # formula-safe: headers and cells
        assert not str(cell).startswith(FORMULA_START), f"formula cell in the download: {cell!r}"


@pytest.mark.parametrize("case", MANIFEST, ids=ids(MANIFEST))
def test_corpus_file_on_predict_csv_and_import_csv(client, app, predict_outcomes, case):
    path, data_dir = handle_file(str(CORPUS / case["file"])), app[1]
    want = case["predict_csv"]
    out = predict_outcomes[case["file"]].check(refused=want.get("refused", False))
    if out is not None:
        check_predictions(out[0], want["rows"], want["problems"])
        assert f"Classified {want['rows'] - want['problems']:,} of {want['rows']:,} rows" in out[1]

    want = case["import"]
    before = db_fingerprint(data_dir)
    summary = call(client, data_dir, "/import_csv", path, refused=want.get("refused", False))
    if summary is not None:
        assert summary == f"Added {want['added']:,} examples; skipped {want['skipped']:,}."
        after = db_fingerprint(data_dir)
        assert after["examples"][0] == before["examples"][0] + want["added"]
        assert {k: v for k, v in after.items() if k not in ("examples", "label_events")} == \
            {k: v for k, v in before.items() if k not in ("examples", "label_events")}
        # a second import of the same file adds nothing and changes nothing
        call(client, data_dir, "/import_csv", path, refused="Nothing to import")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The corpus's large cases, written here rather than committed."""
    d = tmp_path_factory.mktemp("generated")
    (d / "huge_line.csv").write_text("text\n" + "h" * 300_000 + "\n")  # over the csv module's field limit
    (d / "huge_cell.csv").write_text("text\n" + "g" * 100_000 + "\n")  # a cell far over the text cap
    (d / "wide.csv").write_text(",".join(["text", *(f"c{i}" for i in range(9_999))]) + "\n"
                                + ",".join(["ten thousand columns", *("x" * 9_999)]) + "\n")
    (d / "many_rows.csv").write_text("text\n" + "r\n" * 200_001)  # 400 kB: under the size cap
    with open(d / "over_cap.csv", "wb") as f:  # the test app runs with BERTDEMO_MAX_UPLOAD_MB=1
        f.write(b"text\n" + b"o" * (2**20 - 4))
    with open(d / "bad_texts.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\r\n")  # cells holding \r or \n are quoted
        w.writerows([["text"], *([text_of(e)] for e in CSV_TEXTS)])
    return d


@pytest.fixture(scope="module")
def predict_outcomes(client, app, generated) -> dict:
    """predict_csv (read-only) on every corpus file and generated file, in one batch."""
    files = [CORPUS / c["file"] for c in MANIFEST] + sorted(generated.iterdir())
    return batch(client, app[1], {f.name: ("/predict_csv", (handle_file(str(f)),)) for f in files})


@pytest.mark.parametrize("name, predict, imported", [
    ("huge_line.csv", "longer than 131,072 characters", "longer than 131,072 characters"),
    ("huge_cell.csv", (1, 1), "Nothing to import"),
    ("wide.csv", (1, 0), (1, 0)),
    ("many_rows.csv", "the limit is 200,000", "the limit is 200,000"),
    ("over_cap.csv", "the limit is 1 MB", "the limit is 1 MB"),
    ("bad_texts.csv", None, None),
])
def test_generated_files(client, app, generated, predict_outcomes, name, predict, imported):
    path, data_dir = handle_file(str(generated / name)), app[1]
    out = predict_outcomes[name].check(refused=predict if isinstance(predict, str) else False)
    if isinstance(predict, tuple):
        check_predictions(out[0], *predict)
    elif predict is None:  # every bad text: classified, or an error in its row saying why
        check_predictions(out[0], len(CSV_TEXTS), sum(1 for e in CSV_TEXTS if e["refused"]))
    before = db_fingerprint(data_dir)["examples"][0]
    summary = call(client, data_dir, "/import_csv", path, refused=imported if isinstance(imported, str) else False)
    if summary is not None:
        added, skipped = map(int, re.fullmatch(r"Added ([\d,]+) examples; skipped ([\d,]+)\.",
                                               summary).groups())
        if isinstance(imported, tuple):
            assert (added, skipped) == imported
        assert db_fingerprint(data_dir)["examples"][0] == before + added
        assert added + skipped == (len(CSV_TEXTS) if name == "bad_texts.csv" else 1)
        call(client, data_dir, "/import_csv", path, refused="Nothing to import")


# ---------------------------------------------------------------------------- bad arguments
TRAIN_OK = [1, 1e-4, 16, 32, 1, "full fine-tune", "base encoder", 1, False]


def train_args(i: int, value: object) -> list:
    args = list(TRAIN_OK)
    args[i] = value
    return args


ARGUMENT_CASES = [
    # endpoint, arguments, None = may succeed, or a fragment of the refusal
    ("/predict", [None], "The text is empty"),
    ("/predict", [12345], None),
    ("/predict_batch", [[]], "The list of texts is empty"),
    ("/predict_batch", ["just one string"], "Send a list of texts"),
    ("/predict_batch", [None], "Send a list of texts"),
    ("/predict_batch", [["fine", ""]], "Text 2 of 2: The text is empty"),
    ("/predict_batch", [["fine", 7]], "Text 2 of 2 is not a string (int)"),
    ("/predict_batch", [["x" * 3000]], "Text 1 of 1: "),
    ("/predict_batch", [["ok"] * 257], "At most 256 texts per call; got 257"),
    ("/predict_batch", [["ok", "\u202e\x00 odd \ufeff"]], None),
    ("/tokenize", ["hello", None], "Padded length"),
    ("/tokenize", ["hello", "abc"], "Padded length"),
    ("/tokenize", ["hello", -5], "less than minimum value 0"),
    ("/tokenize", ["hello", 10**9], "greater than maximum value 128"),
    ("/tokenize", ["hello", 2.5], "whole number"),
    ("/tokenize", ["hello", 1], "choose a padded length of at least 3"),
    ("/explain", ["hello", "angry", True], "not in the list of choices"),
    ("/explain", ["hello", 5, True], "not in the list of choices"),
    ("/explain", ["hello", None, False], None),
    ("/predict_csv", [None], "Choose a CSV file first"),
    ("/predict_csv", ["not-a-file.csv"], "handle_file(path)"),
    ("/predict_csv", [5], "Expected an uploaded file"),
    ("/import_csv", [None], "Choose a CSV file first"),
    ("/import_csv", ["not-a-file.csv"], "handle_file(path)"),
    ("/import_csv", [{"path": "x.csv"}], "Expected an uploaded file"),
    ("/export_csv", [], None),
    ("/agreement", [], None),  # single-user mode: the local user is an admin
    ("/training_status", [], None),
    ("/next_item", ["bogus", "", []], ("The queue must be one of ['unlabeled', 'informative', 'disagree', "
                                       "'uncertain', 'margin', 'diverse', 'suspicious', 'recent', 'search', "
                                       "'selection'], got 'bogus'")),
    ("/next_item", ["selection", "", []], None),  # no map selection yet: an empty queue
    ("/next_item", ["unlabeled", "", [], "sports"], "The dataset must be one of ['all', 'airline'"),
    ("/next_item", ["unlabeled", "", [], 5], "The dataset must be one of"),
    ("/next_item", ["disagree", "", [], "airline"], None),
    ("/next_item", [None, "", []], "The queue must be one of"),
    ("/next_item", [5, "", []], "], got 5."),
    ("/next_item", ["suspicious\x00", "", []], "The queue must be one of"),
    ("/next_item", ["unlabeled", "", "1,2"], "exclude must be a list"),
    ("/next_item", ["unlabeled", "", 7], "exclude must be a list"),
    ("/next_item", ["unlabeled", "", ["x"]], "Every id in exclude"),
    ("/next_item", ["unlabeled", "", [-1, 0, 2**70]], None),
    ("/next_item", ["search", "x" * 501, []], "the limit is 500"),
    ("/next_item", ["search", ["x"], []], "The search must be text"),
    ("/next_item", ["search", "%_\\'\"", []], None),
    ("/next_item", ["disagree", None, None], None),
    ("/save_label", [-1, "positive", 1], "No example with id -1"),
    ("/save_label", [0, "positive", 1], "No example with id 0"),
    ("/save_label", [10**30, "positive", 1], "No example with id"),
    ("/save_label", [None, "positive", 1], "must be a whole number, got None"),
    ("/save_label", ["abc", "positive", 1], "must be a whole number, got 'abc'"),
    ("/save_label", [1.5, "positive", 1], "must be a whole number, got 1.5"),
    ("/save_label", [1, "angry", 1], "The label must be one of ['negative', 'neutral', 'positive'], got 'angry'."),
    ("/save_label", [1, "POSITIVE", 1], "The label must be one of"),
    ("/save_label", [1, "", 1], "], got ''."),
    ("/save_label", [1, None, 1], "], got None."),
    ("/save_label", [1, "positive", -5], "The version must be"),
    ("/save_label", [1, "positive", "x"], "The version must be a whole number"),
    ("/save_label", [1, "positive", 10**6], "after you loaded it"),  # a version it never had: stale
    ("/save_label", [1, "positive", 1, "yes"], ("accepted_suggestion must be true or false", "Accepted")),
    ("/save_label", [1, "angry", 1, True], "The label must be one of"),
    ("/undo", [-1], "No example with id -1"),
    ("/undo", [10**30], "No example with id"),
    ("/undo", [None], "must be a whole number"),
    ("/undo", ["1; DROP TABLE examples"], "must be a whole number"),
    ("/undo", [1], "Nothing to undo on example 1"),
    ("/skip_item", [None], "must be a whole number"),
    ("/skip_item", ["abc"], "must be a whole number, got 'abc'"),
    ("/skip_item", [-1], "No example with id -1"),
    ("/skip_item", [10**30], "No example with id"),
    ("/skip_item", [1], None),  # held by nobody: False, nothing changes
    ("/set_annotations_per_item", [0], "Annotations per item"),
    ("/set_annotations_per_item", [1e9], "Annotations per item"),
    ("/set_annotations_per_item", [2.5], "Annotations per item"),
    ("/set_annotations_per_item", ["two"], "Annotations per item"),
    ("/set_annotations_per_item", [None], "Annotations per item"),
    ("/similar_examples", [None, "", 5], "must be a whole number, got None"),
    ("/similar_examples", [10**30, "", 5], "No example with id"),
    ("/similar_examples", [1, "", 0], "Number of similar examples"),
    ("/similar_examples", [1, "", 1e9], "Number of similar examples"),
    ("/similar_examples", [None, "@only http://a.b", 5], "Nothing is left"),
    ("/similar_examples", [None, "x" * 2001, 5], "the limit is 2,000"),
    ("/similar_examples", [None, "lovely crew", 5], None),
    ("/map_selection", [{}], "must be a box or a lasso"),
    ("/map_selection", [{"box": [1e6, 1e6, 1e6 + 1, 1e6 + 1]}], "The selection is empty"),
    ("/map_selection", [{"box": [0, 0]}], "must be a box"),
    ("/map_selection", [{"lasso": [[0, 0], [1, 1]]}], "lasso"),
    ("/map_selection", [{"lasso": "all"}], "lasso"),
    ("/label_examples", [[], "positive"], "The selection is empty"),
    ("/label_examples", [list(range(1, 100_002)), "positive"], "at most 100,000 examples"),
    ("/label_examples", [[1, 10**12], "positive"], "No example with id 1000000000000"),
    ("/label_examples", [[1], "angry"], "The label must be one of"),
    ("/label_examples", ["1,2", "positive"], "must be a list of example ids"),
    ("/undo_bulk_label", ["no-such-batch"], "No bulk label with batch id"),
    ("/undo_bulk_label", [None], "The batch must be"),
    ("/add_comment", [10**30, "hello"], "No example with id"),
    ("/add_comment", [1, "   "], "The comment is empty"),
    ("/add_comment", [1, "x" * 2001], "the limit is 2,000"),
    ("/add_comment", [1, None], "The comment must be text"),
    ("/set_guidelines", ["x" * 20_001], "the limit is 20,000"),
    ("/set_guidelines", [None], "The guidelines must be text"),
    ("/set_retrain_every", [3], "0 (off) or from 10"),
    ("/set_retrain_every", [1e9], "Retrain every N labels"),
    ("/set_retrain_every", [-1], "Retrain every N labels"),
    ("/set_retrain_every", ["often"], "Retrain every N labels"),
    ("/adjudicate", [1, "positive", 1], "no annotators' labels to adjudicate"),
    ("/adjudicate", [10**30, "positive", 1], "No example with id"),
    ("/adjudicate", [1, "angry", 1], "The final label must be one of"),
    ("/next_disagreement", [[]], None),
    ("/next_disagreement", ["x"], "exclude must be a list"),
    # is more labelling worth it (issue 25): reports take no argument; the share and the format are checked
    ("/labelling_value", [], None),
    ("/stopping_signals", [], None),
    ("/learning_curve", [], None),
    ("/annotation_time", [], None),
    ("/suggestion_audit", [], None),
    ("/export_labelling_value", ["xlsx"], "not in the list of choices"),
    ("/export_labelling_value", [None], ("not in the list of choices", "Export as one of csv, json")),
    ("/export_labelling_value", ["json"], None),
    ("/set_audit_share", [0.9], "greater than maximum value 0.5"),
    ("/set_audit_share", [-0.1], "less than minimum value 0"),
    ("/set_audit_share", ["half"], True),
    ("/set_audit_share", [None], True),
    ("/set_audit_share", [0.0], None),
    ("/start_training", [None] * 9, "expected a number"),
    ("/start_training", train_args(0, 1e30), "Epochs: Value 1e+30 is greater than maximum value 100"),  # used to
    # start a run; the form's bounds are TrainConfig's
    ("/start_training", train_args(0, "abc"), "Epochs: expected a number"),
    ("/start_training", train_args(1, "nan"), "Learning rate"),
    ("/start_training", train_args(1, 0.9), "greater than maximum value 0.5"),
    ("/start_training", train_args(1, 0), "less than minimum value 1e-07"),
    ("/start_training", train_args(2, 1000), "greater than maximum value 128"),
    ("/start_training", train_args(3, 4), "less than minimum value 16"),
    ("/start_training", train_args(4, 1e30), "Seed: Value 1e+30 is greater than maximum value 4294967295"),  # used
    # to start a run that failed in the split
    ("/start_training", train_args(4, -1), "Seed: Value -1 is less than minimum value 0"),
    ("/start_training", train_args(5, "lora"), "not in the list of choices"),
    ("/start_training", train_args(6, "the moon"), "not in the list of choices"),
    ("/start_training", train_args(7, -3), "less than minimum value 0"),
    ("/start_training", train_args(8, "false"), "serve when trained must be true or false"),
    ("/activate_version", ["v99"], "No model version named 'v99'"),
    ("/activate_version", ["v0"], "No model version named 'v0'"),
    ("/activate_version", [""], "No model version named ''"),
    ("/activate_version", [None], "No model version named None"),
    ("/activate_version", [5], "No model version named 5"),
    ("/activate_version", [["v1"]], "No model version named"),
    ("/activate_version", ["V1"], "No model version named 'V1'"),
    ("/activate_version", [" v1"], "No model version named ' v1'"),
    ("/activate_version", ["../v1"], "No model version named '../v1'"),
    ("/activate_version", ["v1'; DROP TABLE model_versions;--"], "No model version named"),
    ("/review_version", ["v99", "v1", None], "No model version named 'v99'"),
    ("/review_version", ["v1", None, None], "No model version named None"),
    ("/review_version", ["v1", ["v1"], None], "No model version named"),
    ("/review_version", ["v1", "v1", "worse"], "The kind of flips must be one of ['fixed', 'broken', 'changed']"),
    ("/review_version", ["v1", "v1", 5], "The kind of flips must be one of"),
    ("/review_version", ["v1", "v1", None], False),  # a version against itself: no flips, the gate passes
    ("/review_version", ["v1", "v1", "broken"], False),
    ("/compare_word", ["A bat.\nA bat.", "bat", 99], "The layer must be a whole number from 0 (input embeddings) "
                                                     "to 6, got 99."),
    ("/compare_word", ["A bat.\nA bat.", "bat", -1], "The layer must be"),
    ("/compare_word", ["A bat.\nA bat.", "bat", "abc"], "The layer must be"),
    ("/compare_word", ["A bat.\nA bat.", "bat", 1.5], "The layer must be"),
    ("/compare_word", ["A bat.\nA bat.", "bat", None], None),  # the last layer
    ("/compare_word", [None, None, None], "The word is empty"),
    ("/compare_word", [None, "bat", 1], "at least one sentence"),
    ("/compare_word", ["A bat.\nA bat.", "cricket bat", 1], "one word"),
    ("/compare_word", ["\n".join(["A bat."] * 200), "bat", 1], "200 sentences; the limit is 50"),
    ("/compare_word", ["bat " * 150, "bat", 1], None),  # read up to max length, with a note
    ("/compare_word", [["A bat.", "A bat."], "bat", 1], None),
    ("/compare_word", ["A bat.\nA bat.", ["bat"], 1], "occurs nowhere"),
]


@pytest.mark.parametrize("api, args, refused", ARGUMENT_CASES,
                         ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(ARGUMENT_CASES)])
def test_bad_arguments(client, app, api, args, refused):
    out = call(client, app[1], api, *args, refused=refused)
    if api == "/export_csv":
        check_predictions_free(out)


def check_predictions_free(path: str) -> None:
    """The export: every example, formula-safe headers and cells."""
    out = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert len(out) >= 240
    for cell in [*out.columns, *out.to_numpy().ravel()]:
        assert not str(cell).startswith(FORMULA_START), f"formula cell in the export: {cell!r}"


def test_nothing_was_trained_or_activated(client, app):
    """None of the refused start_training calls started a run (v1 is still the only version)."""
    status = call(client, app[1], "/training_status")
    assert status["run_id"] == 1 and status["version"] == "v1" and status["state"] == "succeeded"


def test_ui_inputs_turn_malformed_api_values_into_messages(tmp_path):
    """The inputs of bertdemo.ui.common answer what Gradio's own crash on, and stay plain Gradio
    components (no subclass, so Gradio writes no .pyi stub into the package)."""
    import gradio as gr

    from bertdemo.ui import common
    from bertdemo.ui.common import api_file, api_number, api_slider

    cases = [(api_slider(0, 128, label="Padded length"), [None, "abc", [1], True],
              "Padded length: expected a number"),
             (api_number(label="Epochs", minimum=0.05), ["abc", "nan", {}],
              "Epochs: expected a number of at least 0.05"),
             (api_slider(4, 128, label="Batch size"), [1000], "Batch size: Value 1000 is greater than maximum value 128")]
    for comp, values, message in cases:
        assert type(comp) in (gr.Slider, gr.Number)
        for v in values:
            with pytest.raises(gr.Error, match=re.escape(message)):
                comp.preprocess(v)
    assert api_number(label="Seed").preprocess(None) is None and api_slider(0, 10).preprocess(3) == 3
    f = api_file(file_types=[".csv"])
    assert type(f) is gr.File and f.api_info() == gr.File(file_types=[".csv"]).api_info()  # uploads still work
    with pytest.raises(gr.Error, match=re.escape("Expected an uploaded file (with gradio_client: handle_file")):
        f.data_model.model_validate("tweets.csv", context={"validate_meta": True})
    assert not Path(common.__file__).with_suffix(".pyi").exists()


# ---------------------------------------------------------------------------- every endpoint
def test_every_endpoint_has_bad_input_cases(client):
    """An endpoint added to the app without cases in this file fails here."""
    covered = ({*TEXT_ENDPOINTS, "/compare_word", "/next_item", "/predict_csv", "/import_csv"}
               | {api for api, _, _ in ARGUMENT_CASES})
    listed = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert listed, "view_api lists no endpoints"
    missing = listed - covered
    assert not missing, f"endpoints without bad-input cases in tests/api/test_bad_inputs.py: {sorted(missing)}"
    assert listed >= {"/predict", "/tokenize", "/explain", "/predict_csv", "/next_item", "/save_label", "/undo",
                      "/import_csv", "/export_csv", "/agreement", "/compare_word", "/start_training",
                      "/training_status", "/activate_version"}
