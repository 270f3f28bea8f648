"""The permission matrix, enforced: every route of the management API (and /metrics) called
with a token of every role on a real server, against :func:`trustfleet.rbac.allowed`.

The routes come from the live route table (``create_api``), checked against the served OpenAPI
document, so a new route is in the matrix without being listed here; a route that names no
permission fails. For each route and role: a role holding the permission succeeds (or gets the
one refusal its service makes, :data:`HELD_REFUSALS`), a role without it gets 403
``auth.forbidden``, and no credential gets 401. Changes act on objects of their own (a fresh
operator, device, campaign, token or CSR, in the state the change needs), so the order of the
calls does not matter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest
from apikit import ApiKit, assert_problem
from fastapi.routing import APIRoute, iter_route_contexts

from conftest import Fleet
from support.api import MODEL, VERSION, World, csr_pem, make_world
from support.server import make_software_device, new_device_id
from trustfleet import rbac
from trustfleet.monitoring import Finding
from trustfleet.server.api import create_api
from trustfleet.server.api._auth import permission_of
from trustfleet.services import operators
from trustfleet.services.alerts import record_findings

pytestmark = pytest.mark.integration

_APP = create_api(None, clock=lambda: datetime.now(UTC))  # type: ignore[arg-type]  # no runtime
_CONTEXTS = list(iter_route_contexts(_APP.routes))  # the routes as served, routers flattened
_ROUTES = [
    (context.path, context.original_route)
    for context in _CONTEXTS
    if isinstance(context.original_route, APIRoute)
]
_UNGUARDED = {"/openapi.json"}  # the OpenAPI document itself is public
OPERATIONS = sorted(
    (method, path, permission_of(route) or "")
    for path, route in _ROUTES
    for method in route.methods
)
_IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]
_unique = itertools.count()


@dataclass(frozen=True)
class Call:
    """One request: method, path under /api/v1, JSON body."""

    method: str
    path: str
    body: Any = None


@pytest.fixture(scope="module")
def world(api: ApiKit, fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(api, fleet, tmp_path_factory.mktemp("matrix"))


def _throwaway_login(api: ApiKit) -> str:
    login = f"matrix-{next(_unique)}"
    operators.add_operator(
        api.server.runtime, login=login, role="auditor", password=None, now=datetime.now(UTC)
    )
    return login


def _path_values(api: ApiKit, world: World, path: str, *, role: str, held: bool) -> dict[str, str]:
    """Path parameters: real objects; throwaway ones where a held change would consume them."""
    values = world.path_parameters()
    if held and "{login}" in path:
        values["login"] = _throwaway_login(api)
    if held and "{token_id}" in path:
        values["token_id"] = api.token(role, fresh=True).split("_")[1]
    return values


_BODIES: dict[tuple[str, str], Callable[[World], Any]] = {
    ("POST", "/users"): lambda _w: {"login": f"matrix-new-{next(_unique)}", "role": "auditor"},
    ("PUT", "/users/{login}/role"): lambda _w: {"role": "fleet-operator"},
    ("POST", "/devices/{device_id}/revoke"): lambda _w: {},
    ("POST", "/devices/{device_id}/decommission"): lambda _w: {"offline": True},
    ("POST", "/devices/{device_id}/quarantine"): lambda _w: {"reason": "permission matrix"},
    ("POST", "/devices/{device_id}/commands"): lambda _w: {"name": "ping"},
    ("POST", "/releases"): lambda _w: {"model": MODEL, "version": VERSION},
    ("POST", "/campaigns"): lambda w: {
        "version": VERSION,
        "devices": [w.enrolled[2]],
        "waves": [100],
        "max_failure_rate": 1,
    },
    ("POST", "/tokens"): lambda _w: {"name": "matrix"},
    ("POST", "/alerts/{alert_id}/suppress"): lambda _w: {
        "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    },
    ("POST", "/factory/csr"): lambda w: {
        "model": MODEL,
        "csr_pem": csr_pem(w.work, device_id=new_device_id("matrix")),
    },
}


def _fresh_device(api: ApiKit, world: World, *, quarantined: bool = False) -> str:
    device_id = make_software_device(api.server, world.work, prefix="mx").device_id
    if quarantined:
        assert api.post(f"/devices/{device_id}/quarantine", {"reason": "matrix"}).is_success
    return device_id


def _fresh_campaign(api: ApiKit, world: World, *, paused: bool = False) -> str:
    made = api.post("/campaigns", _BODIES[("POST", "/campaigns")](world))
    assert made.status_code == 201, made.text
    campaign_id: str = made.json()["id"]
    if paused:
        assert api.post(f"/campaigns/{campaign_id}/pause").is_success
    return campaign_id


def _fresh_alert(api: ApiKit, world: World, *, device_id: str | None = None) -> dict[str, str]:
    """A new critical alert (the built-in playbook: notify, quarantine waiting for approval)."""
    found = Finding(
        device_id=device_id or world.enrolled[0], kind=f"monitor.matrix.k{next(_unique)}",
        severity="critical", detector="rule", at=datetime.now(UTC), summary="matrix",
    )  # fmt: skip
    (change,) = record_findings(api.server.runtime, [found], now=datetime.now(UTC))
    return {"alert_id": str(change.alert_id), "action_id": str(change.actions[-1])}


_FRESH: dict[str, Callable[[ApiKit, World], dict[str, str]]] = {
    "/alerts/{alert_id}": _fresh_alert,
    "/alerts/{alert_id}/ack": _fresh_alert,
    "/alerts/{alert_id}/resolve": _fresh_alert,
    "/alerts/{alert_id}/suppress": _fresh_alert,
    # approving quarantines the alert's device: a device of its own
    "/alerts/actions/{action_id}/approve": lambda a, w: _fresh_alert(
        a, w, device_id=_fresh_device(a, w)
    ),
    "/alerts/actions/{action_id}/reject": _fresh_alert,
    "/devices/{device_id}/revoke": lambda a, w: {"device_id": _fresh_device(a, w)},
    "/devices/{device_id}/decommission": lambda a, w: {"device_id": _fresh_device(a, w)},
    "/devices/{device_id}/quarantine": lambda a, w: {"device_id": _fresh_device(a, w)},
    "/devices/{device_id}/lift": lambda a, w: {"device_id": _fresh_device(a, w, quarantined=True)},
    "/campaigns/{campaign_id}/pause": lambda a, w: {"campaign_id": _fresh_campaign(a, w)},
    "/campaigns/{campaign_id}/resume": lambda a, w: {
        "campaign_id": _fresh_campaign(a, w, paused=True)
    },
    "/campaigns/{campaign_id}/abort": lambda a, w: {"campaign_id": _fresh_campaign(a, w)},
}
"""Changes that consume their object get a fresh one in the state they act on."""

HELD_REFUSALS: Final = {
    ("POST", "/devices/{device_id}/attest"): 404,  # a software device has no attestation key
    ("POST", "/releases"): 409,  # the release is published already (nothing is staged)
    ("POST", "/campaigns/{campaign_id}/retry"): 409,  # no device failed
}
"""The calls a role holding the permission makes that the service itself refuses, and how."""


def _call(api: ApiKit, world: World, operation: tuple[str, str, str], role: str) -> Call:
    method, path, permission = operation
    held = rbac.allowed(role, permission)  # type: ignore[arg-type]
    values = _path_values(api, world, path, role=role, held=held)
    if held and path in _FRESH:
        values.update(_FRESH[path](api, world))
    body = _BODIES.get((method, path))
    return Call(method, path.format(**values), body(world) if body else None)


def test_every_route_names_a_known_permission() -> None:
    assert len(OPERATIONS) > 30, OPERATIONS
    for path, route in _ROUTES:
        declared = (route.openapi_extra or {}).get("x-permission")
        assert permission_of(route) in rbac.PERMISSIONS, path
        assert declared == permission_of(route), (path, declared)
    others = {c.path for c in _CONTEXTS if not isinstance(c.original_route, APIRoute)}
    assert others == _UNGUARDED


def test_the_served_document_has_exactly_the_route_table(api: ApiKit) -> None:
    doc = api.get("/openapi.json", role=None).json()
    served = sorted(
        (method.upper(), path, operation.get("x-permission", ""))
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    )
    assert served == OPERATIONS


@pytest.mark.parametrize("role", rbac.ROLES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=_IDS)
def test_a_role_may_call_a_route_exactly_when_it_holds_the_permission(
    api: ApiKit, world: World, operation: tuple[str, str, str], role: str
) -> None:
    call = _call(api, world, operation, role)
    response = api.post(call.path, call.body, role=role, method=call.method)
    if rbac.allowed(role, operation[2]):  # type: ignore[arg-type]
        expected = HELD_REFUSALS.get(operation[:2])
        assert response.is_success or response.status_code == expected, response.text
    else:
        body = assert_problem(response, 403, "auth.forbidden")
        assert operation[2] in body["detail"]


@pytest.mark.parametrize("operation", OPERATIONS, ids=_IDS)
def test_no_credential_is_401_on_every_route(
    api: ApiKit, world: World, operation: tuple[str, str, str]
) -> None:
    call = _call(api, world, operation, "metrics")
    response = api.post(call.path, call.body, role=None, method=call.method)
    assert_problem(response, 401, "auth.unauthenticated")


@pytest.mark.parametrize("role", [*rbac.ROLES, None])
def test_metrics_follows_the_matrix(api: ApiKit, role: str | None) -> None:
    with api.client(role) as client:
        response = client.get(api.server.base_url + "/metrics")
    if role is None:
        assert_problem(response, 401, "auth.unauthenticated")
    elif rbac.allowed(role, "metrics.read"):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert "trustfleet_devices" in response.text
    else:
        assert_problem(response, 403, "auth.forbidden")


def test_the_matrix_reaches_every_role_and_permission() -> None:
    """Each role is refused something and allowed something (else the matrix is vacuous)."""
    permissions = {p for _, _, p in OPERATIONS} | {"metrics.read"}
    assert permissions == set(rbac.PERMISSIONS)
    for role in rbac.ROLES:
        held = {p for p in permissions if rbac.allowed(role, p)}  # type: ignore[arg-type]
        assert held, role
        assert held != permissions or role == "admin", role
