"""Alerts: the list (filtered, paged), one alert with its actions, and the operator's buttons
(acknowledge, resolve, approve or reject an action)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trustfleet.errors import InvalidInput
from trustfleet.monitoring import SEVERITIES
from trustfleet.server.console._web import Console, Ctx, see_other
from trustfleet.services.alerts import (
    acknowledge,
    approve_action,
    get_alert,
    list_alerts,
    reject_action,
    resolve,
)
from trustfleet.store import ALERT_STATE_VALUES

__all__ = ["alert_routes"]

PAGE_SIZE: Final = 50
_MAX_TEXT: Final = 64
_SEVERITIES: Final = ("", *SEVERITIES)  # "": any


def _number(ctx: Ctx, key: str) -> int:
    text = ctx.path.get(key, "")
    if not text.isdigit() or len(text) > 15:
        raise InvalidInput(f"not an id: {text[:20]!r}", code="console.id")
    return int(text)


def _alerts(ctx: Ctx) -> Response:
    q = {k: v[:_MAX_TEXT] for k, v in ctx.query.items()}
    if (
        q.get("state", "") not in ("", *ALERT_STATE_VALUES)
        or q.get("severity", "") not in _SEVERITIES
    ):
        raise InvalidInput("unknown filter value", code="console.filter")
    rows = list_alerts(
        ctx.rt, state=q.get("state") or None, device_id=q.get("device") or None,
        kind=q.get("kind") or None, severity=q.get("severity") or None, limit=PAGE_SIZE,
        cursor=q.get("cursor") or None,
    )  # fmt: skip
    return ctx.render(
        "alerts.html", page=rows, query=q, states=("", *ALERT_STATE_VALUES), severities=_SEVERITIES
    )


def _alert(ctx: Ctx) -> Response:
    detail = get_alert(ctx.rt, _number(ctx, "alert_id"))
    return ctx.render("alert.html", detail=detail, done=ctx.query.get("done", "")[:_MAX_TEXT])


def _on_alert(change: Callable[..., object], done: str) -> Callable[[Ctx], Response]:
    def run(ctx: Ctx) -> Response:
        alert_id = _number(ctx, "alert_id")
        change(ctx.rt, alert_id, actor=ctx.session.principal.actor, now=ctx.now)
        return see_other(f"/console/alerts/{alert_id}?done={done}")

    return run


def _on_action(decide: Callable[..., object], done: str) -> Callable[[Ctx], Response]:
    def run(ctx: Ctx) -> Response:
        action_id = _number(ctx, "action_id")
        principal = ctx.session.principal
        decide(ctx.rt, action_id, actor=principal.actor, now=ctx.now, role=principal.role)
        alert_id = ctx.form.get("alert", "")
        back = f"/console/alerts/{alert_id}" if alert_id.isdigit() else "/console/alerts"
        return see_other(f"{back}?done={done}")

    return run


def alert_routes(console: Console) -> list[BaseRoute]:
    """The alert pages and their POST routes."""
    page = console.page
    manage = page("alerts.manage")
    return [
        Route("/alerts", page("alerts.read")(_alerts), methods=["GET"]),
        Route("/alerts/{alert_id}", page("alerts.read")(_alert), methods=["GET"]),
        Route("/alerts/{alert_id}/ack", manage(_on_alert(acknowledge, "ack")), methods=["POST"]),
        Route(
            "/alerts/{alert_id}/resolve", manage(_on_alert(resolve, "resolved")), methods=["POST"]
        ),
        Route(
            "/alerts/actions/{action_id}/approve",
            manage(_on_action(approve_action, "approved")),
            methods=["POST"],
        ),
        Route(
            "/alerts/actions/{action_id}/reject",
            manage(_on_action(reject_action, "rejected")),
            methods=["POST"],
        ),
    ]
