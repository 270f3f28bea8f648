"""The management API ``/api/v1`` (FastAPI, OpenAPI 3.1; docs/api.md, ADR 0017).

:func:`create_api` builds the application that ``server/app.py`` mounts at ``/api/v1`` on the
TLS 1.3 front end. Every route names one permission of :mod:`trustfleet.rbac`
(``x-permission`` in the OpenAPI document), parses its input, calls one service function in a
worker thread and presents the result; errors are RFC 9457 problem details.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from fastapi import FastAPI
from fastapi.routing import APIRoute

from trustfleet.server.api import (
    alerts,
    attestation,
    audit,
    campaigns,
    commands,
    devices,
    events,
    factory,
    releases,
    tokens,
    users,
)
from trustfleet.server.api._openapi import install_openapi
from trustfleet.server.api._problems import install_problem_handlers
from trustfleet.services.runtime import Runtime

__all__ = ["API_PREFIX", "api_routes", "create_api"]

API_PREFIX = "/api/v1"
_DESCRIPTION = (
    "Manage a TrustFleet fleet: devices, releases, campaigns, security events, alerts, the audit "
    "log, operators and API tokens. Authenticate with `Authorization: Bearer tf_…` (see "
    "`trustfleet token create`). Each operation's `x-permission` names the permission it needs."
)

_ROUTERS: Final = tuple(
    module.router
    for module in (
        users, devices, attestation, commands, releases, campaigns, events, audit, tokens, factory,
        alerts,
    )
)  # fmt: skip


def api_routes() -> list[APIRoute]:
    """Every route of the API (paths relative to :data:`API_PREFIX`), in the order served."""
    return [route for router in _ROUTERS for route in router.routes if isinstance(route, APIRoute)]


def create_api(rt: Runtime, *, clock: Callable[[], datetime]) -> FastAPI:
    """The management API over an opened runtime (mount it at :data:`API_PREFIX`)."""
    api = FastAPI(
        title="TrustFleet management API",
        version="1",
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        servers=[{"url": API_PREFIX}],
    )
    api.state.rt = rt
    api.state.clock = clock
    api.router.redirect_slashes = False  # a redirect would echo the client's Host header
    install_problem_handlers(api, routes=api_routes())
    for router in _ROUTERS:
        api.include_router(router)
    install_openapi(api)
    return api
