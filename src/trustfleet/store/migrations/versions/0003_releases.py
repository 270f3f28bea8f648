"""Firmware releases (OTA) and devices.firmware_version.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

Written by hand; it runs on SQLite and PostgreSQL. A release is unique per (model, version);
``version_key`` is the version zero-padded so that it sorts as the version does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import utc

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the ``releases`` table and ``devices.firmware_version``."""
    op.add_column("devices", sa.Column("firmware_version", sa.String(32), nullable=True))
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("version_key", sa.String(32), nullable=False),
        sa.Column("min_version", sa.String(32), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_length", sa.BigInteger(), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("targets_version", sa.Integer(), nullable=False),
        sa.Column("published_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_releases"),
        sa.UniqueConstraint("model", "version", name="uq_releases_model_version"),
    )
    op.create_index("ix_releases_model_version_key", "releases", ["model", "version_key"])


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_index("ix_releases_model_version_key", table_name="releases")
    op.drop_table("releases")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("firmware_version")
