"""The data directory as an operator handles it, on the launched app (`python app.py`): copied to a
new path with the old one deleted, the app serves at once; with the active version's weights
corrupted, it serves the previous version and the page says why (never "Internal error")."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from gradio_client import Client

from tests.support import launched_app

TEXT = "what a lovely crew"


def expected_of(services) -> dict[str, float]:
    """v1's probabilities for TEXT, computed in the test process on the same weights and precision
    (bf16) the launched app serves: the app must answer exactly this version's prediction."""
    (pred,) = services.registry.active().predict([TEXT])
    return pred.probs


def assert_serves_v1(out: dict, expected: dict[str, float]) -> None:
    assert out["label"] == max(expected, key=expected.get), (out, expected)  # the same top class
    got = {c["label"]: c["confidence"] for c in out["confidences"]}
    assert got.keys() == expected.keys() and all(abs(got[k] - expected[k]) < 0.02 for k in got), (got, expected)


def _serves(url: str) -> bool:
    Client(url, verbose=False).predict(TEXT, api_name="/predict")
    return True


def test_a_moved_data_directory_serves_at_once(tmp_path, trained_services, tiny_csv):
    old = tmp_path / "old" / "runtime"
    shutil.copytree(trained_services.settings.data_dir, old)  # the data directory as it was used
    new = tmp_path / "new disk" / "bertdemo-data"
    shutil.copytree(old, new)  # a restored backup, a volume mounted elsewhere
    shutil.rmtree(old.parent)
    with launched_app(new, tiny_csv, _serves, timeout=180) as url:
        out = Client(url, verbose=False).predict(TEXT, api_name="/predict")
    assert_serves_v1(out, expected_of(trained_services))
    log = (new.parent / "app.log").read_text()
    assert "cannot be loaded" not in log and "Internal error" not in log


def test_corrupted_weights_serve_the_previous_version_with_a_message(tmp_path, two_versions, tiny_csv, browser,
                                                                    trained_services):
    data = tmp_path / "runtime"
    shutil.copytree(two_versions, data)
    weights = data / "models" / "v2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # a copy cut short
    with launched_app(data, tiny_csv, _serves, timeout=180) as url:
        out = Client(url, verbose=False).predict(TEXT, api_name="/predict")
        page = browser.new_page()
        try:
            page.goto(url)
            status = page.locator("#status-line")
            status.get_by_text("Serving model v1").wait_for(timeout=30_000)
            text = status.inner_text()
        finally:
            page.close()
    assert_serves_v1(out, expected_of(trained_services))  # two_versions' v1 is trained_services' v1, copied
    assert "Warning: Model version v2 cannot be loaded from" in text and "Serving v1 instead" in text
    log = (data.parent / "app.log").read_text()
    assert "Model version v2 cannot be loaded" in log
    con = sqlite3.connect(data / "bertdemo.sqlite3")
    try:
        active = con.execute("SELECT name FROM model_versions WHERE is_active").fetchall()
        user, reason = con.execute("SELECT user, reason FROM activations ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        con.close()
    assert active == [("v1",)] and user == "system" and reason.startswith("at start: Model version v2")


@pytest.mark.parametrize("broken", ["folder", "config"])
def test_no_servable_version_is_said_on_every_call(tmp_path, two_versions, tiny_csv, broken):
    data = tmp_path / "runtime"
    shutil.copytree(two_versions, data)
    for name in ("v1", "v2"):
        if broken == "folder":
            shutil.rmtree(data / "models" / name)
        else:
            (data / "models" / name / "config.json").unlink()

    def refuses(url: str) -> bool:
        try:
            Client(url, verbose=False).predict("hello", api_name="/predict")
        except Exception as exc:  # noqa: BLE001 - gradio_client's AppError carries the message
            assert "No model version can be served" in str(exc), str(exc)
            assert "Internal error" not in str(exc)
            return True
        raise AssertionError("a prediction was served without any loadable version")

    with launched_app(data, tiny_csv, refuses, timeout=180):
        pass
