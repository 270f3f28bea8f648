"""Remote attestation: AKs, AK enrollments, challenges, verdicts, and device quarantine.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

Written by hand; it runs on SQLite and PostgreSQL. Challenges are read by device and issue
time (scheduling, consecutive misses) and by expiry among the unanswered (the missed-challenge
sweep); results by device and time (history). The quarantine lives on ``devices`` (the store
is its source of truth; ``server run`` applies it to the broker).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import big_id, device_fk, one_of, utc

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIGGERS = ("boot", "schedule", "operator")
_OUTCOMES = ("passed", "failed", "missed")


def _ak_binding() -> list[sa.Column[object]]:
    """The AK and the EK it is bound to: the columns a key and a pending enrollment share."""
    return [
        sa.Column("ak_public", sa.LargeBinary(), nullable=False),
        sa.Column("ak_public_pem", sa.String(1024), nullable=False),
        sa.Column("ak_name", sa.String(160), nullable=False),
        sa.Column("ek_public", sa.LargeBinary(), nullable=False),
        sa.Column("ek_certificate", sa.LargeBinary(), nullable=False),
    ]


def upgrade() -> None:
    """Add the quarantine columns and the four attestation tables."""
    op.add_column("devices", sa.Column("quarantined_at", utc(), nullable=True))
    op.add_column("devices", sa.Column("quarantine_reason", sa.String(256), nullable=True))
    op.add_column("devices", sa.Column("quarantined_by", sa.String(128), nullable=True))
    op.add_column("devices", sa.Column("quarantine_release", sa.String(32), nullable=True))
    op.create_table(
        "attestation_keys",
        sa.Column("device_id", sa.String(64), nullable=False),
        *_ak_binding(),
        sa.Column("activated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_attestation_keys"),
        device_fk("attestation_keys"),
    )
    op.create_table(
        "ak_enrollments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        *_ak_binding(),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("expires_at", utc(), nullable=False),
        sa.Column("used_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ak_enrollments"),
        device_fk("ak_enrollments"),
    )
    op.create_index("ix_ak_enrollments_device_id", "ak_enrollments", ["device_id"])
    op.create_table(
        "attestation_challenges",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("pcrs", sa.JSON(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("issued_at", utc(), nullable=False),
        sa.Column("expires_at", utc(), nullable=False),
        sa.Column("used_at", utc(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_attestation_challenges"),
        device_fk("attestation_challenges"),
        sa.CheckConstraint(one_of("trigger", _TRIGGERS), name="ck_attestation_challenges_trigger"),
        sa.CheckConstraint(one_of("outcome", _OUTCOMES), name="ck_attestation_challenges_outcome"),
    )
    op.create_index(
        "ix_attestation_challenges_device_id_issued_at",
        "attestation_challenges",
        ["device_id", "issued_at"],
    )
    op.create_index(
        "ix_attestation_challenges_outcome_expires_at",
        "attestation_challenges",
        ["outcome", "expires_at"],
    )
    op.create_table(
        "attestation_results",
        big_id(),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("challenge_id", sa.String(40), nullable=False),
        sa.Column("verified_at", utc(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("release", sa.String(32), nullable=True),
        sa.Column("reset_count", sa.BigInteger(), nullable=True),
        sa.Column("restart_count", sa.BigInteger(), nullable=True),
        sa.Column("clock", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_attestation_results"),
        device_fk("attestation_results"),
    )
    op.create_index(
        "ix_attestation_results_device_id_verified_at",
        "attestation_results",
        ["device_id", "verified_at"],
    )


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_index("ix_attestation_results_device_id_verified_at", table_name="attestation_results")
    op.drop_table("attestation_results")
    op.drop_index(
        "ix_attestation_challenges_outcome_expires_at", table_name="attestation_challenges"
    )
    op.drop_index(
        "ix_attestation_challenges_device_id_issued_at", table_name="attestation_challenges"
    )
    op.drop_table("attestation_challenges")
    op.drop_index("ix_ak_enrollments_device_id", table_name="ak_enrollments")
    op.drop_table("ak_enrollments")
    op.drop_table("attestation_keys")
    with op.batch_alter_table("devices") as batch:
        for column in ("quarantine_release", "quarantined_by", "quarantine_reason"):
            batch.drop_column(column)
        batch.drop_column("quarantined_at")
