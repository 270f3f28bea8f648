"""Records of alerts, their actions and the notifications outbox (``tx.alerts``,
``tx.alert_actions``, ``tx.notifications``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from trustfleet.monitoring import Severity
from trustfleet.monitoring.playbooks import Action, Mode

__all__ = [
    "ALERT_STATE_VALUES",
    "ActionState",
    "AlertActionRecord",
    "AlertQuery",
    "AlertRecord",
    "AlertState",
    "NotificationRecord",
]

AlertState = Literal["open", "acknowledged", "resolved", "suppressed"]
ALERT_STATE_VALUES: Final[tuple[AlertState, ...]] = (
    "open",
    "acknowledged",
    "resolved",
    "suppressed",
)
ActionState = Literal["pending", "approved", "rejected", "done", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRecord:
    """An alert: findings of one kind on one device, deduplicated, with a lifecycle.

    Attributes:
        id: Its number.
        device_id: The device.
        kind: The findings' kind (``monitor.…``).
        severity: The highest severity seen.
        detector: The detector of the first finding.
        state: ``open``, ``acknowledged``, ``resolved`` or ``suppressed``.
        summary: The latest finding's summary.
        evidence: The latest finding's evidence.
        findings: How many findings joined it.
        first_seen: The first finding's time.
        last_seen: The last finding's time.
        suppressed_until: While suppressed: until when.
        updated_by: Who last changed its state (None: nobody yet).
        created_at: When it was raised.
        updated_at: When it last changed.
    """

    id: int
    device_id: str
    kind: str
    severity: Severity
    detector: Literal["rule", "baseline", "model"]
    state: AlertState
    summary: str
    evidence: Mapping[str, Any]
    findings: int
    first_seen: datetime
    last_seen: datetime
    suppressed_until: datetime | None
    updated_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertQuery:
    """Filters of an alert list (None: any)."""

    state: AlertState | None = None
    device_id: str | None = None
    kind: str | None = None
    severity: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertActionRecord:
    """An action a playbook asked for an alert.

    Attributes:
        id: Its number (what ``alerts approve`` takes).
        alert_id: The alert.
        action: ``notify``, ``reattest``, ``quarantine`` or ``revoke``.
        mode: ``auto`` or ``approval``.
        state: ``pending`` → (``approved`` →) ``done`` | ``failed``, or ``rejected``.
        decided_by: Who approved or rejected it (``monitor`` for an automatic one).
        decided_at: When.
        result: What happened (one line), or why it failed.
        created_at: When the playbook asked for it.
        updated_at: Its last change.
    """

    id: int
    alert_id: int
    action: Action
    mode: Mode
    state: ActionState
    decided_by: str | None
    decided_at: datetime | None
    result: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationRecord:
    """One message of the outbox to one receiver.

    Attributes:
        id: Its number.
        alert_id: The alert it tells about.
        channel: ``webhook`` or ``syslog``.
        target: The receiver's name in ``[monitoring]``.
        payload: The notice (the webhook's JSON body).
        state: ``pending``, ``sent`` or ``failed``.
        attempts: Attempts made.
        next_attempt_at: When it is due.
        last_error: The last attempt's failure.
        created_at: When it was queued.
        sent_at: When a receiver accepted it.
    """

    id: int
    alert_id: int | None
    channel: Literal["webhook", "syslog"]
    target: str
    payload: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
