"""ORM rows of security monitoring (migration 0009): metrics windows, alerts, alert actions,
notifications and the monitor's cursor.

Private to :mod:`trustfleet.store`. Records returned to services are frozen dataclasses, never
these rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from trustfleet.monitoring import DETECTORS, SEVERITIES
from trustfleet.monitoring.playbooks import ACTIONS, MODES
from trustfleet.store._models import Base, _check_one_of
from trustfleet.store._types import EventId, UTCDateTime
from trustfleet.store.alert_records import ALERT_STATE_VALUES, ActionState

__all__ = [
    "ACTION_MODES",
    "ACTION_STATES",
    "ALERT_ACTIONS",
    "ALERT_DETECTORS",
    "ALERT_SEVERITIES",
    "ALERT_STATES",
    "METRICS_SOURCES",
    "NOTIFICATION_CHANNELS",
    "NOTIFICATION_STATES",
    "AlertActionRow",
    "AlertRow",
    "MonitorCursorRow",
    "MonitorMetricsRow",
    "NotificationRow",
]

METRICS_SOURCES: tuple[str, ...] = ("device", "service")
ALERT_SEVERITIES: tuple[str, ...] = SEVERITIES
ALERT_DETECTORS: tuple[str, ...] = DETECTORS
ALERT_STATES: tuple[str, ...] = ALERT_STATE_VALUES
ALERT_ACTIONS: tuple[str, ...] = ACTIONS
ACTION_MODES: tuple[str, ...] = MODES
ACTION_STATES: tuple[str, ...] = get_args(ActionState)
NOTIFICATION_CHANNELS: tuple[str, ...] = ("webhook", "syslog")
NOTIFICATION_STATES: tuple[str, ...] = ("pending", "sent", "failed")


class MonitorMetricsRow(Base):
    """Table ``monitor_metrics``: one window of one device's metrics (device or service view)."""

    __tablename__ = "monitor_metrics"
    __table_args__ = (
        _check_one_of("source", METRICS_SOURCES),
        UniqueConstraint("device_id", "source", "window_end"),
        Index(None, "received_at"),
    )

    id: Mapped[int] = mapped_column(EventId(), primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    source: Mapped[str] = mapped_column(String(8))
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    interval_s: Mapped[int] = mapped_column(Integer)
    numbers: Mapped[dict[str, Any]] = mapped_column(JSON)
    sets: Mapped[dict[str, Any]] = mapped_column(JSON)  # name -> sorted list of members
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertRow(Base):
    """Table ``alerts``: findings deduplicated by (device, kind), with a lifecycle."""

    __tablename__ = "alerts"
    __table_args__ = (
        _check_one_of("severity", ALERT_SEVERITIES),
        _check_one_of("detector", ALERT_DETECTORS),
        _check_one_of("state", ALERT_STATES),
        Index(None, "device_id", "kind"),
        Index(None, "state", "last_seen"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    kind: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    detector: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(300))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    findings: Mapped[int] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    suppressed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertActionRow(Base):
    """Table ``alert_actions``: what a playbook asked for an alert, automatic or approved."""

    __tablename__ = "alert_actions"
    __table_args__ = (
        _check_one_of("action", ALERT_ACTIONS),
        _check_one_of("mode", ACTION_MODES),
        _check_one_of("state", ACTION_STATES),
        Index(None, "alert_id"),
        Index(None, "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(Integer, ForeignKey("alerts.id"))
    action: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NotificationRow(Base):
    """Table ``notifications``: the outbox of webhooks and syslog messages."""

    __tablename__ = "notifications"
    __table_args__ = (
        _check_one_of("channel", NOTIFICATION_CHANNELS),
        _check_one_of("state", NOTIFICATION_STATES),
        Index(None, "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("alerts.id"))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(64))  # the configured receiver's name
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MonitorCursorRow(Base):
    """Table ``monitor_cursor``: how far the monitor has scored ``monitor_metrics``."""

    __tablename__ = "monitor_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
