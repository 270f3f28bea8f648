"""The console's pure parts: SVG charts escape what they draw, the security headers, the
inventory filter form, the Origin rule for POSTs."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from trustfleet.errors import InvalidInput, PermissionDenied
from trustfleet.server._headers import CONTENT_SECURITY_POLICY, SecurityHeaders
from trustfleet.server.console._charts import bar_chart, line_chart
from trustfleet.server.console._devices import inventory_filter
from trustfleet.server.console._session import check_origin, public_origin
from trustfleet.server.console._web import Console
from trustfleet.services.queries import Page

ORIGIN = "https://localhost:8443"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("chart", [bar_chart, line_chart], ids=["bar", "line"])
def test_a_chart_escapes_its_labels_and_title(chart: object) -> None:
    evil = "<script>alert(1)</script>"
    svg = str(chart([(evil, 1.0), ("b", 2.5)], title=evil))  # type: ignore[operator]
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.startswith("<svg") and svg.endswith("</svg>")


@pytest.mark.parametrize("chart", [bar_chart, line_chart], ids=["bar", "line"])
def test_a_chart_of_nothing_says_so(chart: object) -> None:
    assert "no data" in str(chart([], title="t"))  # type: ignore[operator]


def _app() -> SecurityHeaders:
    async def page(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("x", headers={"cache-control": "max-age=60"})

    routes = [Route(p, page) for p in ("/console/", "/api/v1/x", "/metrics", "/crl/device.crl")]
    return SecurityHeaders(Starlette(routes=routes))


def _get(path: str) -> httpx.Response:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            return await client.get(path)

    # In a thread of its own: a session's Playwright may hold this thread's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, get()).result()


@pytest.mark.parametrize("path", ["/console/", "/api/v1/x", "/metrics"])
def test_operator_plane_responses_carry_the_headers(path: str) -> None:
    response = _get(path)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["cache-control"] == "no-store"  # a route cannot loosen it
    assert response.headers["x-content-type-options"] == "nosniff"


def test_device_facing_responses_keep_their_own_headers() -> None:
    response = _get("/crl/device.crl")
    assert response.headers["cache-control"] == "max-age=60"
    assert "content-security-policy" not in response.headers


def test_the_inventory_form_maps_to_filters() -> None:
    chosen = inventory_filter({"q": "dev-1", "online": "yes", "quarantined": "no", "state": ""})
    assert (chosen.search, chosen.online, chosen.quarantined, chosen.state) == (
        "dev-1", True, False, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "query", [{"online": "maybe"}, {"attestation": "good"}], ids=["online", "attestation"]
)
def test_a_filter_value_the_form_never_offers_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(InvalidInput):
        inventory_filter(query)


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": ORIGIN},
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"},
    ],
    ids=["origin", "null-origin-same-site", "both"],
)
def test_a_post_from_the_console_passes(headers: dict[str, str]) -> None:
    check_origin(_request(headers), public_origin(ORIGIN + "/"))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=["none", "other-origin", "null", "null-cross-site", "spoofed", "same-site"],
)
def test_a_post_from_elsewhere_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(PermissionDenied):
        check_origin(_request(headers), ORIGIN)


def test_a_list_page_links_its_next_page_with_its_filters() -> None:
    settings = SimpleNamespace(api=SimpleNamespace(public_url=ORIGIN))
    console = Console(SimpleNamespace(settings=settings), clock=lambda: NOW)  # type: ignore[arg-type]
    page = Page(items=(), next_cursor="25")
    html = console.render(
        "events.html", view=None, page=page, query={"type": "device."}, outcomes=("",)
    )
    body = bytes(html.body).decode()
    assert 'href="/console/events?type=device.&amp;cursor=25"' in body
