"""Retrain every N labels (an admin setting, off by default): after N label changes by people since
the last automatic start, a training run starts in the background, as Label Sleuth and Label
Studio's ML backend do; the run records why it started and the Train tab shows it. No Gradio here.

The check runs after each save, bulk label and adjudication (after_save, the hook Labelling,
BulkLabels and Adjudication are given: one count over the new history rows); a run already in
progress postpones it to the next save after it ends."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from bertdemo import auth
from bertdemo.db import examples, leases
from bertdemo.errors import BadInput, Busy
from bertdemo.services import Services
from bertdemo.training.config import TrainConfig
from bertdemo.validate import number

log = logging.getLogger(__name__)
EVERY_KEY = "retrain_every"
MARK_KEY = "retrain_mark"  # the newest history row when the count last started from zero
MIN_EVERY, MAX_EVERY = 10, 1_000_000
USER = "auto-retrain"


class AutoRetrain:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine

    def every(self) -> int:
        """N (0 = off)."""
        with Session(self.engine) as s:
            return int(leases.get_setting(s, EVERY_KEY, 0))  # type: ignore[arg-type]

    def set_every(self, value: object, username: str | None) -> int:
        """Set N: 0 turns it off, else MIN_EVERY to MAX_EVERY (admins only). Counting starts now."""
        who = auth.require_role(self.engine, username, "admin")
        n = int(number(value, "Retrain every N labels", 0, MAX_EVERY, whole=True))
        if 0 < n < MIN_EVERY:  # a run every few labels would train all day
            raise BadInput(f"Retrain every N labels must be 0 (off) or from {MIN_EVERY} to {MAX_EVERY:,}, got {n}.")
        with Session(self.engine) as s, s.begin():
            leases.set_setting(s, EVERY_KEY, n, who)
            leases.set_setting(s, MARK_KEY, examples.newest_event_id(s), who)
        return n

    def pending(self) -> tuple[int, int]:
        """(distinct examples people relabelled since the count started, N)."""
        with Session(self.engine) as s:
            every = int(leases.get_setting(s, EVERY_KEY, 0))  # type: ignore[arg-type]
            if not every:
                return 0, 0
            return examples.examples_changed_since(s, int(leases.get_setting(s, MARK_KEY, 0))), every  # type: ignore[arg-type]

    def after_labels(self) -> int | None:
        """Start a run when people changed the labels of N distinct examples since the count started
        (flipping one example back and forth counts once); the run's id or None."""
        done, every = self.pending()
        if not every or done < every or self.services.jobs.status().running:
            return None
        with Session(self.engine) as s, s.begin():
            leases.set_setting(s, MARK_KEY, examples.newest_event_id(s), USER)
            start_from = "active" if self.services.registry.active_version() else "base"
        reason = (f"started automatically after {done:,} examples were relabelled (the admin setting: retrain "
                  f"every {every:,} labels)")
        config = TrainConfig(epochs=1 if start_from == "active" else self.services.settings.initial_epochs,
                             init_from=start_from)
        try:
            run_id = self.services.jobs.start(config, user=USER, reason=reason)
        except Busy:  # someone started one this instant: the next save checks again
            return None
        log.info("run %d %s", run_id, reason)
        return run_id

    def after_save(self) -> None:
        """The hook every label change calls (one save, a bulk label, an adjudication): after_labels,
        with a failure to start logged, not raised, since the labels are saved and a run is a bonus."""
        try:
            self.after_labels()
        except Exception:  # the label is saved; an automatic run is a bonus
            log.exception("could not start an automatic training run")
