"""``/events``: the security event log, every subject (the audit log's entries)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._pagination import ItemsPage, PagingDep, page_of
from trustfleet.server.api.schemas import EventOut, Rfc3339
from trustfleet.services.inventory import list_events
from trustfleet.store import SecurityEventRecord

__all__ = ["present_event", "router"]

router = APIRouter(tags=["events"])
_Text = Annotated[str | None, Query(max_length=128)]


def present_event(rec: SecurityEventRecord) -> EventOut:
    """A security event as the API shows it."""
    return EventOut(
        id=rec.id, occurred_at=rec.occurred_at, type=rec.type, actor=rec.actor,
        subject=rec.subject, outcome=rec.outcome, origin=rec.origin, details=dict(rec.details),
    )  # fmt: skip


@router.get("/events", response_model=ItemsPage[EventOut], **guarded("events.read"))
async def get_events(
    caller: CallerDep,
    paging: PagingDep,
    *,
    type: Annotated[  # the API's name for the filter
        str | None, Query(max_length=64, description="Event types starting with this.")
    ] = None,
    actor: _Text = None,
    subject: _Text = None,
    outcome: Literal["ok", "refused"] | None = None,
    since: Rfc3339 | None = None,
    until: Rfc3339 | None = None,
    sort: Literal["-id", "id"] = "-id",
) -> Any:
    """Security events, newest first by default; filtered by type prefix, actor, subject,
    outcome and time."""
    page = await caller.run(
        list_events, caller.rt, type_prefix=type, actor=actor, subject=subject,
        outcome=outcome, since=since, until=until, sort=sort, limit=paging.limit,
        cursor=paging.cursor,
    )  # fmt: skip
    return page_of(page, present_event)
