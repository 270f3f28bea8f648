"""Devices: the inventory (filters, search, paging), a device's page, and its actions.

An action (revoke, quarantine, lift, re-attest, ping) is two steps: a GET confirmation page
that says what will happen, and its form's POST (CSRF token, the action's own permission).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from markupsafe import Markup
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trustfleet import rbac
from trustfleet.errors import InvalidInput, NotFound
from trustfleet.server import publish_challenge
from trustfleet.server.console._charts import line_chart
from trustfleet.server.console._web import Console, Ctx, see_other
from trustfleet.services import inventory
from trustfleet.services.attestation import (
    challenge_message,
    issue_challenge,
    lift_quarantine,
    quarantine,
)
from trustfleet.services.commands import list_device_commands, send_device_command
from trustfleet.services.queries import Page, attestation_status, device_detail
from trustfleet.services.revocation import revoke_device
from trustfleet.store import SecurityEventRecord, TelemetryRecord

__all__ = ["device_routes", "inventory_filter"]

PAGE_SIZE: Final = 25
_DETAIL_ROWS: Final = 20
_REVOKE_REASONS: Final = ("keyCompromise", "superseded", "cessationOfOperation", "unspecified")
_YES_NO: Final = {"yes": True, "no": False, "": None}
_ATTESTATION: Final = ("ok", "failed", "none")
_MAX_TEXT: Final = 200
_CHART_POINTS: Final = 120
_CHARTED: Final = ("temperature_c", "cpu_pct")


def _choice(query: Mapping[str, str], name: str, allowed: Mapping[str, bool | None]) -> bool | None:
    value = query.get(name, "")
    if value not in allowed:
        raise InvalidInput(f"'{name}' must be yes or no", code="console.filter")
    return allowed[value]


def _text(query: Mapping[str, str], name: str) -> str | None:
    return query.get(name, "")[:_MAX_TEXT] or None


def telemetry_chart(rows: Sequence[TelemetryRecord]) -> Markup:
    """A line of the first charted metric the device reports, oldest point first."""
    ordered = sorted(rows, key=lambda r: r.received_at)
    name = next((n for n in _CHARTED if any(n in r.metrics for r in ordered)), _CHARTED[0])
    series = [
        (r.received_at.strftime("%H:%M:%S"), float(value))
        for r in ordered
        if isinstance(value := r.metrics.get(name), int | float)
    ]
    return line_chart(series, title=name)


def inventory_filter(query: Mapping[str, str]) -> inventory.InventoryFilter:
    """The inventory's filters from the list page's GET form.

    Raises:
        InvalidInput: A filter has a value the form never offers (code ``console.filter``).
    """
    attestation = query.get("attestation", "")
    if attestation and attestation not in _ATTESTATION:
        raise InvalidInput("'attestation' must be ok, failed or none", code="console.filter")
    return inventory.InventoryFilter(
        state=_text(query, "state"),
        model=_text(query, "model"),
        firmware_version=_text(query, "firmware"),
        online=_choice(query, "online", _YES_NO),
        quarantined=_choice(query, "quarantined", _YES_NO),
        attestation=attestation or None,  # type: ignore[arg-type]  # checked just above
        cert_expires_before=None,
        search=_text(query, "q"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Action:
    permission: rbac.Permission
    title: str
    explain: str
    run: Callable[[Ctx, str], str]  # returns the notice shown after it
    when: Callable[[str, bool], bool]  # offered for (device state, quarantined)


def _live(state: str, _quarantined: bool) -> bool:
    return state == "enrolled"


def _revoke(ctx: Ctx, device_id: str) -> str:
    reason = ctx.form.get("reason", "")
    if reason not in _REVOKE_REASONS:
        raise InvalidInput("choose a revocation reason", code="console.form")
    actor = ctx.session.principal.actor
    revoke_device(ctx.rt, device_id, reason=reason, actor=actor, now=ctx.now)
    return "revoked"


def _quarantine(ctx: Ctx, device_id: str) -> str:
    reason = ctx.form.get("reason", "")[:_MAX_TEXT] or "operator decision"
    actor = ctx.session.principal.actor
    quarantine(ctx.rt, device_id, reason=reason, actor=actor, now=ctx.now)
    return "quarantined"


def _lift(ctx: Ctx, device_id: str) -> str:
    lift_quarantine(ctx.rt, device_id, actor=ctx.session.principal.actor, now=ctx.now)
    return "lifted"


def _attest(ctx: Ctx, device_id: str) -> str:
    challenge = issue_challenge(ctx.rt, device_id=device_id, now=ctx.now, trigger="operator")
    _topic, payload = challenge_message(device_id, challenge)
    publish_challenge(ctx.rt.settings, device_id, payload)
    return "attest"


def _ping(ctx: Ctx, device_id: str) -> str:
    send_device_command(ctx.rt, device_id, "ping", {}, now=ctx.now)
    return "ping"


ACTIONS: Final[dict[str, _Action]] = {
    "revoke": _Action(
        permission="devices.revoke",
        title="Revoke",
        explain="Every valid certificate of the device is revoked (CRL and OCSP), its broker "
        "connection is cut and reconnects are refused. This cannot be undone.",
        run=_revoke,
        when=lambda state, _q: state not in ("revoked", "decommissioned"),
    ),
    "quarantine": _Action(
        permission="devices.quarantine",
        title="Quarantine",
        explain="The device's broker access shrinks to its update and attestation topics.",
        run=_quarantine,
        when=lambda state, q: state == "enrolled" and not q,
    ),
    "lift": _Action(
        permission="devices.quarantine",
        title="Lift the quarantine",
        explain="The device's broker access is whole again.",
        run=_lift,
        when=lambda _state, q: q,
    ),
    "attest": _Action(
        permission="devices.attest",
        title="Re-attest",
        explain="The device is sent a fresh TPM challenge; its verdict appears on its page.",
        run=_attest,
        when=_live,
    ),
    "ping": _Action(
        permission="devices.command",
        title="Ping",
        explain="The device is asked to answer a ping; the result appears under Commands.",
        run=_ping,
        when=_live,
    ),
}


def _devices(ctx: Ctx) -> Response:
    rows = inventory.list_inventory(
        ctx.rt,
        filters=inventory_filter(ctx.query),
        sort=ctx.query.get("sort") or "id",
        limit=PAGE_SIZE,
        cursor=ctx.query.get("cursor") or None,
        now=ctx.now,
    )
    return ctx.render("devices.html", page=rows, query=ctx.query, sorts=inventory.INVENTORY_SORTS)


def _updates(ctx: Ctx, device_id: str) -> Page[SecurityEventRecord]:
    """The device's update events (``ota.update.<state>``, each naming its campaign)."""
    return inventory.list_events(
        ctx.rt, type_prefix="ota.", actor=None, subject=f"device:{device_id}", outcome=None,
        since=None, until=None, limit=_DETAIL_ROWS, cursor=None,
    )  # fmt: skip


