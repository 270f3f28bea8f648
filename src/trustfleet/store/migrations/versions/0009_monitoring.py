"""Security monitoring: metrics windows, alerts, their actions, notifications, the monitor's cursor.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Written by hand; it runs on SQLite and PostgreSQL (docs/monitoring.md).

* ``monitor_metrics``: one window of one device's metrics, from its agent (``device``) or from
  the service's view of it (``service``); ``numbers`` and ``sets`` are JSON (``sets``: name to
  a sorted list); one row per device, source and window end (a re-sent report is stored once).
  ``id`` orders the monitor's reading.
* ``alerts``: deduplicated by (device, kind) while findings keep coming; lifecycle
  open → acknowledged → resolved, or suppressed (until a time).
* ``alert_actions``: what a playbook asked for an alert (notify, reattest, quarantine, revoke),
  automatic or waiting for an operator's approval.
* ``notifications``: the outbox of webhooks and syslog messages, with attempts and backoff.
* ``monitor_cursor``: how far the monitor has scored ``monitor_metrics`` (by ``id``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from trustfleet.store._ddl import big_id, device_fk, one_of, utc

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SOURCES = ("device", "service")
_SEVERITIES = ("low", "medium", "high", "critical")
_DETECTORS = ("rule", "baseline", "model")
_ALERT_STATES = ("open", "acknowledged", "resolved", "suppressed")
_ACTIONS = ("notify", "reattest", "quarantine", "revoke")
_MODES = ("auto", "approval")
_ACTION_STATES = ("pending", "approved", "rejected", "done", "failed")
_CHANNELS = ("webhook", "syslog")
_NOTIFICATION_STATES = ("pending", "sent", "failed")


def _alert_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=f"fk_{table}_alert_id_alerts")


def upgrade() -> None:
    """Create the five tables."""
    op.create_table(
        "monitor_metrics",
        big_id(),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("window_end", utc(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("sets", sa.JSON(), nullable=False),
        sa.Column("received_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_metrics"),
        sa.UniqueConstraint(
            "device_id",
            "source",
            "window_end",
            name="uq_monitor_metrics_device_id_source_window_end",
        ),
        sa.CheckConstraint(one_of("source", _SOURCES), name="ck_monitor_metrics_source"),
        device_fk("monitor_metrics"),
    )
    op.create_index("ix_monitor_metrics_received_at", "monitor_metrics", ["received_at"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detector", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("summary", sa.String(300), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("first_seen", utc(), nullable=False),
        sa.Column("last_seen", utc(), nullable=False),
        sa.Column("suppressed_until", utc(), nullable=True),
        sa.Column("updated_by", sa.String(64), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.CheckConstraint(one_of("severity", _SEVERITIES), name="ck_alerts_severity"),
        sa.CheckConstraint(one_of("detector", _DETECTORS), name="ck_alerts_detector"),
        sa.CheckConstraint(one_of("state", _ALERT_STATES), name="ck_alerts_state"),
        device_fk("alerts"),
    )
    op.create_index("ix_alerts_device_id_kind", "alerts", ["device_id", "kind"])
    op.create_index("ix_alerts_state_last_seen", "alerts", ["state", "last_seen"])
    op.create_table(
        "alert_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", utc(), nullable=True),
        sa.Column("result", sa.String(300), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_actions"),
        sa.CheckConstraint(one_of("action", _ACTIONS), name="ck_alert_actions_action"),
        sa.CheckConstraint(one_of("mode", _MODES), name="ck_alert_actions_mode"),
        sa.CheckConstraint(one_of("state", _ACTION_STATES), name="ck_alert_actions_state"),
        _alert_fk("alert_actions"),
    )
    op.create_index("ix_alert_actions_alert_id", "alert_actions", ["alert_id"])
    op.create_index("ix_alert_actions_state", "alert_actions", ["state"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", utc(), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("created_at", utc(), nullable=False),
        sa.Column("sent_at", utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.CheckConstraint(one_of("channel", _CHANNELS), name="ck_notifications_channel"),
        sa.CheckConstraint(one_of("state", _NOTIFICATION_STATES), name="ck_notifications_state"),
        _alert_fk("notifications"),
    )
    op.create_index(
        "ix_notifications_state_next_attempt_at", "notifications", ["state", "next_attempt_at"]
    )
    op.create_table(
        "monitor_cursor",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", utc(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_monitor_cursor"),
    )


def downgrade() -> None:
    """Drop the five tables."""
    for table in ("monitor_cursor", "notifications", "alert_actions", "alerts", "monitor_metrics"):
        op.drop_table(table)
