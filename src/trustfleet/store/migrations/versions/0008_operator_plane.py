"""The operator plane: operators, passkeys, API tokens, sessions, login throttling, commands.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Written by hand; it runs on SQLite and PostgreSQL. Secrets are stored hashed (argon2id for
passwords, SHA-256 for 256-bit API tokens and session ids). ``device_commands`` keeps every
command sent to a device and the result it sent back (docs/api.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import device_fk, one_of, utc

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLES = (
    "admin", "security-officer", "release-manager", "fleet-operator", "factory", "auditor",
    "metrics",
)  # fmt: skip
_STAGES = ("password", "mfa-enroll", "full")
_COMMAND_STATES = ("sent", "answered", "failed")


def _operator_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["operator_id"], ["operators.id"], name=f"fk_{table}_operator_id_operators"
    )


def upgrade() -> None:
    """Create the six tables."""
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_confirmed_at", utc(), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("disabled_at", utc(), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.Column("last_login_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_operators"),
        sa.UniqueConstraint("login", name="uq_operators_login"),
        sa.CheckConstraint(one_of("role", _ROLES), name="ck_operators_role"),
    )
    op.create_table(
        "operator_passkeys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("last_used_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_operator_passkeys"),
        sa.UniqueConstraint("credential_id", name="uq_operator_passkeys_credential_id"),
        _operator_fk("operator_passkeys"),
    )
    op.create_index("ix_operator_passkeys_operator_id", "operator_passkeys", ["operator_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("expires_at", utc(), nullable=False),
        sa.Column("revoked_at", utc(), nullable=True),
        sa.Column("last_used_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.CheckConstraint(one_of("role", _ROLES), name="ck_api_tokens_role"),
        _operator_fk("api_tokens"),
    )
    op.create_index("ix_api_tokens_operator_id", "api_tokens", ["operator_id"])
    op.create_table(
        "operator_sessions",
        sa.Column("id_sha256", sa.String(64), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("csrf_sha256", sa.String(64), nullable=False),
        sa.Column("mfa_method", sa.String(16), nullable=True),
        sa.Column("challenge", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("last_seen_at", utc(), nullable=False),
        sa.Column("expires_at", utc(), nullable=False),
        sa.Column("ended_at", utc(), nullable=True),
        sa.Column("origin", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("id_sha256", name="pk_operator_sessions"),
        sa.CheckConstraint(one_of("stage", _STAGES), name="ck_operator_sessions_stage"),
        _operator_fk("operator_sessions"),
    )
    op.create_index("ix_operator_sessions_operator_id", "operator_sessions", ["operator_id"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", utc(), nullable=False),
        sa.Column("locked_until", utc(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_login_throttle"),
    )
    op.create_table(
        "device_commands",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("sent_at", utc(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("answered_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_device_commands"),
        sa.CheckConstraint(one_of("state", _COMMAND_STATES), name="ck_device_commands_state"),
        device_fk("device_commands"),
    )
    op.create_index(
        "ix_device_commands_device_id_sent_at", "device_commands", ["device_id", "sent_at"]
    )


def downgrade() -> None:
    """Drop the six tables."""
    for table in (
        "device_commands",
        "login_throttle",
        "operator_sessions",
        "api_tokens",
        "operator_passkeys",
        "operators",
    ):
        op.drop_table(table)
