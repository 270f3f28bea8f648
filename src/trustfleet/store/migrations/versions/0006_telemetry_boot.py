"""Telemetry stored at most once: ``telemetry.boot`` and a unique (device, boot, seq).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Written by hand; it runs on SQLite and PostgreSQL. A device's agent picks a random ``boot`` id
at each start and numbers its messages with ``seq`` (docs/mqtt.md), so a QoS 1 redelivery has
the same (device, boot, seq) and the insert skips it (``ON CONFLICT DO NOTHING``). Rows without
a boot id (agents that do not send one, and rows stored before this revision) hold NULL, which
a unique index never finds equal: they are kept as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``telemetry.boot`` and the unique index on (device_id, boot, seq)."""
    op.add_column("telemetry", sa.Column("boot", sa.String(32), nullable=True))
    op.create_index(
        "uq_telemetry_device_id_boot_seq", "telemetry", ["device_id", "boot", "seq"], unique=True
    )


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_index("uq_telemetry_device_id_boot_seq", table_name="telemetry")
    with op.batch_alter_table("telemetry") as batch:
        batch.drop_column("boot")