def _decommission_of(ctx: Ctx, device_id: str) -> Any:
    """The device's decommission (a flagged ``unverified`` one shows), or None."""
    from trustfleet.services.decommission import get_decommission  # noqa: PLC0415

    try:
        return get_decommission(ctx.rt, device_id)
    except NotFound:
        return None


def _device(ctx: Ctx) -> Response:
    device_id = ctx.path["device_id"]
    telemetry = inventory.device_telemetry(
        ctx.rt, device_id, since=None, until=None, limit=_CHART_POINTS, cursor=None
    ).items
    values: dict[str, Any] = {
        "detail": device_detail(ctx.rt, device_id),
        "attestation": attestation_status(ctx.rt, device_id, limit=_DETAIL_ROWS),
        "events": inventory.device_events(ctx.rt, device_id, limit=_DETAIL_ROWS, cursor=None),
        "updates": _updates(ctx, device_id),
        "telemetry": telemetry,
        "commands": list_device_commands(ctx.rt, device_id, limit=_DETAIL_ROWS, cursor=None),
        "actions": ACTIONS,
        "decommission": _decommission_of(ctx, device_id),
        "chart": telemetry_chart(telemetry),
        "done": ctx.query.get("done"),
    }
    return ctx.render("device.html", **values)


def device_routes(console: Console) -> list[BaseRoute]:
    """The inventory, a device's page, and one confirm + POST route per action."""
    page = console.page

    def confirm_route(name: str, action: _Action) -> list[BaseRoute]:
        @page(action.permission)
        def confirm(ctx: Ctx) -> Response:
            detail = device_detail(ctx.rt, ctx.path["device_id"])
            return ctx.render(
                "confirm.html", device=detail.device, name=name, action=action,
                reasons=_REVOKE_REASONS,
            )  # fmt: skip

        @page(action.permission)
        def run(ctx: Ctx) -> Response:
            device_id = ctx.path["device_id"]
            if not device_id:
                raise NotFound("no device", code="device.not_found")
            done = action.run(ctx, device_id)
            return see_other(f"/console/devices/{quote(device_id, safe='')}?done={done}")

        path = "/devices/{device_id}/" + name
        return [Route(path, confirm, methods=["GET"]), Route(path, run, methods=["POST"])]

    routes: list[BaseRoute] = [
        Route("/devices", page("fleet.read")(_devices), methods=["GET"]),
        Route("/devices/{device_id}", page("fleet.read")(_device), methods=["GET"]),
    ]
    for name, action in ACTIONS.items():
        routes += confirm_route(name, action)
    return routes
