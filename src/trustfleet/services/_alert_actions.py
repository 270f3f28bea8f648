"""What a playbook asks for an alert, and doing it through the existing services.

Private to ``services``: :mod:`trustfleet.services.alerts` is the public face. Automatic actions
run at once with actor ``monitor``; approval actions wait for an operator. Each step writes a
``monitor.action.*`` security event.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from trustfleet.errors import Config, Conflict, InvalidInput, TrustFleetError
from trustfleet.fileio import check_trusted, read_bounded
from trustfleet.monitoring.notify_format import AlertNotice, webhook_body
from trustfleet.monitoring.playbooks import (
    MAX_PLAYBOOK_BYTES,
    PlannedAction,
    Playbook,
    default_playbook,
    load_playbooks,
)
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.settings.monitoring import MonitoringSettings
from trustfleet.store import JSON, AlertActionRecord, AlertRecord, Transaction

__all__ = [
    "ACTION_PERMISSION",
    "MONITOR_ACTOR",
    "action_event",
    "alert_event",
    "check_playbooks_file",
    "plan_actions",
    "playbook_of",
    "receiver_channels",
    "run_action",
]

logger = logging.getLogger(__name__)

MONITOR_ACTOR: Final = "monitor"
"""The actor of what the monitor does on its own."""
ACTION_PERMISSION: Final[Mapping[str, str]] = {
    "notify": "alerts.manage",
    "reattest": "devices.attest",
    "quarantine": "devices.quarantine",
    "revoke": "devices.revoke",
}
"""The permission an approver needs for each action (besides ``alerts.manage``)."""
REVOKE_REASON: Final = "keyCompromise"
"""The RFC 5280 reason of a revocation a playbook asks for (the device is not trusted)."""


def receiver_channels(settings: MonitoringSettings) -> dict[str, str]:
    """Every configured receiver's name → its channel (``webhook`` or ``syslog``)."""
    channels = {w.name: "webhook" for w in settings.webhooks}
    channels.update({s.name: "syslog" for s in settings.syslog})
    return channels


def check_playbooks_file(path: Path, *, settings: MonitoringSettings | None = None) -> Playbook:
    """Load a playbook file and check it (for ``trustfleet monitor playbook check FILE``).

    Args:
        path: The TOML file.
        settings: When given, receivers the playbook names must be configured there.

    Raises:
        InvalidInput: Unreadable, too large or invalid (``monitor.playbook.invalid``).
    """
    try:
        data = read_bounded(path, max_bytes=MAX_PLAYBOOK_BYTES)
        text = "" if data is None else data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"cannot read the playbook {path}: {exc}", code="monitor.playbook.invalid"
        ) from exc
    if data is None:
        raise InvalidInput(
            f"{path}: (file): larger than {MAX_PLAYBOOK_BYTES} bytes",
            code="monitor.playbook.invalid",
        )
    playbook = load_playbooks(text, source=str(path))
    if settings is not None:
        playbook.check_receivers(receiver_channels(settings))
    return playbook


def playbook_of(settings: ServerSettings) -> Playbook:
    """The home's playbook (``[monitoring] playbooks``), or the built-in one.

    Raises:
        Config: The configured playbook is unreadable, invalid, or writable by someone else.
    """
    monitoring = settings.monitoring
    if not monitoring.playbooks:
        return default_playbook()
    path = settings.path(monitoring.playbooks)
    check_trusted(path, what="the playbook")  # it may revoke devices: only we may change it
    try:
        return check_playbooks_file(path, settings=monitoring)
    except InvalidInput as exc:
        raise Config(exc.message, hint=exc.hint, code=exc.code) from exc


def alert_event(
    tx: Transaction, kind: str, *, actor: str, alert: AlertRecord, details: Mapping[str, JSON],
    now: datetime,
) -> None:  # fmt: skip
    """Write a ``monitor.*`` event about an alert: on its device, the alert's id and kind
    first, then ``details``."""
    tx.events.append(
        type=kind, actor=actor, subject=f"device:{alert.device_id}",
        details={"alert": alert.id, "kind": alert.kind, **details}, now=now,
    )  # fmt: skip


def action_event(
    tx: Transaction, state: str, action: AlertActionRecord, alert: AlertRecord, *, actor: str,
    now: datetime,
) -> None:  # fmt: skip
    """Write ``monitor.action.<state>`` for an action."""
    details: dict[str, JSON] = {
        "action_id": action.id,
        "action": action.action,
        "mode": action.mode,
    }
    if action.result:
        details["result"] = action.result
    alert_event(tx, f"monitor.action.{state}", actor=actor, alert=alert, details=details, now=now)


