"""The ASGI application: EST (RFC 7030), CRLs (RFC 5280) and OCSP (RFC 6960).

Errors become HTTP responses here, once: a :class:`TrustFleetError` maps to its category's
status with a ``text/plain`` reason (RFC 7030 §4.2.3 says the body of an EST error is
human-readable text) and the stable code in ``X-TrustFleet-Error``. Anything else is a bug: it
is logged and answered with a bare 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from trustfleet.audit.context import event_context
from trustfleet.errors import InvalidInput, TrustFleetError, status_for
from trustfleet.pki import CONTENT_TYPE_CERTS_ONLY, certs_only
from trustfleet.server._audit_routes import audit_routes
from trustfleet.server._headers import SecurityHeaders
from trustfleet.server._limits import source_key
from trustfleet.server._metrics import HttpMetrics, metrics_route
from trustfleet.server._ota_routes import ota_routes
from trustfleet.server._readiness import readiness_route
from trustfleet.server.api import API_PREFIX, create_api
from trustfleet.server.api._problems import outer_http_handler
from trustfleet.server.console import console_routes
from trustfleet.services.attestation import (
    ak_activate_request,
    ak_enroll_request,
    authenticate_device,
)
from trustfleet.services.enrollment import EnrollMode, enroll
from trustfleet.services.refusals import RefusalPolicy, RefusalRecorder
from trustfleet.services.revocation import answer_ocsp, current_crl
from trustfleet.services.runtime import Runtime

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_MAX_OCSP_BYTES = 8192
_ENROLL_THREADS = 1
_FLUSH_EVERY_MAX_S = 5.0  # refusal summaries are written at most this long after their window


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_app(rt: Runtime, *, clock: Clock = _utcnow) -> Starlette:
    """Build the application around an opened runtime.

    Its ASGI lifespan writes the summaries of aggregated refusals as their windows end, and
    the rest when the worker stops. There are no redirects: a path with a trailing slash is
    404, never a ``Location`` built from the client's ``Host`` header.
    """
    cacerts_cache: dict[str, bytes] = {}
    executor = ThreadPoolExecutor(max_workers=_ENROLL_THREADS, thread_name_prefix="est")
    api = rt.settings.api
    refusals = RefusalRecorder(
        RefusalPolicy(
            window_s=api.refusal_window_s, burst=api.refusal_burst, max_keys=api.refusal_max_keys
        )
    )
    lifespan = _lifespan(rt, refusals, executor=executor, clock=clock)

    async def cacerts(_request: Request) -> Response:
        # RFC 7030 §4.1.3: the CA that issues now (a rollover moves it), then the root.
        with rt.uow.begin(read_only=True) as tx:
            active = tx.cas.active("device").name
        if active not in cacerts_cache:
            chain = [rt.ca_certificate(active), rt.ca_certificate("root")]
            cacerts_cache[active] = certs_only(chain)
        return _pkcs7(cacerts_cache[active], CONTENT_TYPE_CERTS_ONLY)

    def est_route(mode: EnrollMode) -> Callable[[Request], object]:
        async def handler(request: Request) -> Response:
            body = await request.body()
            call = _with_origin(
                request,
                enroll,
                rt,
                client_cert_pem=_client_cert(request),
                body=body,
                mode=mode,
                now=clock(),
                refusals=refusals.sink(source_key(request.client.host) if request.client else None),
            )
            # Off the event loop: a wait for the store's write lock must not stall handshakes.
            cert = await asyncio.get_running_loop().run_in_executor(executor, call)
            return _pkcs7(certs_only([cert]), CONTENT_TYPE_CERTS_ONLY)

        return handler

    async def crl(request: Request) -> Response:
        der = current_crl(rt, request.path_params["ca"], now=clock())
        return Response(
            der, media_type="application/pkix-crl", headers={"cache-control": "max-age=60"}
        )

    async def ocsp_post(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_OCSP_BYTES:
            raise InvalidInput("OCSP request too large", code="ocsp.request.too_large")
        return _ocsp(answer_ocsp(rt, body, now=clock()))

    async def ocsp_get(request: Request) -> Response:
        encoded = request.path_params["request"]
        try:
            body = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                "the OCSP request in the URL is not base64", code="ocsp.request.base64"
            ) from exc
        return _ocsp(answer_ocsp(rt, body, now=clock()))

    def ak_route(step: Callable[..., bytes]) -> Callable[[Request], object]:
        async def handler(request: Request) -> Response:
            body = await _bounded_body(request, rt.settings.attestation.max_request_bytes)
            client_cert, at = _client_cert(request), clock()

            def call() -> bytes:
                device = authenticate_device(rt, client_cert, now=at)
                with event_context(origin=_origin(request)):
                    return step(rt, device=device, body=body, now=at)

            answer = await asyncio.get_running_loop().run_in_executor(executor, call)
            return Response(answer, media_type="application/json")

        return handler

    async def health(_request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/.well-known/est/cacerts", cacerts, methods=["GET"]),
        Route("/.well-known/est/simpleenroll", _guard(est_route("enroll")), methods=["POST"]),
        Route("/.well-known/est/simplereenroll", _guard(est_route("reenroll")), methods=["POST"]),
        Route("/crl/{ca}.crl", _guard(crl), methods=["GET"]),
        Route("/ocsp", _guard(ocsp_post), methods=["POST"]),
        Route("/ocsp/{request:path}", _guard(ocsp_get), methods=["GET"]),
        Route("/attest/v1/ak", _guard(ak_route(ak_enroll_request)), methods=["POST"]),
        Route("/attest/v1/ak/activate", _guard(ak_route(ak_activate_request)), methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
        Route("/readyz", readiness_route(rt.settings), methods=["GET"]),  # docs/operations.md
        *ota_routes(rt, clock=clock, guard=_guard),  # TUF repository, device mTLS (docs/ota.md)
        *audit_routes(rt, guard=_guard),  # the audit log as tlog-tiles (docs/audit.md)
        Mount("/console", routes=console_routes(rt, clock=clock)),  # docs/console.md
        metrics_route(rt, clock=clock),  # Prometheus, metrics.read (docs/api.md)
        Mount(API_PREFIX, app=create_api(rt, clock=clock)),  # management API (docs/api.md)
    ]

    middleware = [
        Middleware(HttpMetrics),  # request latency by route template (server/_metrics.py)
        Middleware(SecurityHeaders),  # the operator plane's headers (server/_headers.py)
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: outer_http_handler(API_PREFIX)},
    )
    app.router.redirect_slashes = False  # a redirect would echo the client's Host header
    return app


def _lifespan(
    rt: Runtime, refusals: RefusalRecorder, *, executor: ThreadPoolExecutor, clock: Clock
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: refusal summaries written as windows end, and all at shutdown."""
    every_s = min(rt.settings.api.refusal_window_s / 4, _FLUSH_EVERY_MAX_S)

    async def flush(*, everything: bool) -> None:
        call = functools.partial(refusals.flush, rt, now=clock(), everything=everything)
        await asyncio.get_running_loop().run_in_executor(executor, call)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(_flush_forever(flush, every_s=every_s))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await flush(everything=True)
            executor.shutdown(wait=True)

    return lifespan


