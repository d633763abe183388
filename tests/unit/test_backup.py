"""bertdemo.backup and `bertdemo backup`: a consistent copy of a live data directory (SQLite online
backup + the registered model versions + a manifest of checksums), verify without restoring, and
restore into a data directory that then serves at once."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo import backup
from bertdemo.actions.annotate import AnnotateAdapters
from bertdemo.cli import backup as backup_cli
from bertdemo.config import Settings
from bertdemo.db.migrate import head_revision
from bertdemo.db.models import Example
from bertdemo.errors import BadInput
from bertdemo.services import Services
from bertdemo.validate import short


@pytest.fixture
def live(tmp_path, trained_services) -> Services:
    """A copy of the trained data directory (v1, the tiny sample), with its own Services."""
    data = tmp_path / "live" / "runtime"
    shutil.copytree(trained_services.settings.data_dir, data)
    services = Services.create(trained_services.settings.with_(data_dir=data))
    yield services
    services.engine.dispose()


def test_create_verify_restore_round_trip_serves_at_once(live, tmp_path):
    report = backup.create(live.settings, tmp_path / "bk")
    assert report.database == "sqlite" and report.versions == ("v1",) and not report.warnings
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert manifest["database"]["revision"] == head_revision() and "models/v1/model.safetensors" in manifest["files"]
    check = backup.verify(tmp_path / "bk")
    assert check.ok and check.checked == report.files

    target = Settings(serving="bf16", data_dir=tmp_path / "elsewhere" / "runtime", dataset_path=live.settings.dataset_path,
                      datasets=live.settings.datasets)
    summary = backup.restore(tmp_path / "bk", target)
    assert "Restored the database and 1 model version(s) (v1)" in summary
    restored = Services.create(target)
    restored.start()  # the start-up check loads the active version from its relative folder
    assert restored.registry.problem is None
    assert restored.registry.active().predict(["what a lovely crew"])[0].label in live.settings.labels
    with Session(restored.engine) as s, Session(live.engine) as t:
        assert s.scalar(select(func.count()).select_from(Example)) == t.scalar(select(func.count()).select_from(Example))
    restored.engine.dispose()


def test_verify_finds_every_kind_of_damage(live, tmp_path):
    backup.create(live.settings, tmp_path / "bk")
    weights = tmp_path / "bk" / "models" / "v1" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit, same size
    weights.write_bytes(bytes(data))
    (tmp_path / "bk" / "models" / "v1" / "config.json").unlink()
    (tmp_path / "bk" / "stray.txt").write_text("x")
    problems = backup.verify(tmp_path / "bk").problems
    assert any("model.safetensors does not match its checksum" in p for p in problems)
    assert any("models/v1/config.json is missing" in p for p in problems)
    assert any("stray.txt is not in the manifest" in p for p in problems)
    target = Settings(serving="bf16", data_dir=tmp_path / "t" / "runtime")
    with pytest.raises(BadInput, match="does not verify, nothing was restored"):
        backup.restore(tmp_path / "bk", target)
    assert not target.data_dir.exists()
    assert backup.verify(tmp_path).problems == [f"{tmp_path} has no manifest.json: it is not a bertdemo backup."]


def test_a_backup_taken_while_labels_are_saved_holds_every_acknowledged_label(live, tmp_path):
    """People keep labelling while the backup runs: every save acknowledged before the backup
    started is in it (SQLite's online backup is one consistent snapshot), none is half-written."""
    acts = AnnotateAdapters.create(live).labelling
    ids = acts.queue_ids("search", "a")[:400]
    acked: list[tuple[int, str, float]] = []  # (example id, label, when acknowledged)
    stop = threading.Event()
    labels = list(live.settings.labels)

    def annotator():
        i = 0
        while not stop.is_set():
            ex = ids[i % len(ids)]
            item = acts.item(ex)
            label = labels[(labels.index(item.label) + 1) % 3] if item.label else labels[0]
            acts.save_label(ex, label, item.version, None)
            acked.append((ex, label, time.monotonic()))
            i += 1

    worker = threading.Thread(target=annotator)
    worker.start()
    try:
        while len(acked) < 30:
            time.sleep(0.01)
        started = time.monotonic()
        backup.create(live.settings, tmp_path / "bk")
    finally:
        stop.set()
        worker.join(30)
    before = {}
    for ex, label, at in acked:
        if at < started:
            before[ex] = label  # the newest acknowledged label of each example before the backup
    assert len(before) >= 10 and len(acked) > len(before)  # saves went on during the backup
    target = Settings(serving="bf16", data_dir=tmp_path / "restored" / "runtime", dataset_path=live.settings.dataset_path,
                      datasets=live.settings.datasets)
    backup.restore(tmp_path / "bk", target)
    restored = Services.create(target)
    with Session(restored.engine) as s:
        got = dict(s.execute(select(Example.id, Example.label).where(Example.id.in_(list(before)))).all())
    restored.engine.dispose()
    # each example holds its label as acknowledged before the backup, or a later acknowledged one
    later = {}
    for ex, label, _at in acked:
        later.setdefault(ex, set()).add(label)
    assert all(got[ex] == label or got[ex] in later[ex] for ex, label in before.items())
    assert sum(got[ex] == label for ex, label in before.items()) >= len(before) // 2


def test_refusals_change_nothing(live, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BadInput, match="is not an empty folder"):
        backup.create(live.settings, tmp_path / "full")
    with pytest.raises(BadInput, match="inside the data directory"):
        backup.create(live.settings, live.settings.data_dir / "bk")
    backup.create(live.settings, tmp_path / "bk")
    with pytest.raises(BadInput, match="already holds a database or model versions; stop the app and pass --force"):
        backup.restore(tmp_path / "bk", live.settings)
    summary = backup.restore(tmp_path / "bk", live.settings, force=True)
    assert "The previous data directory is at" in summary
    assert len(list(live.settings.data_dir.parent.glob("runtime.before-restore-*"))) == 1


def test_command_line(live, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BERTDEMO_DATA_DIR", str(live.settings.data_dir))
    assert backup_cli.main(["create", str(tmp_path / "bk")]) == 0
    assert "Backup at" in capsys.readouterr().out
    assert backup_cli.main(["verify", str(tmp_path / "bk")]) == 0
    (tmp_path / "bk" / "bertdemo.sqlite3").write_bytes(b"not a database")
    assert backup_cli.main(["verify", str(tmp_path / "bk")]) == 1
    assert "bertdemo.sqlite3 has" in capsys.readouterr().err
    assert backup_cli.main(["restore", str(tmp_path / "bk")]) == 2


def test_force_restore_keeps_a_database_that_lives_outside_the_data_directory(live, tmp_path):
    """BERTDEMO_DB_URL=sqlite:////elsewhere/x.sqlite3: --force moves that database (and its -wal and
    -shm files) aside too, instead of overwriting it in place beside stale WAL files."""
    backup.create(live.settings, tmp_path / "bk")
    elsewhere = tmp_path / "elsewhere" / "db.sqlite3"
    elsewhere.parent.mkdir()
    shutil.copy2(live.settings.data_dir / "bertdemo.sqlite3", elsewhere)
    Path(f"{elsewhere}-wal").write_bytes(b"stale")
    target = Settings(serving="bf16", data_dir=tmp_path / "t" / "runtime", db_url=f"sqlite:///{elsewhere}")
    with pytest.raises(BadInput, match="pass --force"):
        backup.restore(tmp_path / "bk", target)
    summary = backup.restore(tmp_path / "bk", target, force=True)
    moved = Path(re.search(r"The previous data directory is at (\S+)\.$", summary).group(1))
    assert sorted(p.name for p in moved.iterdir()) == ["db.sqlite3", "db.sqlite3-wal"]
    assert not Path(f"{elsewhere}-wal").exists() and backup.verify(tmp_path / "bk").ok
    restored = Services.create(target)
    assert restored.registry.versions()[0].name == "v1"
    restored.engine.dispose()


def _craft(bk: Path, change) -> None:  # noqa: ANN001
    """Edit a backup's manifest as an attacker would (the checksums stay right for what they name)."""
    manifest = json.loads((bk / "manifest.json").read_text())
    change(manifest)
    (bk / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "version name"])
def test_a_manifest_path_outside_the_backup_is_refused_and_never_read(live, tmp_path, kind):
    bk = tmp_path / "bk"
    backup.create(live.settings, bk)
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    meta = {"bytes": secret.stat().st_size, "sha256": backup.sha256(secret)}  # would verify if it were read
    if kind == "dotdot":
        _craft(bk, lambda m: m["files"].update({"../secret.txt": meta}))
        expected = "the manifest names '../secret.txt', a path outside the backup folder"
    elif kind == "absolute":
        _craft(bk, lambda m: m["files"].update({str(secret): meta}))
        expected = f"the manifest names {short(str(secret))}, a path outside the backup folder"
    else:
        _craft(bk, lambda m: m["versions"].append({"name": "../..", "stored_path": "x", "active": False,
                                                   "in_backup": True}))
        expected = "the manifest names a version '../..': a version name is one folder name (v1, v2, ...)"
    check = backup.verify(bk)
    assert check.problems == [expected] and check.checked == 0  # nothing was read, so nothing about the file leaks
    target = Settings(serving="bf16", data_dir=tmp_path / "t" / "runtime")
    with pytest.raises(BadInput, match="does not verify, nothing was restored"):
        backup.restore(bk, target)
    assert not target.data_dir.exists()


def test_a_symbolic_link_in_a_backup_is_refused_and_never_copied(live, tmp_path):
    bk = tmp_path / "bk"
    backup.create(live.settings, bk)
    outside = tmp_path / "hostname"
    outside.write_text("host")
    link = bk / "models" / "v1" / "tokenizer_extra.txt"
    link.symlink_to(outside)
    # the manifest lists it with the target's checksum, as a crafted backup would
    _craft(bk, lambda m: m["files"].update({"models/v1/tokenizer_extra.txt": {
        "bytes": outside.stat().st_size, "sha256": backup.sha256(outside)}}))
    assert backup.verify(bk).problems == [
        "the manifest names 'models/v1/tokenizer_extra.txt', a path outside the backup folder",  # where it leads
        "models/v1/tokenizer_extra.txt is a symbolic link; a backup holds plain files only"]
    target = Settings(serving="bf16", data_dir=tmp_path / "t" / "runtime")
    with pytest.raises(BadInput, match="is a symbolic link"):
        backup.restore(bk, target)
    assert not (target.data_dir / "models" / "v1" / "tokenizer_extra.txt").exists()
