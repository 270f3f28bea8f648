"""The audit log: each event's origin and outcome; the Merkle tree's tiles and checkpoints.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Written by hand; it runs on SQLite and PostgreSQL. ``security_events`` gains ``origin`` (from
where: "cli host=… pid=…", "est 10.0.0.7") and ``outcome`` ("ok" or "refused"); rows stored
before this revision get "" and "ok", which is what their entries in the audit log say.
``audit_tiles`` holds the hash tiles of the tree (docs/audit.md), ``audit_checkpoints`` each
signed checkpoint (append-only, like the events), ``audit_cosignatures`` the witnesses' lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import utc

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MESSAGE = "audit_checkpoints is append-only"

_SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, '{_MESSAGE}: UPDATE refused'); END
    """,
    f"""
    CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, '{_MESSAGE}: DELETE refused'); END
    """,
)

_POSTGRESQL_TRIGGERS = (
    f"""
    CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{_MESSAGE}: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE
    ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only()
    """,
)


def upgrade() -> None:
    """Add the two event columns and the three audit tables."""
    op.add_column(
        "security_events", sa.Column("origin", sa.String(256), nullable=False, server_default="")
    )
    op.add_column(
        "security_events", sa.Column("outcome", sa.String(16), nullable=False, server_default="ok")
    )
    op.create_table(
        "audit_tiles",
        sa.Column("level", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_tiles"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_audit_checkpoints"),
    )
    op.create_table(
        "audit_cosignatures",
        sa.Column("size", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("witness", sa.String(256), nullable=False),
        sa.Column("line", sa.String(512), nullable=False),
        sa.Column("received_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("size", "witness", name="pk_audit_cosignatures"),
        sa.ForeignKeyConstraint(
            ["size"],
            ["audit_checkpoints.size"],
            name="fk_audit_cosignatures_size_audit_checkpoints",
        ),
    )
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRESQL_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_checkpoints_no_update_delete ON audit_checkpoints")
        op.execute("DROP FUNCTION audit_checkpoints_append_only()")
    op.drop_table("audit_cosignatures")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_tiles")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would lose its triggers.
    op.drop_column("security_events", "outcome")
    op.drop_column("security_events", "origin")
