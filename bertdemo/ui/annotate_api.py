"""The Annotate tab's API-only endpoints (/next_item, /save_label, /undo, /skip_item): labelling
from a script, with the same checks as the page. LabellingApi's methods are the endpoints (their
docstrings are the API page's text); the work is in actions.labelling.Labelling."""

from __future__ import annotations

import gradio as gr

from bertdemo.actions.labelling import Labelling
from bertdemo.ui.common import guarded, user_of


class LabellingApi:
    def __init__(self, labelling: Labelling) -> None:
        self.labelling = labelling

    @guarded
    def next_item(self, queue: str = "unlabeled", search: str = "", exclude: list[int] | None = None,
                  dataset: str = "all", request: gr.Request = None) -> dict | None:  # type: ignore[assignment]
        """The next example of a queue (unlabeled, informative, disagree, uncertain, margin, diverse,
        suspicious, recent, search, selection) among the examples of `dataset` (all, airline, general,
        import), skipping the ids in `exclude`; None when the queue is done."""
        item = self.labelling.next_item(queue, search, exclude, user_of(request), dataset)
        return item.as_api() if item else None

    @guarded
    def skip_item(self, example_id: int, request: gr.Request = None) -> bool:  # type: ignore[assignment]
        """Give an example next_item handed you back without labelling it (someone else may get it
        at once); True when you held it. Items you neither save nor skip return to the team when
        their lease runs out."""
        return self.labelling.skip(example_id, user_of(request))

    @guarded
    def save_label(self, example_id: int, label: str, version: int, accepted_suggestion: bool = False,
                   request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Set an example's label; `version` is the one next_item returned (refused if it changed).
        With accepted_suggestion, the label is the model's prediction that next_item showed
        ("predicted"), accepted as it is: recorded with source "suggestion"."""
        return self.labelling.save_label(example_id, label, version, user_of(request), accepted_suggestion).as_api()

    @guarded
    def undo(self, example_id: int, request: gr.Request = None) -> dict:  # type: ignore[assignment]
        """Restore the label before the example's newest change (a new history row)."""
        return self.labelling.undo(example_id, user_of(request)).as_api()


def register(labelling: Labelling) -> None:
    """The endpoints. queue=False: a save is ~1 ms of SQLite work; the queue round trips (join +
    event stream) would cost far more than the work itself, and they need no share of the 4 model
    workers (default_concurrency_limit). Each call is still its own transaction."""
    api = LabellingApi(labelling)
    gr.api(api.next_item, api_name="next_item", queue=False, concurrency_limit=None)
    gr.api(api.save_label, api_name="save_label", queue=False, concurrency_limit=None)
    gr.api(api.undo, api_name="undo", queue=False, concurrency_limit=None)
    gr.api(api.skip_item, api_name="skip_item", queue=False, concurrency_limit=None)
