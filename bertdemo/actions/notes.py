"""Labelling guidelines (Markdown an admin writes in the app, shown beside every example) and
comments anyone leaves on an example (shown in its history and the export). No Gradio here."""

from __future__ import annotations

import unicodedata

import pandas as pd
from sqlalchemy.orm import Session

from bertdemo import auth, validate
from bertdemo.db import comments, examples, leases
from bertdemo.errors import BadInput
from bertdemo.services import Services
from bertdemo.validate import example_id

GUIDELINES_KEY = "guidelines"
MAX_GUIDELINES = 20_000  # characters
MAX_COMMENT = 2_000
DEFAULT_GUIDELINES = (
    "**negative**: the author is unhappy, complains or criticises. **neutral**: a question, a fact or "
    "news without an opinion. **positive**: praise, thanks or happiness. Judge the author's feeling, "
    "not the topic; sarcasm counts as what it means. Unsure? Skip (s) or leave a comment.")


class Notes:
    def __init__(self, services: Services) -> None:
        self.engine = services.engine

    def guidelines(self) -> str:
        with Session(self.engine) as s:
            return str(leases.get_setting(s, GUIDELINES_KEY, DEFAULT_GUIDELINES))

    def set_guidelines(self, text: object, username: str | None) -> str:
        """Replace the guidelines (admins only): Markdown, at most MAX_GUIDELINES characters."""
        who = auth.require_role(self.engine, username, "admin")
        text = _text(text, "The guidelines", MAX_GUIDELINES)
        with Session(self.engine) as s, s.begin():
            leases.set_setting(s, GUIDELINES_KEY, text.strip(), who)
        return text.strip()

    def comment(self, ex_id: object, text: object, username: str | None) -> int:
        """Leave a comment on an example (anyone signed in); returns the comment's id."""
        who = auth.current_user(self.engine, username)
        ex = example_id(ex_id)
        cleaned = _text(text, "The comment", MAX_COMMENT).strip()
        if not cleaned:
            raise BadInput("The comment is empty: write something first.")
        with Session(self.engine) as s, s.begin():
            examples.get(s, ex)
            return comments.add(s, ex, who, cleaned).id

    def comments(self, ex_id: object) -> pd.DataFrame:
        ex = example_id(ex_id)
        with Session(self.engine) as s:
            examples.get(s, ex)
            rows = [(c.created_at.strftime("%Y-%m-%d %H:%M:%S"), c.user, c.text) for c in comments.of_example(s, ex)]
        return pd.DataFrame(rows, columns=["when (UTC)", "who", "comment"])

    def for_export(self) -> dict[int, str]:
        """{example id: "user: text | user: text"} of every commented example."""
        with Session(self.engine) as s:
            return {i: " | ".join(f"{u}: {t}" for u, t in cs) for i, cs in comments.by_example(s).items()}


def _text(value: object, name: str, limit: int) -> str:
    """Text a person wrote (validate.text), as they wrote it (no tweet cleaning: links and @names
    stay), without control characters."""
    value = validate.text(value, name, limit)
    return "".join(ch for ch in value if ch in "\n\t" or unicodedata.category(ch) != "Cc")
