"""``/releases``: published firmware releases; publishing a staged build (docs/ota.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._pagination import ItemsPage, PagingDep, page_of
from trustfleet.server.api.schemas import MODEL_PATTERN, VERSION_PATTERN, ReleaseIn, ReleaseOut
from trustfleet.services.ota import publish_release
from trustfleet.services.queries import list_releases, published_release
from trustfleet.store import ReleaseRecord

__all__ = ["present_release", "router"]

router = APIRouter(tags=["releases"])


def present_release(rec: ReleaseRecord) -> ReleaseOut:
    """A release as the API shows it (the manifest stays in the TUF repository)."""
    return ReleaseOut(
        model=rec.model, version=rec.version, min_version=rec.min_version,
        image_length=rec.image_length, targets_version=rec.targets_version,
        published_at=rec.published_at,
    )  # fmt: skip


@router.get("/releases", response_model=ItemsPage[ReleaseOut], **guarded("releases.read"))
async def get_releases(
    caller: CallerDep,
    paging: PagingDep,
    model: Annotated[
        str | None, Query(pattern=MODEL_PATTERN, description="Only this model.")
    ] = None,
) -> Any:
    """Published releases, newest version first."""
    page = await caller.run(
        list_releases, caller.rt, model=model, limit=paging.limit, cursor=paging.cursor
    )
    return page_of(page, present_release)


@router.get("/releases/{model}/{version}", response_model=ReleaseOut, **guarded("releases.read"))
async def get_release(
    caller: CallerDep,
    model: Annotated[str, Path(pattern=MODEL_PATTERN)],
    version: Annotated[str, Path(pattern=VERSION_PATTERN)],
) -> Any:
    """One published release."""
    rec = await caller.run(published_release, caller.rt, model=model, version=version)
    return present_release(rec)


@router.post("/releases", response_model=ReleaseOut, status_code=201, **guarded("releases.publish"))
async def post_release(caller: CallerDep, body: ReleaseIn) -> Any:
    """Publish a staged build (``trustfleet release build`` staged it), as ``release publish``."""
    rec = await caller.run(
        publish_release, caller.rt, model=body.model, version=body.version, now=caller.clock()
    )
    return present_release(rec)
