"""``/metrics``: the fleet and this worker's HTTP traffic in the Prometheus text format.

A scrape needs a bearer token whose role holds ``metrics.read`` (a ``metrics`` token from
``trustfleet token create --role metrics``). The fleet's gauges are read at each scrape into a
fresh registry (:func:`trustfleet.services.metrics.collect`); the HTTP latency histogram is
this worker process's own (each HTTPS worker counts what it served).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trustfleet import rbac
from trustfleet.errors import PermissionDenied, TrustFleetError, Unauthenticated
from trustfleet.server.api._problems import error_problem
from trustfleet.services.auth import authenticate_token
from trustfleet.services.metrics import FleetMetrics, collect
from trustfleet.services.runtime import Runtime

__all__ = ["HttpMetrics", "metrics_route"]

_PREFIX: Final = "trustfleet_"
_UNMATCHED: Final = "unmatched"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods labelled as themselves; any other is "other" (a client must not grow the labels)."""
_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PROCESS_REGISTRY: Final = CollectorRegistry(auto_describe=True)
_LATENCY: Final = Histogram(
    _PREFIX + "http_request_duration_seconds",
    "HTTP request latency of this worker, by route template, method and status.",
    ["route", "method", "status"],
    buckets=_BUCKETS_S,
    registry=_PROCESS_REGISTRY,
)


class HttpMetrics:
    """ASGI middleware timing every HTTP request by route template (never the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            _LATENCY.labels(_template(scope), method, str(status)).observe(
                time.perf_counter() - started
            )


def _template(scope: Scope) -> str:
    """The route template that answered (``/api/v1/devices/{device_id}``), else "unmatched"."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(route, Mount) or not isinstance(path, str):
        return _UNMATCHED  # nothing matched (a mount alone did: no route inside it)
    return str(scope.get("root_path", "")) + path


def _fleet_registry(found: FleetMetrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(_PREFIX + name, doc, labels, registry=registry)

    states = gauge("devices", "Devices by state.", ("state",))
    for state, count in found.devices_by_state.items():
        states.labels(state).set(count)
    gauge("devices_online", "Devices heard from within the online window.").set(found.online)
    gauge("devices_quarantined", "Devices in quarantine.").set(found.quarantined)
    campaign = gauge(
        "campaign_devices", "Devices of running, paused or halted campaigns by state.", ("state",)
    )
    for state, count in found.campaign_devices_by_state.items():
        campaign.labels(state).set(count)
    verdicts = gauge("attestation_results_24h", "Attestation verdicts of 24 h.", ("result",))
    for result, count in found.attestations.items():
        verdicts.labels(result).set(count)
    for name, count in found.events.items():
        Counter(_PREFIX + name, f"Security events counted as {name}.", registry=registry).inc(count)
    gauge("security_events", "Security events appended (the newest id).").set(found.events_total)
    gauge("audit_log_size", "Entries in the newest signed audit checkpoint.").set(
        found.audit_log_size
    )
    return registry


def _scrape(rt: Runtime, authorization: str | None, *, now: datetime) -> bytes:
    """Authenticate the scraper and collect (thread side: the store is read)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated("a metrics token is required", code="auth.unauthenticated")
    principal = authenticate_token(rt, authorization[len("bearer ") :].strip(), now=now)
    if not rbac.allowed(principal.role, "metrics.read"):
        raise PermissionDenied(
            f"the role {principal.role} does not hold the permission metrics.read",
            code="auth.forbidden",
        )
    fleet = generate_latest(_fleet_registry(collect(rt, now=now)))
    return fleet + generate_latest(_PROCESS_REGISTRY)


def metrics_route(rt: Runtime, *, clock: Callable[[], datetime]) -> Route:
    """``GET /metrics`` (permission ``metrics.read``, bearer token only)."""

    async def metrics(request: Request) -> Response:
        header = request.headers.get("authorization")
        try:
            body = await run_in_threadpool(_scrape, rt, header, now=clock())
        except TrustFleetError as exc:
            return error_problem(exc)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics, methods=["GET"])
