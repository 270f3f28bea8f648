"""``/campaigns``: staged rollouts, their waves and devices (docs/campaigns.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._device_lists import PathId
from trustfleet.server.api._pagination import ItemsPage, PagingDep, page_of
from trustfleet.server.api.schemas import (
    CampaignDeviceOut,
    CampaignIn,
    CampaignOut,
    CampaignStatusOut,
    WaveOut,
)
from trustfleet.services import campaigns as service
from trustfleet.services.queries import campaign_devices, list_campaigns
from trustfleet.store import CampaignDeviceRecord, CampaignRecord

__all__ = ["present_campaign", "router"]

router = APIRouter(tags=["campaigns"])
CampaignId = PathId
_ACTION_DOCS = {
    "pause": "Pause a running or halted campaign: no new device is notified.",
    "resume": "Resume a paused or halted campaign.",
    "abort": "End a campaign for good (no device is notified again).",
    "retry": "Retry the failed devices of a campaign.",
}
_ACTIONS: dict[str, Callable[..., CampaignRecord]] = {
    "pause": service.pause,
    "resume": service.resume,
    "abort": service.abort,
    "retry": service.retry,
}


def present_campaign(rec: CampaignRecord) -> CampaignOut:
    """A campaign as the API shows it."""
    return CampaignOut(
        id=rec.id, model=rec.model, version=rec.version, waves=list(rec.waves),
        max_failure_rate=rec.max_failure_rate, device_timeout_s=rec.device_timeout_s,
        state=rec.state, current_wave=rec.current_wave, reason=rec.reason,
        created_at=rec.created_at, updated_at=rec.updated_at,
    )  # fmt: skip


def _present_device(rec: CampaignDeviceRecord) -> CampaignDeviceOut:
    return CampaignDeviceOut(
        device_id=rec.device_id, wave=rec.wave, state=rec.state, bytes=rec.bytes,
        total=rec.total, delta=rec.delta, reason=rec.reason, code=rec.code,
        notified_at=rec.notified_at, updated_at=rec.updated_at,
    )  # fmt: skip


@router.get("/campaigns", response_model=ItemsPage[CampaignOut], **guarded("campaigns.read"))
async def get_campaigns(caller: CallerDep, paging: PagingDep) -> Any:
    """Campaigns, newest first."""
    page = await caller.run(list_campaigns, caller.rt, limit=paging.limit, cursor=paging.cursor)
    return page_of(page, present_campaign)


@router.post(
    "/campaigns", response_model=CampaignOut, status_code=201, **guarded("campaigns.manage")
)
async def post_campaign(caller: CallerDep, body: CampaignIn) -> Any:
    """Create a running campaign, as ``trustfleet campaign create``."""
    rec = await caller.run(
        service.create_campaign, caller.rt, version=body.version, model=body.model,
        devices=body.devices, waves=body.waves, max_failure_rate=body.max_failure_rate,
        device_timeout_s=body.device_timeout_s, now=caller.clock(),
        actor=caller.principal.actor,
    )  # fmt: skip
    return present_campaign(rec)


@router.get(
    "/campaigns/{campaign_id}", response_model=CampaignStatusOut, **guarded("campaigns.read")
)
async def get_campaign(caller: CallerDep, campaign_id: CampaignId) -> Any:
    """A campaign with its waves' progress."""
    status = await caller.run(service.campaign_status, caller.rt, campaign_id, limit=1)
    waves = [WaveOut(wave=w.wave, devices=w.size, states=dict(w.states)) for w in status.waves]
    return CampaignStatusOut(
        campaign=present_campaign(status.campaign), waves=waves, totals=dict(status.states)
    )


@router.get(
    "/campaigns/{campaign_id}/devices",
    response_model=ItemsPage[CampaignDeviceOut],
    **guarded("campaigns.read"),
)
async def get_campaign_devices(
    caller: CallerDep, campaign_id: CampaignId, paging: PagingDep
) -> Any:
    """A campaign's devices by wave and id, with their update's state."""
    page = await caller.run(
        campaign_devices, caller.rt, campaign_id, limit=paging.limit, cursor=paging.cursor
    )
    return page_of(page, _present_device)


def _action_route(action: str, fn: Callable[..., CampaignRecord]) -> None:
    async def post_action(caller: CallerDep, campaign_id: CampaignId) -> Any:
        rec = await caller.run(
            fn, caller.rt, campaign_id, now=caller.clock(), actor=caller.principal.actor
        )
        return present_campaign(rec)

    post_action.__name__ = f"post_campaign_{action}"
    router.add_api_route(
        f"/campaigns/{{campaign_id}}/{action}",
        post_action,
        methods=["POST"],
        response_model=CampaignOut,
        summary=f"{action.capitalize()} a campaign",
        description=_ACTION_DOCS[action],
        **guarded("campaigns.manage"),
    )


for _action, _fn in _ACTIONS.items():
    _action_route(_action, _fn)
