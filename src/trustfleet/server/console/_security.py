"""Attestation and quarantine, and the security event log (filterable, paged)."""

from __future__ import annotations

from typing import Final

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trustfleet.errors import InvalidInput
from trustfleet.server.console._web import Console, Ctx
from trustfleet.services.inventory import list_events
from trustfleet.services.queries import attestation_overview

__all__ = ["security_routes"]

PAGE_SIZE: Final = 50
_MAX_TEXT: Final = 200
_OUTCOMES: Final = ("", "ok", "refused", "failed")


def security_routes(console: Console) -> list[BaseRoute]:
    """The attestation overview and the security events."""
    page = console.page

    @page("attestation.read")
    def attestation(ctx: Ctx) -> Response:
        only = ctx.query.get("quarantined") == "yes"
        rows = attestation_overview(
            ctx.rt, only_quarantined=only, limit=PAGE_SIZE, cursor=ctx.query.get("cursor") or None
        )
        return ctx.render("attestation.html", page=rows, query=ctx.query)

    @page("events.read")
    def events(ctx: Ctx) -> Response:
        q = {k: v[:_MAX_TEXT] for k, v in ctx.query.items()}
        if q.get("outcome", "") not in _OUTCOMES:
            raise InvalidInput("unknown outcome", code="console.filter")
        rows = list_events(
            ctx.rt,
            type_prefix=q.get("type") or None,
            actor=q.get("actor") or None,
            subject=q.get("subject") or None,
            outcome=q.get("outcome") or None,
            since=None,
            until=None,
            limit=PAGE_SIZE,
            cursor=q.get("cursor") or None,
        )
        return ctx.render("events.html", page=rows, query=q, outcomes=_OUTCOMES)

    return [
        Route("/attestation", attestation, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
    ]
