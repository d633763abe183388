"""A fresh queue after every few labels: the quick model (training/quick.py, a logistic regression on
the serving version's stored sentence embeddings) is refitted in a background thread after every
N new labels (Settings.quick_refit_every, BERTDEMO_QUICK_REFIT_EVERY, default 20; 0 = off), and
until the next version serves its probabilities rank the model queues (actions/ranked.py) and give
the suggestion shown. A fit is kept with the version it was fitted on, so once another version
serves it is never used again; the count of new labels starts over then. No Gradio here."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from bertdemo.db import examples, versions
from bertdemo.errors import NotReady, UserError
from bertdemo.model import vectors
from bertdemo.services import Services
from bertdemo.training.quick import QuickFit, fit_quick
from bertdemo.training.registry import VersionInfo

log = logging.getLogger(__name__)


class QuickModel:
    """The quick model of this app process: its current fit, when to refit, what the queue says."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.engine = services.engine
        self.labels = tuple(services.settings.labels)
        self.every = services.settings.quick_refit_every
        self._fit: QuickFit | None = None
        self._mark: tuple[int, int] | None = None  # (version id, history row after which labels count)
        self._serial = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error = ""  # why the last refit did not happen (too few labels, no embeddings yet)
        self._paths: dict[int, Path] = {}  # version id -> its embeddings file

    # ---------------------------------------------------------------- reading
    def current(self, version_id: int | None) -> QuickFit | None:
        """The fit on `version_id`'s embeddings, or None (no fit yet, or it is another version's, or
        a re-scoring wrote the version's embeddings again since: the examples imported meanwhile have
        no row in it, so the complete stored scores rank until the refit this starts is done)."""
        fit = self._fit
        if fit is None or version_id is None or fit.version_id != version_id:
            return None
        if fit.embeddings_stamp and fit.embeddings_stamp != self._stamp(version_id):
            with self._lock:
                if self._fit is fit:
                    self._fit = None
            self.refit_in_background()
            return None
        return fit

    def _stamp(self, version_id: int) -> int:
        """The mtime of `version_id`'s embeddings file now (0 when there is none)."""
        path = self._paths.get(version_id)
        if path is None:
            path = self._paths[version_id] = (self.services.registry.folder(self.services.registry.get(version_id))
                                              / vectors.VECTORS_FILE)
        try:
            return path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def suggestion(self, example_id: int, version_id: int | None) -> np.ndarray | None:
        """The quick model's probabilities for one example (None: no current fit, or no embedding)."""
        fit = self.current(version_id)
        return None if fit is None else fit.probs_of(example_id)

    def refitting(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def pending(self, version_id: int) -> int:
        """Examples people relabelled since the current fit (or since `version_id` began serving)."""
        with Session(self.engine) as s:
            return examples.examples_changed_since(s, self._mark_of(s, version_id))

    def ranked_by(self, version: VersionInfo) -> str:
        """The "ranked by" line of a model queue: which model ranked it, when, on how many labels."""
        fit = self.current(version.id)
        now = " · refitting now" if self.refitting() else ""
        if fit is not None:
            return (f"ranked by the quick model refit at {fit.fitted_at:%H:%M} UTC on {fit.labels_used:,} labels "
                    f"(logistic regression on {fit.version_name}'s sentence embeddings){now}")
        text = f"ranked by {version.name}'s stored scores"
        if self.every:
            left = max(self.every - self.pending(version.id), 1)
            text += f" · the quick model re-ranks after {left:,} more label{'s' if left != 1 else ''}{now}"
        return text

    # ---------------------------------------------------------------- refitting
    def _mark_of(self, s: Session, version_id: int) -> int:
        """The history row after which labels count towards the next refit of `version_id`."""
        with self._lock:
            if self._mark is None or self._mark[0] != version_id:  # a version not fitted on yet: since it serves
                self._mark = (version_id, versions.labels_mark(s, version_id))
            return self._mark[1]

    def on_version(self, info: VersionInfo) -> None:
        """A version serves with its scores (VersionWatch: at start, after an activation): refit at
        once when people gave N labels since it began serving (an app restarted between two versions)."""
        with Session(self.engine) as s:
            self._mark_of(s, info.id)
        self.after_save()

    def after_labels(self) -> bool:
        """The hook of every label change: refit in the background once N examples were relabelled
        since the last fit. True when a refit started."""
        if not self.every or self.refitting():
            return False
        info = self.services.registry.active_version()
        if info is None or self.pending(info.id) < self.every:
            return False
        return self.refit_in_background()

    def after_save(self) -> None:
        """after_labels with a failure logged, not raised: the label is saved, a refit is a bonus."""
        try:
            self.after_labels()
        except Exception:  # the save stands; the stored scores keep ranking
            log.exception("could not start a refit of the quick model")

    def refit(self) -> QuickFit:
        """Fit now on the serving version's embeddings and the current labels (UserError when it
        cannot: no version, no embeddings yet, too few labels); the fit serves from now on."""
        info = self.services.registry.active_version()
        if info is None:
            raise NotReady("No model version serves yet: the quick model needs its sentence embeddings.")
        with self._lock:
            self._serial += 1
            serial = self._serial
        fit = fit_quick(self.engine, self.services.registry.folder(info) / vectors.VECTORS_FILE, (info.id, info.name),
                        self.labels, previous=self.current(info.id), serial=serial)
        with self._lock:
            if self._fit is None or self._fit.serial < fit.serial:
                self._fit = fit
                self._mark = (info.id, fit.mark)
        log.info("quick model refit on %d labels in %.2f s (%s's embeddings)", fit.labels_used, fit.seconds, info.name)
        return fit

    def refit_in_background(self) -> bool:
        """refit() in a daemon thread unless one runs; True when it started."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._thread = threading.Thread(target=self._refit_quietly, name="quick-refit", daemon=True)
            self._thread.start()
        return True

    def _refit_quietly(self) -> None:
        try:
            self.refit()
            self.last_error = ""
        except UserError as exc:  # too few labels, embeddings not written yet: the stored scores keep ranking
            self.last_error = str(exc)
            log.info("quick model not refitted: %s", exc)
        except Exception:  # a background thread must log; the stored scores keep ranking
            log.exception("quick model refit failed")

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a refit under way (tests, the bench)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
