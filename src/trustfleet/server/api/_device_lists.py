"""Routes that page through one device's history (certificates, events, verdicts, commands)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from trustfleet import rbac
from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._pagination import PagingDep, page_of

__all__ = ["DeviceId", "PathId", "device_list_route"]

DeviceId = Annotated[str, Path(pattern=r"^[a-z0-9-]{8,64}$", description="The device id.")]
PathId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
"""A campaign, command or token id."""


def device_list_route(  # one route's whole description
    router: APIRouter,
    kind: str,
    *,
    response_model: type[BaseModel],
    service: Callable[..., Any],
    present: Callable[[Any], BaseModel],
    permission: rbac.Permission,
    doc: str,
) -> None:
    """Add ``GET /devices/{device_id}/<kind>``: one page of ``service(rt, device_id, …)``."""

    async def endpoint(caller: CallerDep, device_id: DeviceId, paging: PagingDep) -> Any:
        page = await caller.run(
            service, caller.rt, device_id, limit=paging.limit, cursor=paging.cursor
        )
        return page_of(page, present)

    endpoint.__name__ = f"get_device_{kind}"
    router.add_api_route(
        f"/devices/{{device_id}}/{kind}", endpoint, methods=["GET"],
        response_model=response_model, description=doc, **guarded(permission),
    )  # fmt: skip
