"""The public HTTP API reads as documentation: every endpoint has a docstring, and every parameter a
name a gradio_client user can type as a keyword (`client.predict(text=..., api_name="/predict")`).
Built from the Blocks without launching a server; tests/api/test_security.py checks the roles."""

from __future__ import annotations

import re

import pytest

from bertdemo.ui.demo import build_demo

# words of two or three letters that are whole words, not abbreviations
SHORT_WORDS = {"id", "ids", "to", "of", "by", "as", "in", "on", "at", "per", "max", "min", "top", "new", "old", "run",
               "row", "key", "csv", "url"}
NAME = re.compile(r"[a-z]+(_[a-z]+)*")


def readable(name: str) -> bool:
    """snake_case words, none of them an abbreviation like ep, bs, ml, tgt, lay, hd."""
    return bool(NAME.fullmatch(name)) and all(len(w) >= 4 or w in SHORT_WORDS for w in name.split("_"))


@pytest.mark.parametrize("name, ok", [("text", True), ("learning_rate", True), ("max_steps", True),
                                      ("example_id", True), ("ep", False), ("tgt", False), ("t", False),
                                      ("lay", False), ("merged", True), ("serve_when_trained", True),
                                      ("parameter_4", False), ("Epochs", False)])
def test_the_rule_itself(name, ok):
    assert readable(name) is ok


@pytest.fixture(scope="module")
def api_info(tmp_path_factory, tiny_csv):
    from bertdemo.config import Settings
    from bertdemo.services import Services

    services = Services.create(Settings(serving="bf16", data_dir=tmp_path_factory.mktemp("api") / "runtime", dataset_path=tiny_csv, datasets=("airline",),
                                        bootstrap=False))
    return build_demo(services).get_api_info()["named_endpoints"]


def test_every_public_endpoint_has_readable_parameters_and_a_description(api_info):
    assert api_info, "no public endpoint"
    for endpoint, info in api_info.items():
        names = [p["parameter_name"] for p in info["parameters"]]
        bad = [n for n in names if not readable(n)]
        assert not bad, f"{endpoint} takes {bad}: name them as a client would type them"
        assert info["description"].strip(), f"{endpoint} has no docstring for the API page"


def test_internal_endpoints_are_not_public(api_info):
    assert "/default_queue" not in api_info  # the page's first load, not an API
    assert set(api_info) == {"/predict", "/predict_batch", "/tokenize", "/explain", "/predict_csv", "/compare_word", "/next_item",
                             "/save_label", "/undo", "/import_csv", "/export_csv", "/agreement", "/start_training",
                             "/training_status", "/activate_version", "/skip_item", "/set_annotations_per_item",
                             "/similar_examples", "/map_selection", "/add_comment", "/label_examples",
                             "/undo_bulk_label", "/set_retrain_every", "/set_guidelines", "/adjudicate",
                             "/next_disagreement", "/review_version", "/labelling_value", "/stopping_signals",
                             "/learning_curve", "/annotation_time", "/suggestion_audit", "/export_labelling_value",
                             "/set_audit_share"}
    assert [p["parameter_name"] for p in api_info["/start_training"]["parameters"]] == [
        "epochs", "learning_rate", "batch_size", "max_length", "seed", "mode", "start_from", "max_steps",
        "serve_when_trained"]
    assert [p["parameter_name"] for p in api_info["/review_version"]["parameters"]] == ["baseline", "candidate", "kind"]
    assert [p["parameter_name"] for p in api_info["/explain"]["parameters"]] == [
        "text", "target_class", "merge_wordpieces"]


def test_the_monitoring_dashboard_is_off_and_the_cache_is_cleaned(services):
    from bertdemo.ui.demo import build_demo, launch_options

    assert launch_options(services)["enable_monitoring"] is False  # /monitoring would print the server's key
    assert build_demo(services).delete_cache == (3600, 3600)
