"""Telemetry rows from the MQTT ingest workers, and devices.last_seen_at.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Written by hand; it runs on SQLite and PostgreSQL. Telemetry is bounded by the retention job
(age and row count), so its id is a BIGINT on PostgreSQL and the indexes serve that job: by
``received_at`` (age and oldest-first trimming) and by device and time (per-device reads).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import big_id, device_fk, utc

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``devices.last_seen_at`` and the ``telemetry`` table."""
    op.add_column("devices", sa.Column("last_seen_at", utc(), nullable=True))
    op.create_table(
        "telemetry",
        big_id(),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("received_at", utc(), nullable=False),
        sa.Column("device_ts", utc(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry"),
        device_fk("telemetry"),
    )
    op.create_index("ix_telemetry_received_at", "telemetry", ["received_at"])
    op.create_index("ix_telemetry_device_id_received_at", "telemetry", ["device_id", "received_at"])


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_index("ix_telemetry_device_id_received_at", table_name="telemetry")
    op.drop_index("ix_telemetry_received_at", table_name="telemetry")
    op.drop_table("telemetry")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("last_seen_at")
