"""The LwM2M server process of ``server run`` (``lwm2m#0``, started when ``[lwm2m] enabled``).

It runs :class:`trustfleet.lwm2m.server.Lwm2mServer` on its own asyncio loop over the service's
backend (:func:`trustfleet.services.lwm2m.lwm2m_backend`) until SIGTERM or SIGINT. Like the
other children it dies with the parent (the supervisor's ``die_with_parent``) and is restarted
by the supervisor when it exits; its state (registrations, observations) lives in memory, so a
restarted server is rebuilt by the devices' next Update (answered 4.04) and Register.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Final

from trustfleet.server._worker_main import run_worker
from trustfleet.services.runtime import Runtime

__all__ = ["lwm2m_process_main", "run_lwm2m"]

logger = logging.getLogger(__name__)

_STOP_POLL_S: Final = 0.2
"""How often the loop looks at the stop event (set by the signal handlers)."""


async def _serve(rt: Runtime, stop: threading.Event) -> None:
    # pyOpenSSL and the LwM2M stack load in lwm2m#0 only, not in server run's parent process.
    from trustfleet.lwm2m.dtls import DtlsServerConfig  # noqa: PLC0415
    from trustfleet.lwm2m.server import Lwm2mServer  # noqa: PLC0415
    from trustfleet.services.lwm2m import lwm2m_backend  # noqa: PLC0415

    with lwm2m_backend(rt.settings) as backend:
        dtls = DtlsServerConfig.from_settings(rt.settings)
        server = Lwm2mServer(rt.settings.lwm2m, backend, dtls=dtls)
        host, port = await server.start()
        logger.info("lwm2m server on %s:%d", host, port)
        try:
            while not stop.is_set():
                await asyncio.sleep(_STOP_POLL_S)
        finally:
            await server.close()


def run_lwm2m(rt: Runtime, stop: threading.Event) -> None:
    """Serve LwM2M until ``stop`` is set."""
    asyncio.run(_serve(rt, stop))


def lwm2m_process_main(home: str) -> None:
    """Entry point of ``lwm2m#0`` (``multiprocessing`` spawn target)."""
    run_worker(home, run_lwm2m)
