"""Run a singleton's loop only while this process leads its role (ADR 0023).

Every service host runs the same processes; :func:`lead` keeps a singleton's loop (the campaign
ticker, the attestation scheduler, the audit sequencer, the monitor, the parent's refresh
threads) stopped until this process takes the role's lock, and stops it as soon as the lock is
lost, so that on several hosts sharing one PostgreSQL store exactly one of them runs it. Their
database work stays guarded by its own row locks too: leadership is what keeps two hosts from
doing the same work, the row locks what keeps a late loser from doing it twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import sqlalchemy

from trustfleet.store import Leadership

__all__ = ["lead"]

logger = logging.getLogger(__name__)

STOP_POLL_S: Final = 0.1
"""How soon a running loop hears of a stop while its leadership is checked less often."""


def lead(
    engine: sqlalchemy.Engine,
    role: str,
    loop: Callable[[threading.Event], None],
    stop: threading.Event,
    *,
    check_s: float,
) -> None:
    """Run ``loop(term)`` whenever this process leads ``role``, until ``stop`` is set.

    ``term`` is set when ``stop`` is or when the lead is lost; the loop then returns and
    ``lead`` waits to lead again.

    Args:
        engine: The store's engine (it holds the leadership connection).
        role: The singleton's name.
        loop: The singleton's loop; it returns soon after its event is set.
        stop: Set to end.
        check_s: How often the leader checks its lock and the others try to take it
            (``[supervision] leader_check_s``).
    """
    leadership = Leadership(engine, role)
    try:
        while not stop.is_set():
            if not leadership.held():
                stop.wait(check_s)
                continue
            term = threading.Event()
            watcher = threading.Thread(
                target=_watch, args=(leadership, stop, term, check_s), name=f"lead-{role}",
                daemon=True,
            )  # fmt: skip
            watcher.start()
            try:
                loop(term)
            finally:
                term.set()
                watcher.join()
    finally:
        leadership.release()


def _watch(
    leadership: Leadership, stop: threading.Event, term: threading.Event, check_s: float
) -> None:
    """Set ``term`` on ``stop`` or when the lead is lost (checked every ``check_s``)."""
    waited = 0.0
    while not term.wait(STOP_POLL_S):
        waited += STOP_POLL_S
        if stop.is_set():
            term.set()
        elif leadership.shared and waited >= check_s:
            waited = 0.0
            if not leadership.held():
                term.set()
