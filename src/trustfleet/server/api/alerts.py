"""``/alerts``: security alerts, their lifecycle, and approving the actions playbooks ask for."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from trustfleet.monitoring import Severity
from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._pagination import ItemsPage, PagingDep, page_of
from trustfleet.server.api.schemas import Rfc3339
from trustfleet.services.alerts import (
    acknowledge,
    approve_action,
    get_alert,
    list_alerts,
    reject_action,
    resolve,
    suppress,
)
from trustfleet.store import AlertActionRecord, AlertRecord, NotificationRecord
from trustfleet.store.alert_records import ActionState, AlertState

__all__ = ["AlertActionOut", "AlertDetailOut", "AlertOut", "SuppressIn", "router"]

router = APIRouter(tags=["alerts"])
AlertId = Annotated[int, Path(ge=1, le=2**53, description="The alert's id.")]
ActionId = Annotated[int, Path(ge=1, le=2**53, description="The action's id.")]


class AlertOut(BaseModel):
    """An alert: findings of one kind on one device, deduplicated."""

    id: int
    device_id: str
    kind: str
    severity: Severity
    detector: str
    state: AlertState
    summary: str
    evidence: dict[str, Any]
    findings: int
    first_seen: datetime
    last_seen: datetime
    suppressed_until: datetime | None
    updated_by: str | None
    created_at: datetime
    updated_at: datetime


class AlertActionOut(BaseModel):
    """An action a playbook asked for an alert."""

    id: int
    alert_id: int
    action: Literal["notify", "reattest", "quarantine", "revoke"]
    mode: Literal["auto", "approval"]
    state: ActionState
    decided_by: str | None
    decided_at: datetime | None
    result: str | None
    created_at: datetime


class NotificationOut(BaseModel):
    """A notification of an alert to one receiver."""

    id: int
    channel: Literal["webhook", "syslog"]
    receiver: str
    state: Literal["pending", "sent", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None


class AlertDetailOut(AlertOut):
    """An alert with its actions and notifications."""

    actions: list[AlertActionOut]
    notifications: list[NotificationOut]


class SuppressIn(BaseModel):
    """Until when the alert stays silent (at most 30 days ahead)."""

    model_config = ConfigDict(extra="forbid")
    until: Rfc3339


def _alert(a: AlertRecord) -> AlertOut:
    return AlertOut(
        id=a.id, device_id=a.device_id, kind=a.kind, severity=a.severity, detector=a.detector,
        state=a.state, summary=a.summary, evidence=dict(a.evidence), findings=a.findings,
        first_seen=a.first_seen, last_seen=a.last_seen, suppressed_until=a.suppressed_until,
        updated_by=a.updated_by, created_at=a.created_at, updated_at=a.updated_at,
    )  # fmt: skip


def _action(a: AlertActionRecord) -> AlertActionOut:
    return AlertActionOut(
        id=a.id, alert_id=a.alert_id, action=a.action, mode=a.mode, state=a.state,
        decided_by=a.decided_by, decided_at=a.decided_at, result=a.result,
        created_at=a.created_at,
    )  # fmt: skip


def _notification(n: NotificationRecord) -> NotificationOut:
    return NotificationOut(
        id=n.id, channel=n.channel, receiver=n.target, state=n.state, attempts=n.attempts,
        next_attempt_at=n.next_attempt_at, last_error=n.last_error, sent_at=n.sent_at,
    )  # fmt: skip


@router.get("/alerts", response_model=ItemsPage[AlertOut], **guarded("alerts.read"))
async def get_alerts(
    caller: CallerDep,
    paging: PagingDep,
    *,
    state: AlertState | None = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    severity: Severity | None = None,
) -> Any:
    """Alerts, most recently seen first; filtered by state, device, kind and severity."""
    page = await caller.run(
        list_alerts, caller.rt, state=state, device_id=device_id, kind=kind, severity=severity,
        limit=paging.limit, cursor=paging.cursor,
    )  # fmt: skip
    return page_of(page, _alert)


@router.get("/alerts/{alert_id}", response_model=AlertDetailOut, **guarded("alerts.read"))
async def get_one_alert(caller: CallerDep, alert_id: AlertId) -> Any:
    """One alert with the actions its playbook asked for and its notifications."""
    detail = await caller.run(get_alert, caller.rt, alert_id)
    return AlertDetailOut(
        **_alert(detail.alert).model_dump(),
        actions=[_action(a) for a in detail.actions],
        notifications=[_notification(n) for n in detail.notifications],
    )


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, **guarded("alerts.manage"))
async def post_ack(caller: CallerDep, alert_id: AlertId) -> Any:
    """Acknowledge an open alert."""
    alert = await caller.run(
        acknowledge, caller.rt, alert_id, actor=caller.principal.actor, now=caller.clock()
    )
    return _alert(alert)


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut, **guarded("alerts.manage"))
async def post_resolve(caller: CallerDep, alert_id: AlertId) -> Any:
    """Resolve an alert; a later finding raises a new one."""
    alert = await caller.run(
        resolve, caller.rt, alert_id, actor=caller.principal.actor, now=caller.clock()
    )
    return _alert(alert)


@router.post("/alerts/{alert_id}/suppress", response_model=AlertOut, **guarded("alerts.manage"))
async def post_suppress(caller: CallerDep, alert_id: AlertId, body: SuppressIn) -> Any:
    """Silence an alert until a time: its device's findings of its kind join it quietly."""
    alert = await caller.run(
        suppress, caller.rt, alert_id, until=body.until, actor=caller.principal.actor,
        now=caller.clock(),
    )  # fmt: skip
    return _alert(alert)


@router.post(
    "/alerts/actions/{action_id}/approve",
    response_model=AlertActionOut,
    **guarded("alerts.manage"),
)
async def post_approve(caller: CallerDep, action_id: ActionId) -> Any:
    """Approve a pending action and do it now; the caller's role needs the action's own
    permission too (``devices.revoke`` for a revoke …)."""
    action = await caller.run(
        approve_action, caller.rt, action_id, actor=caller.principal.actor, now=caller.clock(),
        role=caller.principal.role,
    )  # fmt: skip
    return _action(action)


@router.post(
    "/alerts/actions/{action_id}/reject",
    response_model=AlertActionOut,
    **guarded("alerts.manage"),
)
async def post_reject(caller: CallerDep, action_id: ActionId) -> Any:
    """Reject a pending action."""
    action = await caller.run(
        reject_action, caller.rt, action_id, actor=caller.principal.actor, now=caller.clock(),
        role=caller.principal.role,
    )  # fmt: skip
    return _action(action)
