"""Ranked queues in SQL at any corpus size: each stored score gets its margin (top class minus
the runner-up, the "Breaking ties" order, until now computed in Python from the JSON probabilities
of every score on each ranking) and three covering indexes that lead with the version, in the
order of Most uncertain, Breaking ties and Model disagrees, so a queue of one version is read
front to back from an index instead of sorting every score of every version.

Existing rows get their margin from their stored probabilities, in batches.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


def _margin(probs: object) -> float:
    p = sorted((float(x) for x in (json.loads(probs) if isinstance(probs, str) else probs or [])), reverse=True)
    return p[0] - p[1] if len(p) > 1 else (p[0] if p else 0.0)


def upgrade() -> None:
    op.add_column("scores", sa.Column("margin", sa.Float(), nullable=True))
    scores = sa.table("scores", sa.column("example_id", sa.Integer), sa.column("version_id", sa.Integer),
                      sa.column("probs", sa.JSON), sa.column("margin", sa.Float))
    conn = op.get_bind()
    last = (-1, -1)
    while True:  # keyset batches: bounded memory for any number of scores
        rows = conn.execute(sa.select(scores.c.version_id, scores.c.example_id, scores.c.probs)
                            .where(sa.tuple_(scores.c.version_id, scores.c.example_id) > sa.tuple_(*last))
                            .order_by(scores.c.version_id, scores.c.example_id).limit(BATCH)).all()
        if not rows:
            break
        conn.execute(scores.update().where(scores.c.version_id == sa.bindparam("v"),
                                           scores.c.example_id == sa.bindparam("e"))
                     .values(margin=sa.bindparam("m")),
                     [{"v": v, "e": e, "m": _margin(p)} for v, e, p in rows])
        last = (rows[-1][0], rows[-1][1])
    # covering, in each queue's order: Most uncertain, Breaking ties, Model disagrees
    op.create_index("ix_scores_version_entropy", "scores", ["version_id", sa.text("entropy DESC"), "example_id"])
    op.create_index("ix_scores_version_margin", "scores", ["version_id", "margin", "example_id"])
    op.create_index("ix_scores_version_confidence", "scores",
                    ["version_id", sa.text("confidence DESC"), "example_id", "predicted"])


def downgrade() -> None:
    op.drop_index("ix_scores_version_confidence", table_name="scores")
    op.drop_index("ix_scores_version_margin", table_name="scores")
    op.drop_index("ix_scores_version_entropy", table_name="scores")
    op.drop_column("scores", "margin")
