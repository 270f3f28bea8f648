"""The overview: the fleet at a glance (``services.inventory.fleet_summary``) with its charts."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trustfleet.server.console._web import Console, Ctx
from trustfleet.services.inventory import fleet_summary

__all__ = ["overview_routes"]


def overview_routes(console: Console) -> list[BaseRoute]:
    """``/console/``: counts by state, firmware, attestation, online; events; 24 h charts."""

    @console.page("fleet.read")
    def overview(ctx: Ctx) -> Response:
        return ctx.render("overview.html", summary=fleet_summary(ctx.rt, now=ctx.now))

    return [Route("/", overview, methods=["GET"])]