def plan_actions(
    tx: Transaction, alert: AlertRecord, *, playbook: Playbook, settings: MonitoringSettings,
    now: datetime, skip: frozenset[str] = frozenset(),
) -> tuple[list[int], list[int]]:  # fmt: skip
    """Record the playbook's actions for an alert: the ids of all, and of the automatic ones to
    run after the commit.

    ``notify`` queues one outbox row per receiver and is done at once; ``approval`` actions wait
    (``monitor.action.pending``); other automatic ones are returned to run after the commit.
    Actions named in ``skip`` (asked for already, before an escalation) are left out.
    """
    asked: list[int] = []
    auto: list[int] = []
    for planned in playbook.plan(alert.kind, alert.severity):
        if planned.action in skip:
            continue
        action = tx.alert_actions.add(
            alert_id=alert.id, action=planned.action, mode=planned.mode, state="pending", now=now
        )
        asked.append(action.id)
        if planned.action == "notify":
            queued = _queue_notices(tx, alert, planned, settings=settings, now=now)
            tx.alert_actions.transition(
                action.id, expect="pending", state="done", now=now, by=MONITOR_ACTOR,
                result=f"{queued} notification(s) queued",
            )  # fmt: skip
            done = dataclasses.replace(
                action, state="done", decided_by=MONITOR_ACTOR, decided_at=now,
                result=f"{queued} notification(s) queued", updated_at=now,
            )  # fmt: skip
            action_event(tx, "done", done, alert, actor=MONITOR_ACTOR, now=now)
        elif planned.mode == "approval":
            action_event(tx, "pending", action, alert, actor=MONITOR_ACTOR, now=now)
        else:
            auto.append(action.id)
    return asked, auto


def _queue_notices(
    tx: Transaction, alert: AlertRecord, planned: PlannedAction, *,
    settings: MonitoringSettings, now: datetime,
) -> int:  # fmt: skip
    channels = receiver_channels(settings)
    names = planned.receivers or tuple(channels)
    queued = 0
    for name in names:
        channel = channels.get(name)
        if channel is None:  # the playbook was checked; a receiver removed since is skipped
            logger.warning("alert %d: receiver %r is not configured", alert.id, name)
            continue
        notice = AlertNotice(
            event_id=secrets.token_hex(16), alert_id=alert.id, device_id=alert.device_id,
            kind=alert.kind, severity=alert.severity, state=alert.state, summary=alert.summary,
            evidence=alert.evidence, first_seen=alert.first_seen, last_seen=alert.last_seen,
            created_at=now,
        )  # fmt: skip
        payload = webhook_body(notice).decode()
        tx.notifications.add(
            alert_id=alert.id, channel=channel, target=name, payload=payload, now=now
        )
        queued += 1
    return queued


def _execute(rt: Runtime, action: str, alert: AlertRecord, *, actor: str, now: datetime) -> str:
    """Do an action through the service that owns it; a one-line result."""
    reason = f"alert {alert.id}: {alert.kind} ({alert.severity})"[:256]
    if action == "quarantine":
        from trustfleet.services.attestation import quarantine  # noqa: PLC0415  # cycle-free

        try:
            quarantine(rt, alert.device_id, reason=reason, actor=actor, now=now)
        except Conflict:
            return "already quarantined"
        return "quarantined"
    if action == "revoke":
        from trustfleet.services.revocation import revoke_device  # noqa: PLC0415

        try:
            revoked = revoke_device(rt, alert.device_id, reason=REVOKE_REASON, actor=actor, now=now)
        except Conflict as exc:
            return exc.message
        return f"revoked ({len(revoked)} certificate(s))"
    if action == "reattest":
        return _reattest(rt, alert.device_id, now=now)
    raise InvalidInput(f"unknown action {action!r}", code="alert.action.unknown")


def _reattest(rt: Runtime, device_id: str, *, now: datetime) -> str:
    """Store a challenge and publish it, as ``trustfleet attest run`` does."""
    from trustfleet.services.attestation import (  # noqa: PLC0415
        challenge_message,
        issue_challenge,
    )
    from trustfleet.services.mqtt_client import publish_once  # noqa: PLC0415  # loads awscrt

    challenge = issue_challenge(rt, device_id=device_id, now=now, trigger="operator")
    topic, payload = challenge_message(device_id, challenge)
    publish_once(rt.settings, topic, payload, what=f"the challenge to {device_id}")
    return f"challenge {challenge.id} sent"


def run_action(
    rt: Runtime, action_id: int, *, expect: str, actor: str, now: datetime
) -> AlertActionRecord:
    """Do an action that is in state ``expect`` and record ``done`` or ``failed``.

    A failure of the action is recorded, never raised.
    """
    with rt.uow.begin(read_only=True) as tx:
        action = tx.alert_actions.require(action_id)
        alert = tx.alerts.require(action.alert_id)
    try:
        state, result = "done", _execute(rt, action.action, alert, actor=actor, now=now)
    except TrustFleetError as exc:
        state, result = "failed", exc.one_line()
        logger.warning("alert %d: %s failed: %s", alert.id, action.action, result)
    with rt.uow.begin() as tx:
        by = actor if expect == "pending" else None
        tx.alert_actions.transition(
            action_id, expect=expect, state=state, now=now, by=by, result=result
        )
        final = tx.alert_actions.require(action_id)
        action_event(tx, state, final, alert, actor=actor, now=now)
    return final
