"""`bertdemo COMMAND` / `python -m bertdemo COMMAND`: one entry point dispatching to cli/ modules."""

from __future__ import annotations

import subprocess
import sys

from bertdemo.cli import main as cli_main
from bertdemo.config import REPO_ROOT


def test_usage_lists_every_command(capsys):
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("serve", "train", "users", "migrate"))
    assert cli_main.main([]) == 2  # no command: usage, and a non-zero exit


def test_unknown_command_is_refused(capsys):
    assert cli_main.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_commands_dispatch_with_their_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BERTDEMO_DATA_DIR", str(tmp_path))
    assert cli_main.main(["users", "list"]) == 0  # an empty, freshly migrated database
    assert capsys.readouterr().out == ""
    assert cli_main.main(["migrate", "current"]) == 0


def test_python_dash_m_bertdemo_runs_the_same_entry_point(tmp_path):
    env = {"BERTDEMO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "bertdemo", "train", "--help"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: bertdemo train" in out.stdout
    assert "(a number from 0.01 to 100)" in out.stdout  # the bounds come from TrainConfig
