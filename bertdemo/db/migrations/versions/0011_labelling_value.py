"""Is more labelling worth it (issue 25): what the stopping signals, the annotation times and the
suggestion-bias audit read.

- `stopping_pool`: a fixed random sample of examples, drawn once, on which every version's
  predictions are compared with the previous versions' (Cohen's kappa, the stabilizing-predictions
  rule); `pool_predictions`: each version's predicted class on it, stored when the version is saved.
- `leases.hide_suggestion`: the suggestion-bias audit's draw, per handed-out item: the model's
  suggestion is not shown for it.
- `label_events.suggested`, `suggestion_shown`, `handed_out_at`: the condition a label was given
  under (the model's suggestion then, whether it was shown, when the item was handed out), stored
  with the label. NULL for the labels before this revision and for labels saved without a hand-out.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stopping_pool",
        sa.Column("example_id", sa.Integer(), nullable=False),
        sa.Column("drawn_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["example_id"], ["examples.id"]),
        sa.PrimaryKeyConstraint("example_id"),
    )
    op.create_table(
        "pool_predictions",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("example_id", sa.Integer(), nullable=False),
        sa.Column("predicted", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["example_id"], ["examples.id"]),
        sa.PrimaryKeyConstraint("version_id", "example_id"),
    )
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("hide_suggestion", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("label_events") as batch:
        batch.add_column(sa.Column("suggested", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("suggestion_shown", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("handed_out_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("label_events") as batch:
        batch.drop_column("handed_out_at")
        batch.drop_column("suggestion_shown")
        batch.drop_column("suggested")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("hide_suggestion")
    op.drop_table("pool_predictions")
    op.drop_table("stopping_pool")
