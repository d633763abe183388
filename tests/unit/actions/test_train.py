"""TrainingActions' form checks (the rest of the Train tab's actions is tested in
tests/browser/test_train.py): every value an API caller can send is refused with a message naming
the field and its range before anything runs or is written."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bertdemo.actions.train import MODES, STARTS, TrainingActions
from bertdemo.db.models import TrainingRun
from bertdemo.errors import BadInput

GOOD = dict(epochs=1, learning_rate=1e-4, batch_size=16, max_length=32, seed=3, mode=MODES[0], start_from=STARTS[0],
            max_steps=2)


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 1e30, "Epochs (epochs) must be a number from 0.01 to 100, got 1e+30."),  # used to start a run
    ("epochs", float("inf"), "Epochs (epochs) must be a number from 0.01 to 100"),
    ("epochs", None, "got None"),
    ("epochs", "abc", "got 'abc'"),
    ("learning_rate", float("nan"), "Learning rate (learning_rate) must be a number above 0 and up to 0.5"),
    ("learning_rate", 0, "Learning rate (learning_rate) must be a number above 0 and up to 0.5"),
    ("batch_size", 16.5, "Batch size (batch_size) must be a whole number from 1 to 1024, got 16.5."),
    ("batch_size", 0, "Batch size (batch_size) must be a whole number from 1 to 1024"),
    ("max_length", 4096, "Max length (max_length) must be a whole number from 8 to 512"),
    ("seed", 1e30, "Seed (seed) must be a whole number from 0 to 4294967295"),  # used to start a run that failed
    ("seed", -1, "Seed (seed) must be a whole number from 0 to 4294967295"),
    ("max_steps", -3, "Max steps (0 = no limit) must be a whole number from 0 to 10000000"),
    ("max_steps", True, "Max steps (0 = no limit) must be"),
    ("mode", "lora", "What to train must be one of"),
    ("start_from", None, "Start from must be one of"),
])
def test_bad_form_values_are_refused_with_the_field_and_range(field, value, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        TrainingActions.config_from_form(**(GOOD | {field: value}))


def test_good_values_in_any_numeric_form():
    c = TrainingActions.config_from_form(**(GOOD | {"epochs": "2", "batch_size": 16.0, "seed": "7", "max_steps": None}))
    assert (c.epochs, c.batch_size, c.seed, c.max_steps) == (2.0, 16, 7, None)


def test_a_refused_start_writes_no_run(services):
    services.ensure_dataset()
    actions = TrainingActions(services)
    for bad in (GOOD | {"epochs": 1e30}, GOOD | {"seed": 2**40}):
        with pytest.raises(BadInput):
            actions.start(TrainingActions.config_from_form(**bad), None, serve=False)
    with pytest.raises(BadInput, match="serve when trained must be true or false, got 'false'"):
        actions.start(TrainingActions.config_from_form(**GOOD), None, serve="false")
    with Session(services.engine) as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0
    assert not services.jobs.status().running
