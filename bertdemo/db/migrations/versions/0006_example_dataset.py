"""The dataset each example came from (a bundled one, or an import), filterable in Annotate.

Existing rows: those imported from the bundled file (source "dataset") were the airline tweets,
the only bundled set before this revision; CSV imports are "import".

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# plain ALTER TABLE, no batch mode: on SQLite a batch operation recreates the table, and dropping
# `examples` fails while its label history (foreign keys) exists. ADD COLUMN and (SQLite >= 3.35)
# DROP COLUMN of an unindexed column are native on both backends.
def upgrade() -> None:
    op.add_column("examples", sa.Column("dataset", sa.String(length=32), nullable=True))
    op.create_index("ix_examples_dataset", "examples", ["dataset"])
    examples = sa.table("examples", sa.column("source", sa.String), sa.column("dataset", sa.String))
    op.execute(examples.update().where(examples.c.source == "dataset").values(dataset="airline"))
    op.execute(examples.update().where(examples.c.source == "import").values(dataset="import"))


def downgrade() -> None:
    op.drop_index("ix_examples_dataset", table_name="examples")
    op.drop_column("examples", "dataset")
