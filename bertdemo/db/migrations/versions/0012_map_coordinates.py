"""The corpus map's coordinates stored with the scores (issue 26): each score row gets the 2-D
position of its example on that version's map (`map_x`, `map_y`: the projection of its sentence
embedding, written by the re-scoring's follow-up, training/follow_up.py), and an index that leads
with the version, so the map's first draw reads them instead of computing the layout, and a box or
lasso selection is a range query on (map_x, map_y) plus a polygon test on the candidates.
NULL for scores written before this revision (the map computes those versions' layout itself and
stores it) and while a re-scoring's follow-up has not laid the map out yet.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("scores", sa.Column("map_x", sa.Float(), nullable=True))
    op.add_column("scores", sa.Column("map_y", sa.Float(), nullable=True))
    # covering for a box: the version's range on map_x, map_y read from the index, the ids with it
    op.create_index("ix_scores_version_map", "scores", ["version_id", "map_x", "map_y", "example_id"])


def downgrade() -> None:
    op.drop_index("ix_scores_version_map", table_name="scores")
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("map_y")
        batch.drop_column("map_x")
