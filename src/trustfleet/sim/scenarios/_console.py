"""The demo's console stage: the operator plane answers for the fleet the demo built.

Through the real HTTPS front end, trusting only the home's CA, with API tokens made through the
services (shown once, stored hashed): an auditor's token lists the inventory, which agrees with
the store (the revoked device revoked, every device there); the security events name the
operator who revoked; the auditor's attempt to revoke is refused with a 403 problem and changes
nothing; ``/metrics`` answers a scraper's token; the console's login page is served with a strict
Content-Security-Policy; the OpenAPI document is 3.1.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from trustfleet.audit.context import event_context
from trustfleet.services.api_tokens import create_token
from trustfleet.services.operators import add_operator
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.scenarios._result import Observed, stage

__all__ = ["ConsoleLogin", "console", "console_login"]

_TIMEOUT_S = 10.0
_TOKEN_TTL_S = 3600
_MAX_BODY_BYTES = 4 * 1024 * 1024
_DEMO_ACTOR = "operator:demo"


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _lower(items: Any) -> dict[str, str]:
    """Response headers by lower-case name (HTTP names are case-insensitive)."""
    return {str(k).lower(): str(v) for k, v in items}


def _call(fleet: SimFleet, path: str, *, token: str | None, method: str = "GET") -> _Answer:
    """One request to the fleet's server, trusting only the home's CA bundle."""
    context = ssl.create_default_context(cafile=str(fleet.srv.ca_bundle))
    request = urllib.request.Request(fleet.srv.base_url + path, method=method)  # noqa: S310 - the harness's own https server
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if method != "GET":
        request.add_header("Content-Type", "application/json")
        request.data = json.dumps({"reason": "keyCompromise"}).encode()
    try:
        with urllib.request.urlopen(request, context=context, timeout=_TIMEOUT_S) as resp:  # noqa: S310
            body = resp.read(_MAX_BODY_BYTES)
            return _Answer(int(resp.status), _lower(resp.headers.items()), body)
    except urllib.error.HTTPError as exc:
        return _Answer(int(exc.code), _lower(exc.headers.items()), exc.read(_MAX_BODY_BYTES))


def _tokens(fleet: SimFleet) -> tuple[str, str]:
    """An auditor's token and a scraper's (``metrics``) token, owned by a demo auditor."""
    rt, now = fleet.srv.runtime, utc_now()
    with event_context(origin="demo console stage", operator=_DEMO_ACTOR):
        add_operator(rt, login="demo-auditor", role="auditor", password=None, now=now)
        _rec, auditor = create_token(
            rt, owner="demo-auditor", name="demo", role="auditor", ttl_s=_TOKEN_TTL_S, now=now
        )
        _rec, scraper = create_token(
            rt, owner="demo-auditor", name="scraper", role="metrics", ttl_s=_TOKEN_TTL_S, now=now
        )
    return auditor, scraper


def _inventory(fleet: SimFleet, token: str) -> dict[str, str]:
    """Every device's state as ``GET /api/v1/devices`` pages them."""
    states: dict[str, str] = {}
    cursor: str | None = None
    while True:
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = _call(fleet, "/api/v1/devices" + query, token=token).json()
        states.update({item["id"]: item["state"] for item in page["items"]})
        cursor = page.get("next_cursor")
        if not cursor:
            return states


@stage("console")
def console(fleet: SimFleet) -> Observed:
    """The API and the console answer for the demo fleet, under roles."""
    auditor, scraper = _tokens(fleet)
    revoked = fleet.device("revoked")
    listed = _inventory(fleet, auditor)
    in_store = fleet.inventory_states()
    events = _call(fleet, "/api/v1/events?type=device.revoked&limit=10", token=auditor).json()
    actors = {e["actor"] for e in events["items"] if e["subject"] == f"device:{revoked}"}
    refused = _call(fleet, f"/api/v1/devices/{revoked}/revoke", token=auditor, method="POST")
    metrics = _call(fleet, "/metrics", token=scraper)
    login_page = _call(fleet, "/console/login", token=None)
    csp = login_page.headers.get("content-security-policy", "")
    openapi = _call(fleet, "/api/v1/openapi.json", token=None).json()
    return Observed(
        {
            "the API's inventory is the store's": listed == in_store,
            "the revoked device is revoked in the API": listed.get(revoked) == "revoked",
            "the revocation's event names an operator": bool(actors)
            and all(a.startswith("operator:") for a in actors),
            "an auditor may not revoke (403 problem)": refused.status == 403
            and refused.json().get("code") == "auth.forbidden",
            "/metrics answers a scraper's token": metrics.status == 200
            and b"trustfleet_devices" in metrics.body,
            "the console's login page has a strict CSP": login_page.status == 200
            and "default-src 'none'" in csp
            and "frame-ancestors 'none'" in csp,
            "the OpenAPI document is 3.1": str(openapi.get("openapi", "")).startswith("3.1"),
        },
        details={
            "devices": len(listed),
            "revoked_by": sorted(actors),
            "api": f"{fleet.srv.base_url}/api/v1",
            "console": f"{fleet.srv.base_url}/console/",
        },
    )


@dataclass(frozen=True, slots=True)
class ConsoleLogin:
    """A one-time admin login for a newcomer (``trustfleet demo --keep``)."""

    url: str
    login: str
    password: str


def console_login(fleet: SimFleet, *, login: str = "newcomer") -> ConsoleLogin:
    """Make an admin with a one-time password: at the first login the console asks for a new
    password and a TOTP enrollment (an admin can change things, so a second factor is required).
    """
    with event_context(origin="demo --keep", operator=_DEMO_ACTOR):
        _rec, password = add_operator(
            fleet.srv.runtime, login=login, role="admin", password=None, now=utc_now()
        )
    assert password is not None  # noqa: S101 - add_operator returns one when none is given
    return ConsoleLogin(f"{fleet.srv.base_url}/console/login", login, password)
