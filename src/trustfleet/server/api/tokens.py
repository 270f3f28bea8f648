"""``/tokens``: API tokens for automation (one's own; everyone's with users.read/manage)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from trustfleet import rbac
from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._device_lists import PathId
from trustfleet.server.api._pagination import ItemsPage, PagingDep, page_of
from trustfleet.server.api.schemas import TokenCreatedOut, TokenIn, TokenOut
from trustfleet.services import api_tokens as service
from trustfleet.store import ApiTokenRecord

__all__ = ["router"]

router = APIRouter(tags=["tokens"])


def _present(rec: ApiTokenRecord) -> TokenOut:
    return TokenOut(
        id=rec.id, owner=rec.owner, name=rec.name, role=rec.role, created_at=rec.created_at,
        expires_at=rec.expires_at, revoked_at=rec.revoked_at, last_used_at=rec.last_used_at,
    )  # fmt: skip


@router.get("/tokens", response_model=ItemsPage[TokenOut], **guarded("tokens.own"))
async def get_tokens(caller: CallerDep, paging: PagingDep) -> Any:
    """The caller's tokens; everyone's for a role with users.read."""
    p = caller.principal
    owner = None if rbac.allowed(p.role, "users.read") else p.login
    page = await caller.run(
        service.list_tokens, caller.rt, owner=owner, limit=paging.limit, cursor=paging.cursor
    )
    return page_of(page, _present)


@router.post("/tokens", response_model=TokenCreatedOut, status_code=201, **guarded("tokens.own"))
async def post_token(caller: CallerDep, body: TokenIn) -> Any:
    """Create a token for the caller (its role by default); the secret is shown only now."""
    p = caller.principal
    rec, secret = await caller.run(
        service.create_token, caller.rt, owner=p.login, name=body.name,
        role=body.role or p.role, ttl_s=body.ttl_s, now=caller.clock(),
    )  # fmt: skip
    return TokenCreatedOut(token=_present(rec), secret=secret)


@router.delete("/tokens/{token_id}", response_model=TokenOut, **guarded("tokens.own"))
async def delete_token(caller: CallerDep, token_id: PathId) -> Any:
    """Revoke a token: one's own; anyone's with users.manage."""
    p = caller.principal
    owner = None if rbac.allowed(p.role, "users.manage") else p.login
    rec = await caller.run(
        service.revoke_token, caller.rt, token_id, owner=owner, now=caller.clock()
    )
    return _present(rec)
