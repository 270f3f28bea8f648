"""What every store-backed worker process of ``server run`` does first and last.

Logging at WARNING, the home's runtime opened, SIGTERM and SIGINT turned into a stop event
for the worker's loop, and the runtime closed when the loop returns (the campaign ticker, the
attestation scheduler and the audit sequencer; ADR 0013).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from trustfleet.server._leading import lead
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

__all__ = ["run_worker"]


def run_worker(
    home: str, loop: Callable[[Runtime, threading.Event], None], *, role: str | None = None
) -> None:
    """Run ``loop(rt, stop)`` in this (forked) process until SIGTERM or SIGINT sets ``stop``.

    Args:
        home: The server home.
        loop: The worker's loop.
        role: A singleton's role: the loop runs only while this process leads it
            (:func:`trustfleet.server._leading.lead`).
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    rt = Runtime.open(load_server_settings(Path(home)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        if role is None:
            loop(rt, stop)
        else:
            check_s = rt.settings.supervision.leader_check_s
            lead(rt.engine, role, lambda term: loop(rt, term), stop, check_s=check_s)
    finally:
        rt.close()
