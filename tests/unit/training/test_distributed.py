"""Data-parallel training under `accelerate launch`: the CLI on two CPU processes (gloo), a tiny
configuration, a fresh data directory. Both processes train, the main one alone registers the
version. Skipped where `accelerate` (no dependency of the app) is not installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo.config import REPO_ROOT, Settings
from bertdemo.db import runs
from bertdemo.db.models import TrainingRun
from bertdemo.services import Services
from tests.support import free_port

pytest.importorskip("accelerate")


def test_two_processes_train_one_version(tmp_path, tiny_csv):
    env = os.environ | {"BERTDEMO_DATA_DIR": str(tmp_path / "rt"), "BERTDEMO_DATASET": str(tiny_csv), "BERTDEMO_DATASETS": "airline",
                        "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("BERTDEMO_DEVICE", None)
    # `--multi_gpu` is accelerate's torchrun launcher; without CUDA its processes pair up over gloo on
    # the CPU (`--cpu --num_processes 2` alone would start one process: multi-CPU there means mpirun)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()),
           "-m", "bertdemo.cli.train", "--max-steps", "4", "--max-length", "32", "--batch-size", "8", "--user", "ddp"]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # both processes trained their own share of the batches, in step with each other
    assert "data-parallel over 2 processes (world size 2)" in log, log[-4000:]
    per_process = re.search(r"over 2 processes: 4 steps each, training examples per process \[(\d+), (\d+)\]", log)
    assert per_process and all(int(n) > 0 for n in per_process.groups()), log[-4000:]
    assert "process 1 of 2 (world size 2) finished 4 steps" in log

    # exactly one run and one version, written by the main process alone
    services = Services.create(Settings.from_env(env))
    [v] = services.registry.versions()
    assert v.name == "v1" and v.created_by == "ddp" and v.is_active
    assert v.metrics["processes"] == 2 and v.train_config["max_steps"] == 4
    assert sorted(p.name for p in services.settings.models_dir.iterdir()) == ["v1"]
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 1
        run = runs.latest_run(s)
        assert run.status == "succeeded" and run.total_steps == 4 and [h["step"] for h in run.history] == [1, 2, 3, 4]
