"""Operators and API tokens: one's own tokens (create shows the secret once, revoke), and for
an admin the operators (add with a one-time password, disable, enable, reset MFA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from trustfleet import rbac
from trustfleet.errors import InvalidInput
from trustfleet.server.console._web import Console, Ctx, see_other
from trustfleet.services import operators
from trustfleet.services.api_tokens import create_token, list_tokens, revoke_token
from trustfleet.store import OperatorRecord

__all__ = ["user_routes"]

PAGE_SIZE: Final = 50
TOKEN_TTLS_S: Final = {"1 day": 86_400, "30 days": 2_592_000, "90 days": 7_776_000}
_MAX_NAME: Final = 64
_OPERATOR_STEPS: Final[dict[str, Callable[..., OperatorRecord]]] = {
    "disable": operators.disable_operator,
    "enable": operators.enable_operator,
    "reset-mfa": operators.reset_mfa,
}


def _name(ctx: Ctx, field: str) -> str:
    value = ctx.form.get(field, "").strip()
    if not value or len(value) > _MAX_NAME:
        raise InvalidInput(f"'{field}' is missing or too long", code="console.form")
    return value


def _ttl_s(ctx: Ctx) -> int:
    label = ctx.form.get("ttl", "")
    if label not in TOKEN_TTLS_S:
        raise InvalidInput("choose a lifetime", code="console.form")
    return TOKEN_TTLS_S[label]


def _tokens(ctx: Ctx) -> Response:
    mine = list_tokens(ctx.rt, owner=ctx.session.principal.login, limit=PAGE_SIZE)
    return ctx.render(
        "tokens.html",
        page=mine,
        ttls=TOKEN_TTLS_S,
        roles=rbac.ROLES,
        done=ctx.query.get("done"),
    )


def _token_create(ctx: Ctx) -> Response:
    record, secret = create_token(
        ctx.rt,
        owner=ctx.session.principal.login,
        name=_name(ctx, "name"),
        role=_name(ctx, "role"),
        ttl_s=_ttl_s(ctx),
        now=ctx.now,
    )
    return ctx.render("token_created.html", token=record, secret=secret)


def _token_revoke(ctx: Ctx) -> Response:
    principal = ctx.session.principal
    admin = rbac.allowed(principal.role, "users.manage")
    owner = None if admin else principal.login
    revoke_token(ctx.rt, ctx.path["token_id"], now=ctx.now, owner=owner)
    return see_other(
        "/console/users" if ctx.form.get("back") == "users" else "/console/tokens?done=revoked"
    )


def _users(ctx: Ctx) -> Response:
    values: dict[str, Any] = {
        "operators": operators.list_operators(ctx.rt, limit=PAGE_SIZE),
        "tokens": list_tokens(ctx.rt, owner=None, limit=PAGE_SIZE),
        "roles": rbac.OPERATOR_ROLES,
        "steps": _OPERATOR_STEPS,
        "done": ctx.query.get("done"),
    }
    return ctx.render("users.html", **values)


def _user_add(ctx: Ctx) -> Response:
    record, one_time = operators.add_operator(
        ctx.rt, login=_name(ctx, "login"), role=_name(ctx, "role"), password=None, now=ctx.now
    )
    return ctx.render("user_added.html", operator=record, password=one_time)


def user_routes(console: Console) -> list[BaseRoute]:
    """Tokens (one's own) and operators (users.read to see them, users.manage to change)."""
    page = console.page

    def user_step(name: str, step: Callable[..., OperatorRecord]) -> Route:
        @page("users.manage")
        def run(ctx: Ctx) -> Response:
            login = ctx.path["login"]
            step(ctx.rt, login, now=ctx.now)
            return see_other(f"/console/users?done={quote(name)}")

        return Route("/users/{login}/" + name, run, methods=["POST"])

    return [
        Route("/tokens", page("tokens.own")(_tokens), methods=["GET"]),
        Route("/tokens", page("tokens.own")(_token_create), methods=["POST"]),
        Route("/tokens/{token_id}/revoke", page("tokens.own")(_token_revoke), methods=["POST"]),
        Route("/users", page("users.read")(_users), methods=["GET"]),
        Route("/users", page("users.manage")(_user_add), methods=["POST"]),
        *(user_step(name, step) for name, step in _OPERATOR_STEPS.items()),
    ]
