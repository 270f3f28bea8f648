"""``trustfleet server run``: the HTTPS service in one or more worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from trustfleet.errors import TrustFleetError
from trustfleet.server._protocol import ConnectionLimits
from trustfleet.server._serve import listen_socket, new_event_loop, run_workers, serve
from trustfleet.server._tls import TlsServerConfig, make_server_context
from trustfleet.server.app import create_app
from trustfleet.services.revocation import refresh_crls
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings, load_server_settings

__all__ = ["run_server"]

logger = logging.getLogger(__name__)

_CRL_CHECK_INTERVAL_S = 300.0


def run_server(
    settings: ServerSettings,
    *,
    port: int | None = None,
    workers: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT. Returns the process exit code."""
    port = port or settings.api.port
    workers = workers or settings.api.workers
    # Bind (without listening) so a busy port is reported before any worker starts. A
    # listening socket here would take its share of SO_REUSEPORT connections and never
    # accept them.
    listen_socket(settings.api.host, port, reuse_port=True, listen=False).close()
    return run_workers(
        _worker,
        args=(str(settings.home), port),
        workers=workers,
        on_ready=on_ready or (lambda: None),
    )


async def _refresh_crls_forever(rt: Runtime, *, stop: asyncio.Event) -> None:
    """Keep every CRL fresh even when nobody fetches it (RFC 5280 §5: issue before nextUpdate)."""
    interval_s = _CRL_CHECK_INTERVAL_S
    while not stop.is_set():
        try:
            refresh_crls(rt, now=datetime.now(UTC))
        except TrustFleetError as exc:
            logger.warning("CRL refresh failed: %s", exc.one_line())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


def _worker(home: str, port: int) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = load_server_settings(Path(home))
    rt = Runtime.open(settings)
    api = settings.api
    context = make_server_context(
        TlsServerConfig(
            cert_chain=settings.path(api.tls_cert),
            key=settings.path(api.tls_key),
            client_ca=settings.path("public/ca-bundle.pem"),
        )
    )
    limits = ConnectionLimits(
        max_header_bytes=api.max_header_bytes,
        max_body_bytes=api.max_body_bytes,
        handshake_timeout_s=api.handshake_timeout_s,
        idle_timeout_s=api.idle_timeout_s,
    )
    sock = listen_socket(api.host, port, reuse_port=True)
    loop = new_event_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    refresher = loop.create_task(_refresh_crls_forever(rt, stop=stop))
    try:
        loop.run_until_complete(
            serve(app=create_app(rt), sock=sock, context=context, limits=limits, stop=stop)
        )
    finally:
        refresher.cancel()
        loop.close()
        rt.close()
