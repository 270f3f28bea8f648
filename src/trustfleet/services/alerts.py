"""Alerts: findings deduplicated into stored alerts, their lifecycle, and playbook actions.

A finding joins the open (or acknowledged) alert of its device and kind while that alert has
not been quiet for ``[monitoring] alert_quiet_s`` (:func:`trustfleet.monitoring.alerts.continues`);
otherwise it raises a new alert (``monitor.alert.raised``) and the playbook runs: notifications
are queued, automatic actions run at once with actor ``monitor``, approval actions wait for
:func:`approve_action` or :func:`reject_action`. A finding that raises an open alert's severity
escalates it (``monitor.alert.escalated``): the playbook's actions for the new severity that
were not asked for yet follow. A suppressed alert swallows the findings of its device and kind
until its time is up. Every change writes a security event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from trustfleet.errors import Config, Conflict, InvalidInput, PermissionDenied
from trustfleet.monitoring import DETECTORS, SEVERITIES, Finding
from trustfleet.monitoring.alerts import continues
from trustfleet.monitoring.playbooks import Playbook, default_playbook
from trustfleet.rbac import permissions_of
from trustfleet.services._alert_actions import (
    ACTION_PERMISSION,
    MONITOR_ACTOR,
    action_event,
    alert_event,
    check_playbooks_file,
    plan_actions,
    playbook_of,
    run_action,
)
from trustfleet.services.inventory import paged
from trustfleet.services.queries import Page
from trustfleet.services.runtime import Runtime
from trustfleet.store import (
    ALERT_STATE_VALUES,
    JSON,
    AlertActionRecord,
    AlertQuery,
    AlertRecord,
    NotificationRecord,
    Transaction,
)

__all__ = [
    "MAX_SUPPRESS_S",
    "AlertChange",
    "AlertDetail",
    "acknowledge",
    "approve_action",
    "check_playbooks_file",
    "get_alert",
    "list_alerts",
    "record_findings",
    "reject_action",
    "resolve",
    "suppress",
]

logger = logging.getLogger(__name__)

MAX_SUPPRESS_S: Final = 30 * 86_400
"""Longest suppression."""
_MAX_KIND_CHARS: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertChange:
    """What one finding did.

    Attributes:
        alert_id: The alert it raised or joined.
        device_id: The device.
        kind: The alert's kind.
        change: ``raised`` (a new alert), ``joined`` (an open one) or ``suppressed``
            (swallowed by a suppressed alert).
        actions: For ``raised``: the ids of the actions the playbook asked for.
    """

    alert_id: int
    device_id: str
    kind: str
    change: Literal["raised", "joined", "suppressed"]
    actions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertDetail:
    """An alert with its actions and its notifications."""

    alert: AlertRecord
    actions: tuple[AlertActionRecord, ...]
    notifications: tuple[NotificationRecord, ...]


def _playbook(rt: Runtime) -> Playbook:
    try:
        return playbook_of(rt.settings)
    except Config as exc:  # alerts are still recorded; nothing acts beyond the built-in one
        logger.error("playbook refused, using the built-in one: %s", exc.one_line())
        return default_playbook()


def record_findings(
    rt: Runtime, findings: Sequence[Finding], *, now: datetime
) -> list[AlertChange]:
    """Store findings as alerts and run the playbook for each new alert.

    Findings of unknown devices, and findings the store cannot hold (a kind over 64
    characters, an unknown severity or detector, a naive time), are skipped and logged.
    Automatic actions run after the alerts are committed; their failures are recorded
    (``monitor.action.failed``), never raised.

    Args:
        rt: The runtime.
        findings: What the detectors found, in any order.
        now: The current time.

    Returns:
        One change per finding recorded, in time order.
    """
    if not findings:
        return []
    quiet_s = rt.settings.monitoring.alert_quiet_s
    playbook = _playbook(rt)
    changes: list[AlertChange] = []
    auto: list[int] = []
    with rt.uow.begin() as tx:
        for finding in sorted(_acceptable(findings), key=lambda f: f.at):
            change, to_run = _record_one(tx, finding, playbook, rt=rt, quiet_s=quiet_s, now=now)
            if change is not None:
                changes.append(change)
                auto.extend(to_run)
    for action_id in auto:
        run_action(rt, action_id, expect="pending", actor=MONITOR_ACTOR, now=now)
    return changes


def _acceptable(findings: Sequence[Finding]) -> list[Finding]:
    kept = []
    for f in findings:
        problem = _unacceptable(f)
        if problem is None:
            kept.append(f)
        else:
            logger.warning("finding about %r skipped: %s", f.device_id[:64], problem)
    return kept


def _unacceptable(f: Finding) -> str | None:
    """Why the store could not hold a finding (one bad finding never blocks the others)."""
    if not 0 < len(f.kind) <= _MAX_KIND_CHARS or not f.kind.isascii() or not f.kind.isprintable():
        return f"kind {f.kind[:80]!r} is not 1 to {_MAX_KIND_CHARS} printable ASCII characters"
    if f.severity not in SEVERITIES or f.detector not in DETECTORS:
        return f"severity {f.severity!r} or detector {f.detector!r} unknown"
    if f.at.tzinfo is None or not 0 < len(f.device_id) <= _MAX_KIND_CHARS:
        return "naive time or bad device id"
    return None


def _record_one(
    tx: Transaction, f: Finding, playbook: Playbook, *, rt: Runtime, quiet_s: float,
    now: datetime,
) -> tuple[AlertChange | None, list[int]]:  # fmt: skip
    if tx.devices.get(f.device_id) is None:
        logger.warning("finding %s about unknown device %r skipped", f.kind, f.device_id[:64])
        return None, []
    last = tx.alerts.latest(f.device_id, f.kind)
    change: Literal["joined", "suppressed"] | None = None
    if last is not None and last.state == "suppressed":
        until = last.suppressed_until
        change = "suppressed" if until is not None and f.at < until else None
    elif last is not None and last.state in ("open", "acknowledged"):
        change = "joined" if continues(last.last_seen, f.at, quiet_s=quiet_s) else None
    if last is not None and change is not None:
        joined = tx.alerts.join(
            last, severity=f.severity, summary=f.summary, evidence=f.evidence, at=f.at, now=now
        )
        auto: list[int] = []
        if change == "joined" and joined.severity != last.severity:
            auto = _escalate(tx, joined, playbook, rt=rt, was=last.severity, now=now)
        return AlertChange(
            alert_id=last.id, device_id=f.device_id, kind=f.kind, change=change
        ), auto
    alert = tx.alerts.add(
        device_id=f.device_id, kind=f.kind, severity=f.severity, detector=f.detector,
        summary=f.summary, evidence=f.evidence, at=f.at, now=now,
    )  # fmt: skip
    alert_event(
        tx, "monitor.alert.raised", actor=MONITOR_ACTOR, alert=alert,
        details={"severity": f.severity, "detector": f.detector, "summary": alert.summary},
        now=now,
    )  # fmt: skip
    asked, auto = plan_actions(
        tx, alert, playbook=playbook, settings=rt.settings.monitoring, now=now
    )
    raised = AlertChange(
        alert_id=alert.id, device_id=f.device_id, kind=f.kind, change="raised", actions=tuple(asked)
    )
    return raised, auto


def _escalate(
    tx: Transaction, alert: AlertRecord, playbook: Playbook, *, rt: Runtime, was: str,
    now: datetime,
) -> list[int]:  # fmt: skip
    """An open alert got a higher severity: ``monitor.alert.escalated``, and the playbook's
    actions for the new severity that were not asked for yet."""
    alert_event(
        tx, "monitor.alert.escalated", actor=MONITOR_ACTOR, alert=alert,
        details={"from": was, "to": alert.severity}, now=now,
    )  # fmt: skip
    asked = frozenset(a.action for a in tx.alert_actions.for_alert(alert.id))
    _ids, auto = plan_actions(
        tx, alert, playbook=playbook, settings=rt.settings.monitoring, now=now, skip=asked
    )
    return auto


# -- reads -------------------------------------------------------------------------------------


def _choice(value: str | None, allowed: Sequence[str], *, name: str) -> None:
    if value is not None and value not in allowed:
        raise InvalidInput(
            f"{name} {value[:32]!r} is not one of {', '.join(allowed)}",
            hint=f"give --{name} one of {', '.join(allowed)}",
            code="alert.filter",
        )


def list_alerts(
    rt: Runtime, *, state: str | None = None, device_id: str | None = None,
    kind: str | None = None, severity: str | None = None, limit: int = 50,
    cursor: str | None = None,
) -> Page[AlertRecord]:  # fmt: skip
    """A page of alerts, most recently seen first, every given filter applied.

    Raises:
        InvalidInput: A bad state, severity, limit or cursor.
    """
    _choice(state, ALERT_STATE_VALUES, name="state")
    _choice(severity, SEVERITIES, name="severity")
    query = AlertQuery(state=state, device_id=device_id, kind=kind, severity=severity)  # type: ignore[arg-type]  # checked just above
    return paged(rt, lambda tx, n, o: tx.alerts.page(query, limit=n, offset=o), limit=limit,
                 cursor=cursor)  # fmt: skip


def get_alert(rt: Runtime, alert_id: int) -> AlertDetail:
    """An alert with its actions and notifications.

    Raises:
        NotFound: No such alert (``alert.not_found``).
    """
    with rt.uow.begin(read_only=True) as tx:
        alert = tx.alerts.require(alert_id)
        return AlertDetail(
            alert=alert,
            actions=tuple(tx.alert_actions.for_alert(alert_id)),
            notifications=tuple(tx.notifications.for_alert(alert_id)),
        )


# -- lifecycle ---------------------------------------------------------------------------------


def _change_state(
    rt: Runtime, alert_id: int, *, to: str, allowed_from: tuple[str, ...], actor: str,
    now: datetime, until: datetime | None = None,
) -> AlertRecord:  # fmt: skip
    with rt.uow.begin() as tx:
        alert = tx.alerts.require(alert_id)
        if alert.state not in allowed_from:
            raise Conflict(
                f"alert {alert_id} is {alert.state}", hint=f"only {'/'.join(allowed_from)} "
                f"alerts can be {to}", code="alert.state",
            )  # fmt: skip
        changed = tx.alerts.set_state(alert_id, to, by=actor, now=now, suppressed_until=until)
        details: dict[str, JSON] = {"from": alert.state}
        if until is not None:
            details["until"] = until.isoformat()
        alert_event(tx, f"monitor.alert.{to}", actor=actor, alert=alert, details=details, now=now)
    return changed


def acknowledge(rt: Runtime, alert_id: int, *, actor: str, now: datetime) -> AlertRecord:
    """An operator has seen an open alert (``monitor.alert.acknowledged``).

    Raises:
        NotFound: No such alert.
        Conflict: It is not open (``alert.state``).
    """
    return _change_state(rt, alert_id, to="acknowledged", allowed_from=("open",), actor=actor,
                         now=now)  # fmt: skip


def resolve(rt: Runtime, alert_id: int, *, actor: str, now: datetime) -> AlertRecord:
    """Close an alert; a later finding raises a new one (``monitor.alert.resolved``).

    Raises:
        NotFound: No such alert.
        Conflict: It is resolved already.
    """
    return _change_state(
        rt, alert_id, to="resolved", allowed_from=("open", "acknowledged", "suppressed"),
        actor=actor, now=now,
    )  # fmt: skip


def suppress(
    rt: Runtime, alert_id: int, *, until: datetime, actor: str, now: datetime
) -> AlertRecord:
    """Silence an alert until a time: its device's findings of its kind join it quietly.

    Raises:
        NotFound: No such alert.
        Conflict: It is resolved.
        InvalidInput: ``until`` is not in the next :data:`MAX_SUPPRESS_S` seconds.
    """
    if not now < until <= now + timedelta(seconds=MAX_SUPPRESS_S):
        raise InvalidInput(
            "a suppression ends after now and within 30 days", code="alert.suppress.until"
        )
    return _change_state(
        rt, alert_id, to="suppressed", allowed_from=("open", "acknowledged", "suppressed"),
        actor=actor, now=now, until=until,
    )  # fmt: skip


# -- approvals ---------------------------------------------------------------------------------


def _decide(
    rt: Runtime, action_id: int, *, to: str, actor: str, role: str | None, now: datetime
) -> AlertActionRecord:
    with rt.uow.begin() as tx:
        action = tx.alert_actions.require(action_id)
        needed = ACTION_PERMISSION[action.action]
        if role is not None and needed not in permissions_of(role):
            raise PermissionDenied(
                f"{to} a {action.action} needs the permission {needed}", code="alert.approver"
            )
        if action.mode != "approval" or not tx.alert_actions.transition(
            action_id, expect="pending", state=to, now=now, by=actor
        ):
            raise Conflict(
                f"action {action_id} is {action.state}, not waiting for approval",
                code="alert.action.state",
            )
        decided = tx.alert_actions.require(action_id)
        action_event(tx, to, decided, tx.alerts.require(action.alert_id), actor=actor, now=now)
    return decided


def approve_action(
    rt: Runtime, action_id: int, *, actor: str, now: datetime, role: str | None = None
) -> AlertActionRecord:
    """Approve a pending action and do it now, as ``actor`` (``monitor.action.approved``, then
    ``done`` or ``failed``).

    Args:
        rt: The runtime.
        action_id: The action.
        actor: The approver.
        now: The current time.
        role: The approver's role when it came through the API: it must hold the action's own
            permission (``devices.revoke`` for a revoke …). None: a local operator (the CLI).

    Returns:
        The action after it ran (``done`` or ``failed``).

    Raises:
        NotFound: No such action.
        Conflict: It is not waiting for approval.
        PermissionDenied: The role lacks the action's permission.
    """
    _decide(rt, action_id, to="approved", actor=actor, role=role, now=now)
    return run_action(rt, action_id, expect="approved", actor=actor, now=now)


def reject_action(
    rt: Runtime, action_id: int, *, actor: str, now: datetime, role: str | None = None
) -> AlertActionRecord:
    """Reject a pending action (``monitor.action.rejected``); see :func:`approve_action`.

    Raises:
        NotFound: No such action.
        Conflict: It is not waiting for approval.
        PermissionDenied: The role lacks the action's permission.
    """
    return _decide(rt, action_id, to="rejected", actor=actor, role=role, now=now)
