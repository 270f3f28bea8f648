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

from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

__all__ = ["run_worker"]


def run_worker(home: str, loop: Callable[[Runtime, threading.Event], None]) -> None:
    """Run ``loop(rt, stop)`` in this (spawned) process until SIGTERM or SIGINT sets ``stop``."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    rt = Runtime.open(load_server_settings(Path(home)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        loop(rt, stop)
    finally:
        rt.close()
