"""The Team tab's "Is more labelling worth it?" panel in Debian chromium (issue 25), after three
versions: two more short runs (saved, not served) besides the first start's v1, each with its
predictions on the stopping pool. The admin sees the kappa per version, the three plots and
everyone's rows, and sets the audit's share; an annotator sees the panel with her own rows only and
not the share setting."""

from __future__ import annotations

import re

import pytest

from tests.support import TINY_TRAIN, seed_data_dir, signed_in_page

ANN, BOSS = ("ann", "ann-password"), ("boss", "boss-password")


@pytest.fixture(scope="module")
def three_versions_app(tmp_path_factory, tiny_csv, app_launcher, copy_first_start):
    from bertdemo.config import Settings
    from bertdemo.services import Services
    from bertdemo.training.config import TrainConfig

    data_dir = copy_first_start(tmp_path_factory.mktemp("value-browser") / "runtime")
    seed_data_dir(data_dir, [(*ANN, "annotator"), (*BOSS, "admin")], ["Lost my bag in Denver again"])
    services = Services.create(Settings(serving="bf16", data_dir=data_dir, dataset_path=tiny_csv,
                                        datasets=("airline",), quick_first=False))
    for seed in (1, 2):  # v2, v3: a few steps each, saved without serving (no re-scoring)
        config = TrainConfig(**(TINY_TRAIN.to_dict() | {"max_steps": 3, "seed": seed}))
        status = services.jobs.run_sync(config, "boss", activate=False)
        assert status.state == "succeeded", status
    services.engine.dispose()
    from gradio_client import Client

    def ready(url: str) -> bool:
        return bool(Client(url, auth=BOSS, verbose=False).predict("hello", api_name="/predict")["label"])

    with app_launcher(data_dir, tiny_csv, ready) as url:
        yield url


def test_the_panel_after_three_versions(browser, three_versions_app):
    from playwright.sync_api import expect

    ctx, page = signed_in_page(browser, three_versions_app, BOSS)
    page.get_by_role("tab", name="Annotate").click()
    page.get_by_role("tab", name="Team", exact=True).click()
    page.locator("#value-refresh").click()
    summary = page.locator("#value-summary")
    expect(summary).to_contain_text("Stopping signals", timeout=60_000)
    expect(summary).to_contain_text("everyone's rows")
    kappas = page.locator("#value-kappas")
    for name in ("v2", "v3"):  # each compared with the version before it
        expect(kappas).to_contain_text(name)
    for plot in ("#value-kappa-plot", "#value-curve-plot", "#value-audit-plot"):
        expect(page.locator(f"{plot} img")).to_be_visible(timeout=30_000)
    page.locator("#value-share input").fill("0.25")
    page.locator("#value-share-set").click()
    expect(page.locator("#value-share-msg")).to_contain_text("25%", timeout=30_000)
    page.screenshot(path=str(browser_shot_dir() / "team_value_admin.png"), full_page=True)
    ctx.close()

    ctx, page = signed_in_page(browser, three_versions_app, ANN)
    page.get_by_role("tab", name="Annotate").click()
    page.get_by_role("tab", name="Team", exact=True).click()
    page.locator("#value-refresh").click()
    expect(page.locator("#value-summary")).to_contain_text(re.compile(r"your own rows \(ann\)"), timeout=60_000)
    expect(page.locator("#value-share")).to_be_hidden()  # an admin's setting
    ctx.close()


def browser_shot_dir():
    import os
    from pathlib import Path

    d = Path(os.environ.get("BERTDEMO_SHOTS", "/tmp/bertdemo-shots"))
    d.mkdir(parents=True, exist_ok=True)
    return d
