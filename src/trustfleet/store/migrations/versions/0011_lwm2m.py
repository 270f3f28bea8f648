"""LwM2M: devices' protocol, PSK credentials (encrypted), registrations, firmware manifests.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Written by hand; it runs on SQLite and PostgreSQL (docs/lwm2m.md, ADR 0022).

* ``devices.protocol``: ``mqtt`` (every device made before 0011) or ``lwm2m``.
* ``lwm2m_credentials``: pre-shared keys by PSK identity, AES-256-GCM ciphertext and nonce (the
  key ``lwm2m-psk-wrap`` never leaves the ``tf-service`` token), purpose ``bootstrap`` or ``dm``,
  and when and why the credential ended (a new ``dm`` key, revocation, decommission).
* ``lwm2m_registrations``: one per device: its last registration and its firmware object's
  state as the device reported it.
* ``lwm2m_manifests``: the signed firmware manifest (COSE_Sign1) of each release, with its
  per-model sequence number.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import device_fk, one_of, utc

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PURPOSES = ("bootstrap", "dm")
_MODES = ("psk", "cert")


def upgrade() -> None:
    """Add ``devices.protocol`` and the three tables."""
    # A plain ADD COLUMN (SQLite and PostgreSQL both have it): a batch alter would recreate
    # ``devices``, and dropping the old table fails once other tables' rows reference it.
    op.add_column(
        "devices", sa.Column("protocol", sa.String(8), nullable=False, server_default="mqtt")
    )
    op.create_table(
        "lwm2m_credentials",
        sa.Column("identity", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("ended_at", utc(), nullable=True),
        sa.Column("end_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("identity", name="pk_lwm2m_credentials"),
        sa.CheckConstraint(one_of("purpose", _PURPOSES), name="ck_lwm2m_credentials_purpose"),
        device_fk("lwm2m_credentials"),
    )
    op.create_index("ix_lwm2m_credentials_device_id", "lwm2m_credentials", ["device_id"])
    op.create_table(
        "lwm2m_registrations",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("lifetime_s", sa.Integer(), nullable=False),
        sa.Column("binding", sa.String(8), nullable=False),
        sa.Column("lwm2m_version", sa.String(8), nullable=False),
        sa.Column("objects", sa.JSON(), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("registered_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.Column("expires_at", utc(), nullable=False),
        sa.Column("ended_at", utc(), nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
        sa.Column("firmware_state", sa.Integer(), nullable=True),
        sa.Column("firmware_result", sa.Integer(), nullable=True),
        sa.Column("firmware_version", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("device_id", name="pk_lwm2m_registrations"),
        sa.CheckConstraint(one_of("mode", _MODES), name="ck_lwm2m_registrations_mode"),
        device_fk("lwm2m_registrations"),
    )
    op.create_table(
        "lwm2m_manifests",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name="pk_lwm2m_manifests"),
        sa.UniqueConstraint("model", "sequence", name="uq_lwm2m_manifests_model_sequence"),
    )


def downgrade() -> None:
    """Drop the three tables and ``devices.protocol``."""
    op.drop_table("lwm2m_manifests")
    op.drop_table("lwm2m_registrations")
    op.drop_index("ix_lwm2m_credentials_device_id", table_name="lwm2m_credentials")
    op.drop_table("lwm2m_credentials")
    op.drop_column("devices", "protocol")  # plain DROP COLUMN (SQLite >= 3.35), as above
