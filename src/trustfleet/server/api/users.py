"""``/me`` and ``/users``: the caller, and operator accounts with their roles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from trustfleet import rbac
from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._pagination import ItemsPage, PagingDep, page_of
from trustfleet.server.api.schemas import (
    LOGIN_PATTERN,
    MeOut,
    OperatorCreatedOut,
    OperatorIn,
    OperatorOut,
    RoleIn,
)
from trustfleet.services import operators as service
from trustfleet.store import OperatorRecord

__all__ = ["present_operator", "router"]

router = APIRouter(tags=["users"])
Login = Annotated[str, Path(pattern=LOGIN_PATTERN)]


def present_operator(rec: OperatorRecord) -> OperatorOut:
    """An operator as the API shows it (never a secret)."""
    return OperatorOut(
        login=rec.login, role=rec.role, must_change_password=rec.must_change_password,
        totp_enabled=rec.totp_enabled, passkeys=rec.passkeys,
        disabled=rec.disabled_at is not None, created_at=rec.created_at,
        last_login_at=rec.last_login_at,
    )  # fmt: skip


@router.get("/me", response_model=MeOut, **guarded("tokens.own"))
async def get_me(caller: CallerDep) -> Any:
    """The caller: login, role, how authenticated, and the role's permissions."""
    p = caller.principal
    return MeOut(
        login=p.login, role=p.role, via=p.via, token_id=p.token_id, actor=p.actor,
        permissions=sorted(rbac.permissions_of(p.role)),
    )  # fmt: skip


@router.get("/users", response_model=ItemsPage[OperatorOut], **guarded("users.read"))
async def get_users(caller: CallerDep, paging: PagingDep) -> Any:
    """Operator accounts."""
    page = await caller.run(
        service.list_operators, caller.rt, limit=paging.limit, cursor=paging.cursor
    )
    return page_of(page, present_operator)


@router.post(
    "/users", response_model=OperatorCreatedOut, status_code=201, **guarded("users.manage")
)
async def post_user(caller: CallerDep, body: OperatorIn) -> Any:
    """Add an operator; without a password, a one-time one is returned (only now)."""
    rec, one_time = await caller.run(
        service.add_operator, caller.rt, login=body.login, role=body.role,
        password=body.password, now=caller.clock(),
    )  # fmt: skip
    return OperatorCreatedOut(operator=present_operator(rec), one_time_password=one_time)


@router.get("/users/{login}", response_model=OperatorOut, **guarded("users.read"))
async def get_user(caller: CallerDep, login: Login) -> Any:
    """One operator account."""
    return present_operator(await caller.run(service.get_operator, caller.rt, login))


@router.post("/users/{login}/disable", response_model=OperatorOut, **guarded("users.manage"))
async def post_disable(caller: CallerDep, login: Login) -> Any:
    """Disable an operator: its sessions end, its tokens stop working."""
    rec = await caller.run(service.disable_operator, caller.rt, login, now=caller.clock())
    return present_operator(rec)


@router.post("/users/{login}/enable", response_model=OperatorOut, **guarded("users.manage"))
async def post_enable(caller: CallerDep, login: Login) -> Any:
    """Enable a disabled operator."""
    rec = await caller.run(service.enable_operator, caller.rt, login, now=caller.clock())
    return present_operator(rec)


@router.post("/users/{login}/reset-mfa", response_model=OperatorOut, **guarded("users.manage"))
async def post_reset_mfa(caller: CallerDep, login: Login) -> Any:
    """Remove an operator's TOTP and passkeys (it enrolls again at its next login)."""
    rec = await caller.run(service.reset_mfa, caller.rt, login, now=caller.clock())
    return present_operator(rec)


@router.put("/users/{login}/role", response_model=OperatorOut, **guarded("users.manage"))
async def put_role(caller: CallerDep, login: Login, body: RoleIn) -> Any:
    """Change an operator's role."""
    rec = await caller.run(service.set_role, caller.rt, login, body.role, now=caller.clock())
    return present_operator(rec)
