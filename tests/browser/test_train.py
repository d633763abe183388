"""The Train tab: its actions without Gradio (admin checks, form -> config, status, versions,
the version review), the HTTP API with gradio_client, and a real browser that trains, reviews the
new version (slices, the gate, the broken filter, a flip's attributions under both versions),
activates it and sees Predict use it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.actions.train import MODES, STARTS, TrainingActions
from bertdemo.config import Settings
from bertdemo.db import runs, versions
from bertdemo.errors import Forbidden, NotFound
from bertdemo.services import Services
from bertdemo.training.config import TrainConfig
from tests.support import TINY_TRAIN, wait_for

QUICK = TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 2}))
FORM = dict(epochs=1, learning_rate=1e-4, batch_size=16, max_length=32, seed=3, mode=MODES[0],
            start_from=STARTS[0], max_steps=2)
FORM_CONFIG = TrainingActions.config_from_form(**FORM)


@pytest.fixture(scope="module")
def two_versions_dir(tmp_path_factory, tiny_csv) -> Path:
    """A data dir with v1 serving (scored) and v2 registered but never activated (no scores),
    trained once for the module; each test works on its own copy (`two_versions`)."""
    settings = Settings(serving="bf16", data_dir=tmp_path_factory.mktemp("train-two") / "runtime",
                        dataset_path=tiny_csv, datasets=("airline",), initial_epochs=1)
    services = Services.create(settings)
    services.ensure_dataset()
    services.jobs.run_sync(QUICK, user="t")
    services.jobs.run_sync(TrainConfig(**(QUICK.to_dict() | {"seed": 5, "learning_rate": 3e-4})), user="t",
                           activate=False)
    services.jobs.wait_rescore(120)
    services.engine.dispose()
    return settings.data_dir


@pytest.fixture
def two_versions(two_versions_dir, settings):
    """Services on a fresh copy of `two_versions_dir` (tests activate, review and restart on it)."""
    shutil.copytree(two_versions_dir, settings.data_dir)
    return Services.create(settings)


def test_form_values_become_a_validated_config():
    c = TrainingActions.config_from_form(3, 2e-5, 64, 128, 7, MODES[1], STARTS[1], 0)
    assert (c.epochs, c.learning_rate, c.batch_size, c.max_length, c.seed) == (3.0, 2e-5, 64, 128, 7)
    assert c.freeze_encoder and c.init_from == "active" and c.max_steps is None
    assert TrainingActions.config_from_form(1, 1e-4, 16, 32, 0, MODES[0], STARTS[0], 5).max_steps == 5
    with pytest.raises(ValueError, match=r"Batch size \(batch_size\) must be a whole number from 1 to 1024"):
        TrainingActions.config_from_form(1, 1e-4, 0, 32, 0)
    with pytest.raises(ValueError, match="What to train must be one of"):
        TrainingActions.config_from_form(1, 1e-4, 16, 32, 0, "lora")


def test_only_admins_start_cancel_and_activate(services):
    services.ensure_dataset()
    actions = TrainingActions(services)
    auth.add_user(services.engine, "ann", "pw-ann-123", "annotator")
    auth.add_user(services.engine, "boss", "pw-boss-123", "admin")
    for who, msg in ((None, "Sign in first"), ("ann", "Only admins may do this; 'ann' is an annotator")):
        with pytest.raises(Forbidden, match=msg):
            actions.start(FORM_CONFIG, who, serve=True)
        with pytest.raises(Forbidden, match=msg):
            actions.activate("v1", who)
        with pytest.raises(Forbidden, match=msg):
            actions.cancel(who)
    assert services.jobs.status().state == "idle"  # nothing was started
    assert "started" in actions.start(FORM_CONFIG, "boss", serve=True)
    services.jobs.wait(120)
    with Session(services.engine) as s:
        assert runs.latest_run(s).user == "boss"
    assert services.registry.active().name == "v1"


def test_status_view_after_a_run(services):
    services.ensure_dataset()
    actions = TrainingActions(services)
    assert actions.status().state == "idle" and actions.status().confusion is None
    msg = actions.start(FORM_CONFIG, None, serve=False)  # single-user mode: everyone is admin
    assert "activate it below" in msg
    services.jobs.wait(120)
    v = actions.status()
    assert v.state == "succeeded" and v.fraction == 1.0 and v.version_name == "v1"
    assert len(v.confusion) == 3 and sum(map(sum, v.confusion)) > 0 and "macro avg" in v.report
    api = v.as_api()
    assert api["state"] == "succeeded" and api["version"] == "v1" and len(api["history"]) == 2
    assert services.registry.active_version() is None  # not activated: the admin decides
    [row] = actions.versions_table()
    assert row[0] == "v1" and row[1] == "" and "lr 0.0001" in row[6]


def test_after_a_restart_the_tab_shows_the_last_recorded_run(two_versions, tmp_path):
    fresh = Services.create(two_versions.settings)  # a new process on the same data
    v = TrainingActions(fresh).status()
    assert v.state == "succeeded" and v.version_name == "v2" and v.step == v.total_steps == 2
    assert len(v.history) == 2 and "macro avg" in v.report and len(v.confusion) == 3
    with Session(fresh.engine) as s, s.begin():
        runs.create_run(s, "t", QUICK.to_dict())  # left running by a process that died
    fresh.start()
    v = TrainingActions(Services.create(two_versions.settings)).status()
    assert v.state == "failed" and "stopped during this run" in v.message and v.version_name is None


def test_review_two_versions(two_versions):
    actions = TrainingActions(two_versions)
    r = actions.review("v1", "v2")
    n = r.flips.n
    assert n > 0 and r.on == "the validation split of v2"
    assert r.stored == (n, 0)  # v1 was activated (scored); v2 never was: its model scored the split
    assert "v1: stored scores; v2: its model" in r.source()
    assert [row[0] for row in r.slice_rows()][:2] == ["all", "airline"]
    assert r.flips.total == sum(r.flips.kinds.values()) == sum(r.flips.transitions.values())
    assert len(r.rows) == min(200, r.flips.total) and r.flips.total > 0  # these two versions disagree somewhere
    assert all(f.a_label != f.b_label for f in r.rows)
    assert r.verdict().startswith("Gate passed" if r.gate.passed else "Gate failed")
    api = r.as_api()
    assert api["flips"]["total"] == r.flips.total and api["gate"]["passed"] == r.gate.passed
    assert set(api["rows"][0]) == {"id", "text", "gold", "A predicts", "A prob.", "B predicts", "B prob.", "kind",
                                   "set"}
    assert api["corpus_flips"] is None and "Whole corpus: not counted" in r.counts()  # v2 has no stored scores
    with pytest.raises(NotFound, match="No model version named 'v9'"):
        actions.review("v1", "v9")
    # Activate B with a reason: recorded with the activation, with the review's verdict
    assert "Now serving **v2**" in actions.activate("v2", None, "fewer broken airline tweets")
    with Session(two_versions.engine) as s:
        reason = versions.activations(s, 1)[0].reason
    verdict = "gate passed" if r.gate.passed else "gate failed: manual override"
    assert reason == f"activation in the Train tab after the review ({verdict}): fewer broken airline tweets"
    two_versions.jobs.wait_rescore(60)
    # both versions scored now: the flips over the whole corpus come from their stored scores
    again = actions.review("v1", "v2")
    assert again.corpus is not None and again.corpus.flips.n > n and again.corpus.flips.total >= r.flips.total
    assert "On the whole corpus" in again.counts()


def test_attributions_under_both_versions(two_versions):
    actions = TrainingActions(two_versions)
    pair = actions.attributions("@united the crew was great, thanks!", "v1", "v2")
    for side in (pair.a, pair.b):
        words = [t for t, _s in side.highlighted]
        assert "crew" in words and "great" in words
        assert side.target in ("negative", "neutral", "positive")
    assert pair.a.highlighted != pair.b.highlighted  # different weights, different attributions
    assert re.fullmatch(r"v1 \(A\): towards \w+ \(\d+%\)", pair.a.label())
    assert re.fullmatch(r"v2 \(B\): towards \w+ \(\d+%\)", pair.b.label())
    assert re.search(r"\*\*v1\*\* \(A\): \w+ \(\d+%\) · \*\*v2\*\* \(B\): \w+ \(\d+%\)", pair.line())


def test_activate_rolls_back_and_rescores_in_the_background(two_versions):
    actions = TrainingActions(two_versions)
    assert "Now serving **v2**" in actions.activate("v2", None)
    assert two_versions.registry.active().name == "v2"
    assert "Now serving **v1**" in actions.activate("v1", None)
    two_versions.jobs.wait_rescore(60)
    assert two_versions.registry.active().name == "v1" and two_versions.jobs.last_rescore[0] == "v1"


# ------------------------------------------------------------------ the launched app
def _review_in_the_browser(pg, new: str) -> None:
    """Review `new` (B, the newest) against v1 (A, the one before): slices and the gate's verdict,
    the flips' totals unchanged by the broken filter, a flip's attributions under both versions,
    each panel labelled with its version and class; then Activate B with a reason."""
    pg.wait_for_function(f"document.querySelector('#compare-b input')?.value === '{new}'", timeout=30000)
    assert pg.locator("#compare-a input").input_value() == "v1"
    pg.locator("#review-button").click()
    pg.wait_for_function("/Gate (passed|failed)/.test(document.querySelector('#review-gate')?.innerText)",
                         timeout=120000)
    slices = pg.locator("#review-slices").inner_text()
    assert "airline" in slices and "95% CI" in slices, slices
    counts = pg.locator("#review-counts").inner_text()
    total = re.search(r"Flips: On \w+'s validation split: ([\d,]+) of ([\d,]+) examples changed prediction "
                      r"\(fixed \d+, broken (\d+)", counts)
    assert total, counts
    pg.locator("#review-filter").get_by_label("broken").check()
    pg.wait_for_function("document.querySelector('#review-counts')?.innerText.includes('Listed: ')"
                         " && document.querySelector('#review-counts')?.innerText.includes(' broken (')", timeout=30000)
    after = pg.locator("#review-counts").inner_text()
    assert after.split("Listed:")[0] == counts.split("Listed:")[0]  # the totals stay those of every flip
    if int(total.group(3)) == 0:  # nothing broken to click: list every flip again
        pg.locator("#review-filter").get_by_label("all").check()
        pg.wait_for_function("document.querySelector('#review-counts')?.innerText.includes('of any kind')",
                             timeout=30000)
    if int(total.group(1).replace(",", "")):
        pg.locator('#review-flips [data-testid="cell-0-1"]').first.click()  # the first flip's text
    else:  # the two versions agree everywhere: explain a typed text instead
        pg.locator("#compare-text textarea, #compare-text input").first.fill("the crew was great")
        pg.locator("#compare-explain").click()
    for panel, who in (("#attr-a", "v1 (A): towards "), ("#attr-b", f"{new} (B): towards ")):
        pg.wait_for_function(f"document.querySelector('{panel}')?.innerText.includes('{who}')", timeout=60000)
    pg.locator("#review-reason textarea, #review-reason input").first.fill("reviewed in the browser test")
    pg.locator("#review-activate").click()
    pg.wait_for_function(f"document.querySelector('#review-activate-message')?.innerText.includes('Now serving {new}')",
                         timeout=60000)


def _wait_state(client, run_id: int, want: str, timeout: float = 180) -> dict:
    def state():
        st = client.predict(api_name="/training_status")
        assert st["run_id"] == run_id, st  # start_training made this run the current one
        if st["state"] == want:
            return st
        assert st["state"] == "running", st
        return None

    return wait_for(state, timeout, 1.0, f"training run #{run_id} reaching {want}")


@pytest.mark.browser
def test_browser_trains_activates_and_predict_uses_it(page):
    pg = page
    pg.get_by_role("tab", name="Train").click()
    # the timer fills the versions list: v1 was trained at start
    pg.wait_for_function("document.querySelector('#versions-table')?.innerText.includes('v1')", timeout=30000)
    # what scores texts, and why (the launched app is told BERTDEMO_SERVING=bf16: no int8 build)
    # (includes, not startswith: while an update is pending Gradio prefixes its timer, e.g. "0.2s")
    pg.wait_for_function("document.querySelector('#serving-path')?.innerText.includes("
                         "'Serving path: PyTorch bf16: BERTDEMO_SERVING=bf16')", timeout=30000)
    pg.locator("#train-maxsteps input").fill("3")
    pg.locator("#train-start").click()
    pg.wait_for_function("/Training run #\\d+ started/.test(document.querySelector('#train-message')?.innerText)",
                         timeout=30000)
    run = re.search(r"run #(\d+)", pg.locator("#train-message").inner_text()).group(1)
    done = f"run #{run} · succeeded"
    pg.wait_for_function(f"document.querySelector('#train-progress-text')?.innerText.startsWith('{done}')",
                         timeout=180000)
    assert "100%" in pg.locator("#train-progress-text").inner_text()
    assert pg.locator("#train-progress-bar").get_attribute("value") == "100.0"
    curves = pg.locator("#train-curves img, #train-curves svg").first
    curves.wait_for(state="visible", timeout=30000)
    pg.locator("#train-confusion img, #train-confusion svg").first.wait_for(state="visible", timeout=30000)
    # the report: monospace, the plots' full width, its header line aligned (starts with "class")
    report = pg.locator("#train-report")
    text = report.locator(".cm-content").inner_text()
    assert "macro avg" in text and text.startswith("class"), text
    font = pg.evaluate("getComputedStyle(document.querySelector('#train-report .cm-content')).fontFamily")
    assert "mono" in font.lower(), font
    assert report.bounding_box()["width"] >= 0.95 * pg.locator("#train-curves").bounding_box()["width"]
    headers = pg.locator("#versions-table thead").inner_text()
    assert "macro-F1 per dataset" in headers and "serving" in headers, headers
    msg = pg.locator("#train-progress-text").inner_text()
    new = re.search(r"Version (v\d+) saved", msg).group(1)
    assert new != "v1"  # v1 is the version trained at start
    pg.wait_for_function(f"document.querySelector('#versions-table')?.innerText.includes('{new}')", timeout=30000)
    _review_in_the_browser(pg, new)
    # activate the new version
    pg.locator("#version-choice input").click()
    pg.get_by_role("option", name=new, exact=True).click()
    pg.locator("#version-activate").click()
    pg.wait_for_function(f"document.querySelector('#activate-message')?.innerText.includes('Now serving {new}')",
                         timeout=60000)
    # Predict now uses it
    pg.get_by_role("tab", name="Predict").click()
    pg.locator("#predict-text textarea").fill("the flight was fine")
    pg.locator("#predict-button").click()
    pg.wait_for_function(f"document.querySelector('#predict-info')?.innerText.includes('Model version {new}')",
                         timeout=60000)


def test_http_api_trains_reports_status_and_rolls_back(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    msg = client.predict(1, 1e-4, 16, 32, 1, MODES[0], STARTS[0], 2, True, api_name="/start_training")
    run_id = int(re.match(r"Training run #(\d+) started", msg).group(1))
    st = _wait_state(client, run_id, "succeeded")
    assert st["step"] == st["total_steps"] == 2 and st["version"] and "macro avg" in st["report"]
    assert client.predict("v1", api_name="/activate_version").startswith("Now serving **v1**")  # roll back
    with pytest.raises(Exception, match="No model version named 'v99'"):
        client.predict("v99", api_name="/activate_version")
