"""The audit sequencer: one process of ``server run`` that keeps the audit log's tree current.

Every ``[audit] interval_s`` it integrates the security events committed since the last
checkpoint, signs a checkpoint with the log key (in the service token), publishes the new tiles
and asks the witnesses for cosignatures (:mod:`trustfleet.services.audit`). Its state is only in
the store and the published folder: a restarted sequencer (or another server's) continues, and
the integrator lock lets only one of them extend the tree at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from trustfleet.errors import TrustFleetError
from trustfleet.server._worker_main import run_worker
from trustfleet.services.audit import Integrated, on_each
from trustfleet.services.audit_witnesses import gather_cosignatures
from trustfleet.services.runtime import Runtime

__all__ = ["run_sequencer", "sequencer_process_main"]

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def run_sequencer(
    rt: Runtime,
    stop: threading.Event,
    *,
    on_round: Callable[[Integrated | None, float], None] | None = None,
) -> None:
    """A round every ``[audit] interval_s`` until ``stop`` is set: integrate, publish, cosign.

    Rounds start ``interval_s`` apart (not ``interval_s`` after the previous one ended), so an
    entry waits at most about one interval plus one round for its checkpoint. ``on_round``
    (the benchmark's probe) gets each round's result and its duration in seconds.
    """
    interval_s = rt.settings.audit.interval_s
    started = time.monotonic()
    while not stop.wait(max(0.0, started + interval_s - time.monotonic())):
        started = time.monotonic()
        done = None
        try:
            done = on_each(rt, now=_now)
            if done is not None or rt.settings.audit.witnesses:
                gather_cosignatures(rt, now=_now())
        except TrustFleetError as exc:
            logger.warning("audit sequencer: %s", exc.one_line())
        if on_round is not None:
            on_round(done, time.monotonic() - started)


def sequencer_process_main(home: str) -> None:
    """Entry point of the sequencer process (``multiprocessing`` spawn target)."""
    run_worker(home, run_sequencer, role="audit")
