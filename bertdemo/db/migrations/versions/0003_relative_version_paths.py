"""Version folders relative to the data directory, and the activations table.

`model_versions.path` held the absolute folder of each version, so a data directory copied or
restored to another path served nothing ("Internal error" on every call). The registry writes
"models/<name>" now; this revision rewrites the existing rows whose folder is `<anything>/models/
<name>` (every folder the registry made) to that relative form, and leaves other absolute paths
(a model imported from elsewhere) as they are. `activations` records every change of the serving
version with who made it and why.

Downgrade drops `activations` and leaves the paths relative: the data directory is unknown here,
so they cannot be made absolute again; an older release would look for them in its working
directory (restore a backup taken before the upgrade instead).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath, PureWindowsPath

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def relative_form(name: str, path: str) -> str | None:
    """"models/<name>" when `path` is an absolute folder the registry made for version `name`."""
    for flavour in (PurePosixPath, PureWindowsPath):
        p = flavour(path)
        if p.is_absolute() and p.parts[-2:] == ("models", name):
            return f"models/{name}"
    return None


def upgrade() -> None:
    op.create_table(
        "activations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("previous_version_id", sa.Integer(), nullable=True),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"]),
        sa.ForeignKeyConstraint(["previous_version_id"], ["model_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_activations_version_id", "activations", ["version_id"])
    versions = sa.table("model_versions", sa.column("id", sa.Integer()), sa.column("name", sa.String()),
                        sa.column("path", sa.Text()))
    conn = op.get_bind()
    for vid, name, path in conn.execute(sa.select(versions.c.id, versions.c.name, versions.c.path)).all():
        rel = relative_form(name, path)
        if rel is not None:
            conn.execute(versions.update().where(versions.c.id == vid).values(path=rel))


def downgrade() -> None:
    op.drop_index("ix_activations_version_id", table_name="activations")
    op.drop_table("activations")
