"""Who calls the management API, whether they may, and running their call (docs/api.md).

``Authorization: Bearer tf_…`` is an API token; otherwise the ``__Host-tf_session`` cookie of a
console session whose second factor is done, and a request that changes something must carry
its ``X-CSRF-Token``. Then the route's permission (:func:`require`, declared once per route by
:func:`guarded`, also as the OpenAPI extension ``x-permission``) must be held by the caller's
role, else 403 ``auth.forbidden``. A refused change is itself recorded (``operator.refused``).

Service calls run in a worker thread (the store and the token never block the event loop),
inside :func:`~trustfleet.audit.context.event_context`, so every event they append names the
principal as actor and ``https <METHOD> <path> from <ip:port>`` as origin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from trustfleet import rbac
from trustfleet.audit.context import event_context
from trustfleet.errors import (
    InvalidInput,
    PermissionDenied,
    TrustFleetError,
    Unauthenticated,
    status_for,
)
from trustfleet.services.audit import record_refused_command
from trustfleet.services.auth import Principal, authenticate_token, check_csrf, session_view
from trustfleet.services.runtime import Runtime

__all__ = [
    "SESSION_COOKIE",
    "Caller",
    "CallerDep",
    "current_caller",
    "guarded",
    "permission_of",
    "require",
]

SESSION_COOKIE: Final = "__Host-tf_session"
CSRF_HEADER: Final = "x-csrf-token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_BEARER: Final = "bearer "
_MAX_CREDENTIAL_CHARS: Final = 512
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """An authenticated, authorised request: its principal, origin and the API's runtime."""

    principal: Principal
    origin: str
    method: str
    path: str
    rt: Runtime
    clock: Callable[[], datetime]

    @property
    def mutating(self) -> bool:
        """Whether the request may change something (anything but GET/HEAD/OPTIONS)."""
        return self.method not in _SAFE_METHODS

    async def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)`` in a worker thread, its events naming this caller.

        A change a service refuses (a 4xx error) is recorded as ``operator.refused``.
        """
        return await run_in_threadpool(self._call, functools.partial(fn, *args, **kwargs))

    def _call(self, call: Callable[[], _T]) -> _T:
        with event_context(origin=self.origin, operator=self.principal.actor):
            try:
                return call()
            except TrustFleetError as exc:
                if self.mutating and status_for(exc) < 500:
                    self.refused(exc)
                raise

    def refused(self, error: TrustFleetError) -> None:
        """Record this request as refused (in the calling thread; never raises)."""
        with event_context(origin=self.origin, operator=self.principal.actor):
            command = f"https {self.method} {self.path}"
            record_refused_command(self.rt, command=command, error=error, now=self.clock())


def origin_of(request: Request) -> str:
    """``https <METHOD> <path> from <ip:port>``: the origin of the events a request appends."""
    peer = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
    return f"https {request.method} {request.url.path} from {peer}"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    if not header.lower().startswith(_BEARER) or len(header) > _MAX_CREDENTIAL_CHARS:
        return ""  # present but not a bearer token: refused like a wrong one
    return header[len(_BEARER) :].strip()


def _authenticate(rt: Runtime, request: Request, *, now: datetime) -> Principal:
    """The principal of a request (thread side: the store is read)."""
    token = _bearer(request)
    if token is not None:
        return authenticate_token(rt, token, now=now)
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret or len(secret) > _MAX_CREDENTIAL_CHARS:
        raise Unauthenticated(
            "authentication required",
            hint="send 'Authorization: Bearer tf_…' (trustfleet token create)",
            code="auth.unauthenticated",
        )
    view = session_view(rt, secret, now=now)
    if view.stage != "full":
        raise Unauthenticated("the login is not complete", code="auth.session")
    if request.method not in _SAFE_METHODS:
        try:
            check_csrf(view, request.headers.get(CSRF_HEADER))
        except PermissionDenied as exc:
            with event_context(origin=origin_of(request), operator=view.principal.actor):
                command = f"https {request.method} {request.url.path}"
                record_refused_command(rt, command=command, error=exc, now=now)
            raise
    return view.principal


def _check_parameters(request: Request) -> None:
    """Refuse query parameters the route does not declare (400 ``api.unknown_parameter``),
    and a query string that is not UTF-8 (400 ``api.invalid``; not read with U+FFFD in it)."""
    try:
        unquote_to_bytes(request.scope.get("query_string", b"")).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the query string is not UTF-8", code="api.invalid") from None
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = frozenset(_query_names(route.dependant))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        names = ", ".join(name[:40] for name in unknown[:5])
        raise InvalidInput(
            f"unknown query parameter: {names}",
            hint="see /api/v1/openapi.json for the parameters of this route",
            code="api.unknown_parameter",
        )


def _query_names(dependant: Dependant) -> list[str]:
    names = [param.alias for param in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_names(sub)
    return names


def require(permission: rbac.Permission) -> Any:
    """A dependency: the request's caller, who must hold ``permission``."""

    async def dependency(request: Request) -> Caller:
        rt: Runtime = request.app.state.rt
        clock: Callable[[], datetime] = request.app.state.clock
        principal = await run_in_threadpool(_authenticate, rt, request, now=clock())
        caller = Caller(
            principal=principal, origin=origin_of(request), method=request.method,
            path=request.url.path, rt=rt, clock=clock,
        )  # fmt: skip
        if not rbac.allowed(principal.role, permission):
            denied = PermissionDenied(
                f"the role {principal.role} does not hold the permission {permission}",
                code="auth.forbidden",
            )
            if caller.mutating:
                await run_in_threadpool(caller.refused, denied)
            raise denied
        _check_parameters(request)
        request.state.caller = caller
        return caller

    dependency.permission = permission  # type: ignore[attr-defined]  # read by permission_of
    return Depends(dependency)


def guarded(permission: rbac.Permission) -> dict[str, Any]:
    """Route keyword arguments: the permission checked and declared (``x-permission``)."""
    return {"dependencies": [require(permission)], "openapi_extra": {"x-permission": permission}}


def permission_of(route: APIRoute) -> str | None:
    """The permission a route checks (None when it checks none)."""
    for dependency in route.dependencies:
        found = getattr(dependency.dependency, "permission", None)
        if found is not None:
            return str(found)
    return None


def current_caller(request: Request) -> Caller:
    """The caller that the route's :func:`require` admitted."""
    caller: Caller = request.state.caller
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
