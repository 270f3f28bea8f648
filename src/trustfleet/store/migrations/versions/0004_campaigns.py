"""Update campaigns and the state of each of their devices.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Written by hand; it runs on SQLite and PostgreSQL. ``campaign_devices`` is read by the
campaign engine per (campaign, wave, state), hence its index; ``device_id`` is indexed for a
device's history across campaigns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import device_fk, one_of, utc

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CAMPAIGN_STATES = ("running", "paused", "aborted", "halted", "completed")
_DEVICE_STATES = (
    "pending", "notified", "checking", "downloading", "installing", "rebooting",
    "committed", "up_to_date", "failed", "rolled_back", "refused", "timed_out",
)  # fmt: skip


def upgrade() -> None:
    """Add the ``campaigns`` and ``campaign_devices`` tables."""
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("waves", sa.JSON(), nullable=False),
        sa.Column("max_failure_rate", sa.Float(), nullable=False),
        sa.Column("device_timeout_s", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(512), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
        sa.CheckConstraint(one_of("state", _CAMPAIGN_STATES), name="ck_campaigns_state"),
    )
    op.create_index("ix_campaigns_state", "campaigns", ["state"])
    op.create_table(
        "campaign_devices",
        sa.Column("campaign_id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("delta", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.String(256), nullable=True),
        sa.Column("code", sa.String(256), nullable=True),
        sa.Column("notified_at", utc(), nullable=True),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "device_id", name="pk_campaign_devices"),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name="fk_campaign_devices_campaign_id_campaigns"
        ),
        device_fk("campaign_devices"),
        sa.CheckConstraint(one_of("state", _DEVICE_STATES), name="ck_campaign_devices_state"),
    )
    op.create_index(
        "ix_campaign_devices_campaign_id_wave_state",
        "campaign_devices",
        ["campaign_id", "wave", "state"],
    )
    op.create_index("ix_campaign_devices_device_id", "campaign_devices", ["device_id"])


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_index("ix_campaign_devices_device_id", table_name="campaign_devices")
    op.drop_index("ix_campaign_devices_campaign_id_wave_state", table_name="campaign_devices")
    op.drop_table("campaign_devices")
    op.drop_index("ix_campaigns_state", table_name="campaigns")
    op.drop_table("campaigns")
