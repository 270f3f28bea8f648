"""``trustfleet server run``: HTTPS workers, the MQTT broker and the ingest workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trustfleet.errors import NotFound, TrustFleetError
from trustfleet.server._attest_side import attest_process_main
from trustfleet.server._broker_side import BrokerSide
from trustfleet.server._limits import limits_from_settings
from trustfleet.server._serve import listen_socket, new_event_loop, serve
from trustfleet.server._supervise import ProcessSpec, Supervisor
from trustfleet.server._tls import TlsServerConfig, make_server_context
from trustfleet.server.app import create_app
from trustfleet.server.campaign_ticker import ticker_process_main
from trustfleet.server.ingest import ingest_process_main
from trustfleet.services.ota import refresh_timestamp_if_due
from trustfleet.services.revocation import refresh_crls
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings, load_server_settings

__all__ = ["ServiceStatus", "run_server"]

logger = logging.getLogger(__name__)

_CRL_CHECK_INTERVAL_S = 300.0
_INGEST_READY_TIMEOUT_S = 20.0
_TICK_S = 0.1
_TIMESTAMP_JOIN_S = 10.0


@dataclass(frozen=True)
class ServiceStatus:
    """What ``server run`` serves, for its readiness message.

    Attributes:
        api_port: The HTTPS port.
        mqtt_port: The MQTT (device) port.
        broker_running: Whether Mosquitto is up (False: see ``broker_error``; retried).
        broker_error: Why the broker did not start, if it did not.
        ingest_workers: How many ingest processes run.
        ingest_ready: Whether all of them had their subscriptions granted in time.
    """

    api_port: int
    mqtt_port: int
    broker_running: bool
    broker_error: str | None
    ingest_workers: int
    ingest_ready: bool


def run_server(
    settings: ServerSettings,
    *,
    port: int | None = None,
    workers: int | None = None,
    mqtt_port: int | None = None,
    on_ready: Callable[[ServiceStatus], None] | None = None,
) -> int:
    """Serve HTTPS, the MQTT broker and the ingest workers until SIGTERM/SIGINT.

    The parent process supervises everything by pid: the HTTPS workers, Mosquitto (through
    :class:`~trustfleet.broker.Broker`) and the ingest workers, and it follows revocations in
    the store to reload the broker's CRL and kick revoked devices.

    Returns:
        The process exit code.
    """
    port = port or settings.api.port
    workers = workers or settings.api.workers
    mqtt_port = mqtt_port or settings.broker.port
    # Bind (without listening) so a busy port is reported before any worker starts. A
    # listening socket here would take its share of SO_REUSEPORT connections and never
    # accept them.
    listen_socket(settings.api.host, port, reuse_port=True, listen=False).close()
    stopping = threading.Event()
    old = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    rt = Runtime.open(settings)
    side = BrokerSide(rt, port=mqtt_port)
    supervisor = Supervisor()
    timestamps = threading.Thread(
        target=_refresh_timestamp_forever, args=(rt, stopping), name="tuf-timestamp", daemon=True
    )
    try:
        timestamps.start()
        side.start()
        ready = _start_children(
            supervisor, settings, port=port, workers=workers, mqtt_port=mqtt_port
        )
        ingest_ready = _await_ingest(ready, stopping=stopping) if side.running else False
        (on_ready or (lambda _status: None))(
            ServiceStatus(
                api_port=port,
                mqtt_port=mqtt_port,
                broker_running=side.running,
                broker_error=side.error.one_line() if side.error else None,
                ingest_workers=len(ready),
                ingest_ready=ingest_ready,
            )
        )
        return _supervise(supervisor, side, stopping=stopping)
    finally:
        stopping.set()
        supervisor.stop()
        side.stop()
        if timestamps.is_alive():
            timestamps.join(timeout=_TIMESTAMP_JOIN_S)
        rt.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _start_children(
    supervisor: Supervisor, settings: ServerSettings, *, port: int, workers: int, mqtt_port: int
) -> list[Any]:
    home = str(settings.home)
    ready = []
    for index in range(settings.broker.ingest_workers):
        event = supervisor.ctx.Event()
        ready.append(event)
        supervisor.start(
            ProcessSpec(f"ingest#{index}", ingest_process_main, (home, mqtt_port, index, event))
        )
    for index in range(workers):
        supervisor.start(ProcessSpec(f"https#{index}", _worker, (home, port)))
    supervisor.start(ProcessSpec("campaigns#0", ticker_process_main, (home, mqtt_port)))
    if settings.attestation.enabled and settings.broker.ingest_workers:  # ingest verifies
        supervisor.start(ProcessSpec("attest#0", attest_process_main, (home, mqtt_port)))
    return ready


def _await_ingest(ready: list[Any], *, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + _INGEST_READY_TIMEOUT_S
    for event in ready:
        while not event.wait(timeout=0.1):
            if stopping.is_set() or time.monotonic() > deadline:
                logger.warning("ingest workers not subscribed after %s s", _INGEST_READY_TIMEOUT_S)
                return False
    return True


def _supervise(supervisor: Supervisor, side: BrokerSide, *, stopping: threading.Event) -> int:
    while not stopping.wait(_TICK_S):
        if not supervisor.check():
            return 1
        side.tick()
    logger.info("stopping (children %s, mosquitto %s)", supervisor.pids, side.broker.pid)
    return 0


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


def _refresh_timestamp_forever(rt: Runtime, stopping: threading.Event) -> None:
    """Re-sign the TUF timestamp before it expires ([ota] timestamp_check_s); never raises."""
    while True:
        try:
            refresh_timestamp_if_due(rt, now=datetime.now(UTC))
        except NotFound as exc:
            logger.debug("no TUF timestamp to refresh: %s", exc.one_line())
        except TrustFleetError as exc:
            logger.warning("TUF timestamp refresh failed: %s", exc.one_line())
        except Exception:
            logger.exception("TUF timestamp refresh failed")
        if stopping.wait(rt.settings.ota.timestamp_check_s):
            return


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
    limits = limits_from_settings(api)
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
