"""One HTTPS worker process of ``server run``: TLS 1.3, the ASGI app, fresh CRLs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from OpenSSL import SSL

from trustfleet.errors import TrustFleetError
from trustfleet.server._limits import limits_from_settings
from trustfleet.server._serve import listen_socket, new_event_loop, serve
from trustfleet.server._tls import TlsServerConfig, make_server_context
from trustfleet.server.app import create_app
from trustfleet.services.revocation import refresh_crls
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings
from trustfleet.store import Leadership

__all__ = ["https_worker_main"]

logger = logging.getLogger(__name__)

_CRL_CHECK_INTERVAL_S: Final = 300.0


async def _refresh_crls_forever(rt: Runtime, *, stop: asyncio.Event) -> None:
    """Keep every CRL fresh even when nobody fetches it (RFC 5280 §5: issue before nextUpdate).

    One HTTPS worker among every service host's does it: the one leading ``crl-refresh``. The
    others try to take the lead every ``[supervision] leader_check_s`` (off the event loop), so a
    dead leader is replaced within about that long.
    """
    check_s = rt.settings.supervision.leader_check_s
    leadership = Leadership(rt.engine, "crl-refresh")
    next_refresh = 0.0
    try:
        while not stop.is_set():
            leading = await asyncio.to_thread(leadership.held)
            if leading and time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + _CRL_CHECK_INTERVAL_S
                try:
                    refresh_crls(rt, now=datetime.now(UTC))
                except TrustFleetError as exc:
                    logger.warning("CRL refresh failed: %s", exc.one_line())
            elif not leading:
                next_refresh = 0.0  # on taking the lead: refresh at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=check_s)
    finally:
        await asyncio.to_thread(leadership.release)


def _reload_tls(tls: TlsServerConfig, contexts: list[SSL.Context]) -> None:
    """SIGHUP: a new TLS context from the files (``server rotate-tls``; a new CA bundle).

    New connections get it; open ones keep theirs. A half-written pair keeps the old one.
    """
    try:
        contexts[:] = [make_server_context(tls)]
    except TrustFleetError as exc:
        logger.warning("TLS files not reloaded, the previous ones stay: %s", exc.one_line())
        return
    logger.info("TLS server certificate reloaded")


def https_worker_main(home: str, port: int) -> None:
    """Entry point of one HTTPS worker (``multiprocessing`` spawn target)."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = load_server_settings(Path(home))
    rt = Runtime.open(settings)
    api = settings.api
    tls = TlsServerConfig(
        cert_chain=settings.path(api.tls_cert),
        key=settings.path(api.tls_key),
        client_ca=settings.path("public/ca-bundle.pem"),
    )
    contexts = [make_server_context(tls)]
    limits = limits_from_settings(api)
    sock = listen_socket(api.host, port, reuse_port=True)
    loop = new_event_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_tls, tls, contexts)
    refresher = loop.create_task(_refresh_crls_forever(rt, stop=stop))
    try:
        loop.run_until_complete(
            serve(
                app=create_app(rt),
                sock=sock,
                context=contexts[0],
                limits=limits,
                stop=stop,
                current_context=lambda: contexts[-1],
            )
        )
    finally:
        refresher.cancel()
        loop.close()
        rt.close()
