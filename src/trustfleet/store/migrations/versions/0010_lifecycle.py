"""Lifecycle: the CA registry (rollover), decommissions with wipe evidence, expiry notices.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Written by hand; it runs on SQLite and PostgreSQL (docs/lifecycle.md).

* ``certificate_authorities``: every CA the home has had, by the name its certificates and CRLs
  use (``issuer``), its kind (root, manufacturing, device) and state: ``active`` (issues and is
  trusted), ``standby`` (published and trusted, does not issue yet), ``retiring`` (trusted, no
  longer issues: its devices move away), ``retired`` (its final CRL issued; no longer trusted).
  A home made before 0010 gets its three CAs as ``active``.
* ``decommissions``: one per device asked to wipe itself: the server's nonce, the deadline, and
  the outcome (``pending``, ``verified`` with the wipe evidence, ``unverified``).
* ``expiry_notices``: the last warning raised for something that expires (a certificate, a CRL,
  TUF metadata), so the watch warns once per level, not at every check.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import device_fk, one_of, utc

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CA_KINDS = ("root", "manufacturing", "device")
_CA_STATES = ("active", "standby", "retiring", "retired")
_DECOMMISSION_STATES = ("pending", "verified", "unverified")
_EXPIRY_LEVELS = ("warning", "critical", "expired")


def upgrade() -> None:
    """Create the three tables; register the home's three CAs."""
    cas = op.create_table(
        "certificate_authorities",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("activated_at", utc(), nullable=True),
        sa.Column("retired_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_certificate_authorities"),
        sa.CheckConstraint(one_of("kind", _CA_KINDS), name="ck_certificate_authorities_kind"),
        sa.CheckConstraint(one_of("state", _CA_STATES), name="ck_certificate_authorities_state"),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        cas,
        [
            {"name": name, "kind": name, "state": "active", "created_at": now, "activated_at": now}
            for name in _CA_KINDS
        ],
    )
    op.create_table(
        "decommissions",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", utc(), nullable=False),
        sa.Column("deadline", utc(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("reason", sa.String(300), nullable=True),
        sa.Column("completed_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("device_id", name="pk_decommissions"),
        sa.CheckConstraint(one_of("state", _DECOMMISSION_STATES), name="ck_decommissions_state"),
        device_fk("decommissions"),
    )
    op.create_index("ix_decommissions_state_deadline", "decommissions", ["state", "deadline"])
    op.create_table(
        "expiry_notices",
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("not_after", utc(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("raised_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_expiry_notices"),
        sa.CheckConstraint(one_of("level", _EXPIRY_LEVELS), name="ck_expiry_notices_level"),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("expiry_notices")
    op.drop_index("ix_decommissions_state_deadline", table_name="decommissions")
    op.drop_table("decommissions")
    op.drop_table("certificate_authorities")
