"""The overview: the fleet at a glance (``services.inventory.fleet_summary``) with its charts."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trustfleet.server.console._charts import bar_chart
from trustfleet.server.console._web import Console, Ctx
from trustfleet.services.inventory import HourCount, fleet_summary

__all__ = ["overview_routes"]


def _hours(counts: Sequence[HourCount]) -> list[tuple[str, float]]:
    return [(f"{c.start:%H:00} UTC", float(c.count)) for c in counts]


def overview_routes(console: Console) -> list[BaseRoute]:
    """``/console/``: counts by state, firmware, attestation, online; events; 24 h charts."""

    @console.page("fleet.read")
    def overview(ctx: Ctx) -> Response:
        summary = fleet_summary(ctx.rt, now=ctx.now)
        return ctx.render(
            "overview.html",
            summary=summary,
            telemetry_chart=bar_chart(_hours(summary.telemetry_per_hour), title="telemetry"),
            enrollment_chart=bar_chart(_hours(summary.enrollments_per_hour), title="enrollments"),
        )

    return [Route("/", overview, methods=["GET"])]
