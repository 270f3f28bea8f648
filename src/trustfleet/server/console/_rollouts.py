"""Releases and campaigns: lists, a campaign's live progress, pause/resume/abort/retry.

A campaign's page shows its waves; static/console.js polls ``/console/campaigns/<id>.json``
every two seconds and updates the counts in place while the campaign runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from trustfleet.server.console._web import Console, Ctx, see_other
from trustfleet.services import campaigns
from trustfleet.services.campaigns import CampaignStatus, campaign_status
from trustfleet.services.queries import list_campaigns, list_releases
from trustfleet.store import CampaignRecord

__all__ = ["progress_doc", "rollout_routes"]

PAGE_SIZE: Final = 25
_STATUS_DEVICES: Final = 200
_CONTROLS: Final[dict[str, Callable[..., CampaignRecord]]] = {
    "pause": campaigns.pause,
    "resume": campaigns.resume,
    "abort": campaigns.abort,
    "retry": campaigns.retry,
}


def progress_doc(status: CampaignStatus) -> dict[str, Any]:
    """A campaign's progress as JSON for the page's poller (counts only, no device data)."""
    counts = {name: getattr(status, name) for name in ("finished", "failures", "failure_rate")}
    waves = [
        {"wave": w.wave, "percent": w.percent, "size": w.size, "states": dict(w.states)}
        for w in status.waves
    ]
    campaign = status.campaign
    state = {"state": campaign.state, "current_wave": campaign.current_wave}
    return {**state, **counts, "states": dict(status.states), "waves": waves}


def _cursor(ctx: Ctx) -> str | None:
    return ctx.query.get("cursor") or None


def _releases(ctx: Ctx) -> Response:
    rows = list_releases(ctx.rt, limit=PAGE_SIZE, cursor=_cursor(ctx))
    return ctx.render("releases.html", page=rows, query=ctx.query)


def _campaign_list(ctx: Ctx) -> Response:
    rows = list_campaigns(ctx.rt, limit=PAGE_SIZE, cursor=_cursor(ctx))
    return ctx.render("campaigns.html", page=rows, query=ctx.query)


def _campaign(ctx: Ctx) -> Response:
    status = campaign_status(ctx.rt, ctx.path["campaign_id"], limit=_STATUS_DEVICES)
    return ctx.render(
        "campaign.html", status=status, controls=_CONTROLS, done=ctx.query.get("done")
    )


def _progress(ctx: Ctx) -> Response:
    status = campaign_status(ctx.rt, ctx.path["campaign_id"], limit=1)
    return JSONResponse(progress_doc(status))


def rollout_routes(console: Console) -> list[BaseRoute]:
    """Releases, campaigns, a campaign's page and JSON progress, and its controls."""
    page = console.page

    def control(name: str, step: Callable[..., CampaignRecord]) -> Route:
        @page("campaigns.manage")
        def run(ctx: Ctx) -> Response:
            campaign_id = ctx.path["campaign_id"]
            now: datetime = ctx.now
            step(ctx.rt, campaign_id, now=now, actor=ctx.session.principal.actor)
            return see_other(f"/console/campaigns/{quote(campaign_id, safe='')}?done={name}")

        return Route("/campaigns/{campaign_id}/" + name, run, methods=["POST"])

    return [
        Route("/releases", page("releases.read")(_releases), methods=["GET"]),
        Route("/campaigns", page("campaigns.read")(_campaign_list), methods=["GET"]),
        Route("/campaigns/{campaign_id}.json", page("campaigns.read")(_progress), methods=["GET"]),
        Route("/campaigns/{campaign_id}", page("campaigns.read")(_campaign), methods=["GET"]),
        *(control(name, step) for name, step in _CONTROLS.items()),
    ]
