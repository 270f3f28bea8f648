"""Initial schema: devices, certificates, security_events (append-only), crls.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand; it runs on SQLite and PostgreSQL. Column types are spelled out here rather
than imported from the models, so that later model changes cannot rewrite this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import big_id, device_fk, one_of, utc

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY_MESSAGE = "security_events is append-only"

_SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER security_events_no_update BEFORE UPDATE ON security_events
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}: UPDATE refused'); END
    """,
    f"""
    CREATE TRIGGER security_events_no_delete BEFORE DELETE ON security_events
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}: DELETE refused'); END
    """,
)

# restrict_violation (23001) is an integrity error class, as SQLite's RAISE(ABORT) is.
_POSTGRESQL_TRIGGERS = (
    f"""
    CREATE FUNCTION security_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER security_events_no_update_delete BEFORE UPDATE OR DELETE ON security_events
    FOR EACH ROW EXECUTE FUNCTION security_events_append_only()
    """,
    """
    CREATE TRIGGER security_events_no_truncate BEFORE TRUNCATE ON security_events
    FOR EACH STATEMENT EXECUTE FUNCTION security_events_append_only()
    """,
)


def upgrade() -> None:
    """Create the four tables, their indexes, and the append-only triggers."""
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.CheckConstraint(
            one_of("state", ("manufactured", "enrolled", "revoked", "decommissioned")),
            name="ck_devices_state",
        ),
    )
    op.create_index("ix_devices_state", "devices", ["state"])

    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("not_before", utc(), nullable=False),
        sa.Column("not_after", utc(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", utc(), nullable=True),
        sa.Column("revocation_reason", sa.String(64), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        device_fk("certificates"),
        sa.UniqueConstraint("issuer", "serial", name="uq_certificates_issuer_serial"),
        sa.UniqueConstraint("sha256", name="uq_certificates_sha256"),
        sa.CheckConstraint(
            one_of("kind", ("ca", "server", "idevid", "ldevid")), name="ck_certificates_kind"
        ),
        sa.CheckConstraint(one_of("status", ("valid", "revoked")), name="ck_certificates_status"),
    )
    op.create_index("ix_certificates_device_id", "certificates", ["device_id"])

    op.create_table(
        "security_events",
        big_id(),
        sa.Column("occurred_at", utc(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_events"),
    )
    op.create_index("ix_security_events_type", "security_events", ["type"])
    op.create_index("ix_security_events_subject", "security_events", ["subject"])

    op.create_table(
        "crls",
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("this_update", utc(), nullable=False),
        sa.Column("next_update", utc(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", name="pk_crls"),
    )

    dialect = op.get_bind().dialect.name
    triggers = _POSTGRESQL_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER security_events_no_truncate ON security_events")
        op.execute("DROP TRIGGER security_events_no_update_delete ON security_events")
        op.execute("DROP FUNCTION security_events_append_only()")
    else:
        op.execute("DROP TRIGGER security_events_no_delete")
        op.execute("DROP TRIGGER security_events_no_update")
    op.drop_table("crls")
    op.drop_index("ix_security_events_subject", table_name="security_events")
    op.drop_index("ix_security_events_type", table_name="security_events")
    op.drop_table("security_events")
    op.drop_index("ix_certificates_device_id", table_name="certificates")
    op.drop_table("certificates")
    op.drop_index("ix_devices_state", table_name="devices")
    op.drop_table("devices")