async def _flush_forever(flush: Callable[..., Awaitable[None]], *, every_s: float) -> None:
    """Write refusal summaries as their windows end, until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        await flush(everything=False)


_T = TypeVar("_T")


def _origin(request: Request) -> str:
    """From where a request came, for the events it appends (the audit log's "origin")."""
    peer = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
    return f"https {request.url.path} from {peer}"


def _with_origin(
    request: Request, fn: Callable[..., _T], *args: Any, **kwargs: Any
) -> Callable[[], _T]:
    """``fn(*args, **kwargs)`` to run in an executor thread, its events naming the request's origin.

    The executor's threads do not inherit the event loop's context variables, so the origin is
    set in the thread.
    """
    origin = _origin(request)

    def call() -> _T:
        with event_context(origin=origin):
            return fn(*args, **kwargs)

    return call


def _guard(handler: Callable[[Request], object]) -> Callable[[Request], object]:
    async def wrapped(request: Request) -> Response:
        try:
            response: Response = await handler(request)  # type: ignore[misc]  # handlers are async
        except TrustFleetError as exc:
            return _problem(exc)
        return response

    return wrapped


async def _bounded_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (400) once it grows past ``max_bytes``."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise InvalidInput(
                f"the request body is over {max_bytes} bytes", code="attestation.request.size"
            )
    return bytes(body)


def _problem(exc: TrustFleetError) -> Response:
    status = status_for(exc)
    if status >= 500:
        logger.error("service error: %s", exc.message)
    text = exc.one_line() + "\n"
    headers = {"x-trustfleet-error": exc.code or exc.category}
    return PlainTextResponse(text, status_code=status, headers=headers)


def _client_cert(request: Request) -> str | None:
    tls = request.scope.get("extensions", {}).get("tls", {})
    chain = tls.get("client_cert_chain") or []
    return str(chain[0]) if chain else None


def _pkcs7(body: bytes, media_type: str) -> Response:
    return Response(body, media_type=media_type, headers={"content-transfer-encoding": "base64"})


def _ocsp(der: bytes) -> Response:
    return Response(der, media_type="application/ocsp-response")
