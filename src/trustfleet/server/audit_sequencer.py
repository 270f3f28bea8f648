"""The audit sequencer: one process of ``server run`` that keeps the audit log's tree current.

Every ``[audit] interval_s`` it integrates the security events committed since the last
checkpoint, signs a checkpoint with the log key (in the service token), publishes the new tiles
and asks the witnesses for cosignatures (:mod:`trustfleet.services.audit`). Its state is only in
the store and the published folder: a restarted sequencer (or another server's) continues, and
the integrator lock lets only one of them extend the tree at a time.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

from trustfleet.errors import TrustFleetError
from trustfleet.services.audit import on_each
from trustfleet.services.audit_witnesses import gather_cosignatures
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

__all__ = ["run_sequencer", "sequencer_process_main"]

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def run_sequencer(rt: Runtime, stop: threading.Event) -> None:
    """Integrate, publish and gather cosignatures every interval until ``stop`` is set."""
    interval_s = rt.settings.audit.interval_s
    while not stop.wait(interval_s):
        try:
            done = on_each(rt, now=_now)
            if done is not None or rt.settings.audit.witnesses:
                gather_cosignatures(rt, now=_now())
        except TrustFleetError as exc:
            logger.warning("audit sequencer: %s", exc.one_line())


def sequencer_process_main(home: str) -> None:
    """Entry point of the sequencer process (``multiprocessing`` spawn target)."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    rt = Runtime.open(load_server_settings(Path(home)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        run_sequencer(rt, stop)
    finally:
        rt.close()
