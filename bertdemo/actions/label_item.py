"""What the labelling view hands out and records: an item as one person sees it (Item: with or
without others' labels, with or without the model's suggestion) and one recorded label change
(Saved). Plain frozen dataclasses; actions/labelling.py builds them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from bertdemo.db.models import LabelEvent

HIDDEN_BY = "hidden for the suggestion-bias audit"  # Item.suggested_by when the audit's draw hides it


@dataclass(frozen=True)
class Item:
    """One example as the labeling view shows it."""
    id: int
    text: str  # the raw text, shown as plain text (never rendered as HTML)
    cleaned: str
    label: str | None
    version: int  # pass back to save_label: the save is refused if the row changed meanwhile
    predicted: str | None  # the active model's stored prediction, None before scoring
    confidence: float | None
    probs: dict[str, float]
    updated_by: str | None
    updated_at: datetime | None
    queue: str
    remaining: int  # items of the queue this person may still be handed (not seen this session), this one included
    team_remaining: int = 0  # items of the queue not yet labelled by as many people as annotations per item
    # handed out for an independent annotation (2+ annotations per item): the current label, who set
    # it and the history are withheld (label, updated_by, updated_at are None), so labels stay independent
    blind: bool = False
    ranked_by: str = ""  # which model ranked the queue, and when ("" for queues no model ranks)
    suggested_by: str = ""  # whose suggestion `predicted` is: the quick model or the version's stored score
    # the suggestion-bias audit drew this hand-out: no suggestion shown (predicted, confidence, probs empty)
    suggestion_hidden: bool = False

    def as_api(self) -> dict:
        return {"id": self.id, "text": self.text, "label": self.label, "version": self.version,
                "predicted": self.predicted, "confidence": self.confidence, "probs": self.probs,
                "updated_by": self.updated_by,
                "updated_at": self.updated_at.isoformat() if self.updated_at else None,
                "queue": self.queue, "remaining": self.remaining, "team_remaining": self.team_remaining,
                "blind": self.blind, "ranked_by": self.ranked_by, "suggested_by": self.suggested_by,
                "suggestion_hidden": self.suggestion_hidden}

    def blinded(self) -> Item:
        """This item as a person labelling it independently sees it: nobody's label, name or time."""
        return replace(self, label=None, updated_by=None, updated_at=None, blind=True)

    def without_suggestion(self) -> Item:
        """This item as the audit's draw shows it: the model's suggestion withheld, so the person's
        label can be compared with the labels given with the suggestion on screen."""
        return replace(self, predicted=None, confidence=None, probs={}, suggested_by=HIDDEN_BY, suggestion_hidden=True)


@dataclass(frozen=True)
class Saved:
    """One label change as it was recorded (a history row)."""
    event_id: int
    example_id: int
    previous: str | None
    label: str | None
    version: int  # the row's version after this change
    user: str
    source: str

    def as_api(self) -> dict:
        return {"event_id": self.event_id, "example_id": self.example_id, "previous": self.previous,
                "label": self.label, "version": self.version, "user": self.user, "source": self.source}

    @classmethod
    def of(cls, event: LabelEvent) -> Saved:
        """The change a history row records."""
        return cls(event.id, event.example_id, event.previous_label, event.label, event.version, event.user,
                   event.source)
