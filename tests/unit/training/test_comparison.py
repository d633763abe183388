"""training/comparison.py and `bertdemo review`: two real versions (the tiny v1 and v2 of the
`two_versions` data dir) compared on v2's saved validation split, the gate's verdict, and a
deliberately wrong candidate refused with the failing check named."""

from __future__ import annotations

import numpy as np
import pytest

from bertdemo.cli import review as review_cli
from bertdemo.config import Settings
from bertdemo.errors import NotReady
from bertdemo.services import Services
from bertdemo.training.comparison import compare, review_set
from tests.support import LABELS


@pytest.fixture(scope="module")
def two(two_versions, tiny_csv):
    services = Services.create(Settings(serving="bf16", data_dir=two_versions, dataset_path=tiny_csv,
                                        datasets=("airline",)))
    by_name = {v.name: v for v in services.registry.versions()}
    yield services, by_name
    services.engine.dispose()


def test_the_review_set_is_the_candidates_validation_split_joined_with_the_database(two):
    services, by_name = two
    rs = review_set(services.engine, services.registry.folder(by_name["v2"]), "v2", LABELS)
    assert len(rs.texts) == len(rs.raw_texts) == len(rs.y) == len(rs.ids) == len(rs.datasets) > 0
    assert None not in rs.ids and set(rs.datasets) == {"airline"} and set(rs.sources) == {"crowd"}
    assert rs.on == "the validation split of v2"
    with pytest.raises(NotReady, match="saved without its validation split"):
        review_set(services.engine, services.settings.data_dir, "v9", LABELS)


def test_a_version_against_itself_changes_nothing_and_passes(two):
    services, by_name = two
    rs = review_set(services.engine, services.registry.folder(by_name["v2"]), "v2", LABELS)
    clf = services.registry.load(by_name["v1"])
    c = compare(("v1", clf.predict_proba), ("v1", clf.predict_proba), rs, LABELS, n_boot=200)
    whole = c.review.slice("all").macro_f1
    assert whole.diff.value == 0.0 and whole.diff.low == 0.0 and whole.diff.high == 0.0
    assert c.flips.total == 0 and c.review.worse_slices() == []
    assert c.gate.passed and c.gate.failed == () and len(c.behaviour) == 18
    assert "gate passed" in c.report()


def test_a_candidate_that_is_always_wrong_is_refused_naming_the_dataset(two):
    services, by_name = two
    rs = review_set(services.engine, services.registry.folder(by_name["v2"]), "v2", LABELS)
    clf = services.registry.load(by_name["v1"])
    wrong_of = {t: (int(y) + 1) % 3 for t, y in zip(rs.texts, rs.y)}

    def always_wrong(texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), 3), 0.05)
        out[np.arange(len(texts)), [wrong_of.get(t, 0) for t in texts]] = 0.9
        return out

    c = compare(("v1", clf.predict_proba), ("bad", always_wrong), rs, LABELS, n_boot=500)
    v1_f1 = c.review.slice("airline").macro_f1.a.value
    assert v1_f1 > 0 and c.review.slice("airline").macro_f1.b.value == 0.0
    assert not c.gate.passed
    assert c.gate.failed[0].startswith(f"airline macro-F1 0.000 vs {v1_f1:.3f}")
    assert c.flips.kinds.get("fixed", 0) == 0  # nothing the baseline got wrong became right


def test_the_command_line_exits_with_the_gates_verdict(two, monkeypatch, capsys):
    services, _ = two
    monkeypatch.setenv("BERTDEMO_DATA_DIR", str(services.settings.data_dir))
    monkeypatch.setenv("BERTDEMO_SERVING", "bf16")
    assert review_cli.main(["v1", "v1", "--rounds", "200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("v1 (B) against v1 (A) on the validation split of v1:") and "gate passed" in out
    assert review_cli.main(["v1", "v7"]) == 2
    assert "no version named v7; there are v1, v2" in capsys.readouterr().err
    assert review_cli.main(["v1", "v2", "--rounds", "5"]) == 2
