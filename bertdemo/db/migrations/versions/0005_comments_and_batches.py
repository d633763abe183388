"""Comments on examples, and the batch a bulk label change belongs to (one undo for the batch).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("label_events") as batch:
        batch.add_column(sa.Column("batch", sa.String(length=36), nullable=True))
        batch.create_index("ix_label_events_batch", ["batch"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("example_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["example_id"], ["examples.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_comments_example_id", "comments", ["example_id"])


def downgrade() -> None:
    op.drop_index("ix_comments_example_id", table_name="comments")
    op.drop_table("comments")
    with op.batch_alter_table("label_events") as batch:
        batch.drop_index("ix_label_events_batch")
        batch.drop_column("batch")
