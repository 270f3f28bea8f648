"""Refused requests in the security log, with a bound on how many events a flood can write.

Every refusal of the service's front door (today: EST enrollment) is a security event, and
security events can never be deleted. A client that is not even authenticated must not be able
to fill that log: :class:`RefusalThrottle` (pure; time is a parameter) lets the first ``burst``
refusals of one key through in a window and counts the rest; when the window ends, the key's
count becomes one summary event. The key is who was refused (the device when the client was
authenticated, else its source address), what was refused (event type and mode) and why (the
stable code). Memory is bounded too: past ``max_keys`` keys, new ones share one overflow key.

So a flood from one address with one reason writes at most ``burst + 1`` events per window,
and a flood from many addresses at most ``(max_keys + 1) * (burst + 1)`` per window and
process. :class:`RefusalRecorder` applies the throttle and writes through the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from trustfleet.errors import TrustFleetError
from trustfleet.services.runtime import Runtime

__all__ = [
    "ANONYMOUS",
    "Refusal",
    "RefusalPolicy",
    "RefusalRecorder",
    "RefusalSink",
    "RefusalSummary",
    "RefusalThrottle",
    "write_refusal",
]

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
_OVERFLOW = "overflow"  # the key shared by refusals past ``max_keys``


@dataclass(frozen=True)
class Refusal:
    """One refused request, as it would be written to the security log.

    Attributes:
        type: Event type, e.g. ``enrollment.refused``.
        actor: ``device:<id>`` when the client was authenticated, else :data:`ANONYMOUS`.
        subject: What the refusal is about.
        code: The stable code of the reason (``est.auth.missing``).
        at: When it happened.
        details: The event's details (JSON values).
        source: The client's address, if known.
    """

    type: str
    actor: str
    subject: str
    code: str
    at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Who (device, or source address when anonymous), what and why."""
        who = self.actor if self.actor != ANONYMOUS else f"source:{self.source or '?'}"
        return (who, self.type, str(self.details.get("mode", "")), self.code)


RefusalSink = Callable[[Runtime, Refusal], None]
"""Where a use case hands a refusal to be recorded (:func:`write_refusal`, or a recorder's)."""


@dataclass(frozen=True)
class RefusalPolicy:
    """How refusals are aggregated (the ``[api] refusal_*`` settings)."""

    window_s: float = 60.0
    burst: int = 5
    max_keys: int = 1024


@dataclass(frozen=True)
class RefusalSummary:
    """Refusals of one key that were counted instead of written, over one window."""

    first: Refusal
    count: int
    first_at: datetime
    last_at: datetime
    window_s: float
    overflow: bool = False


@dataclass
class _Tally:
    first: Refusal
    started_at: datetime
    overflow: bool = False
    written: int = 0
    suppressed: int = 0
    first_suppressed_at: datetime | None = None
    last_at: datetime | None = None


class RefusalThrottle:
    """Decides which refusals are written one by one and which are only counted (pure)."""

    def __init__(self, policy: RefusalPolicy) -> None:
        self._policy = policy
        self._window = timedelta(seconds=policy.window_s)
        self._tallies: dict[tuple[str, ...], _Tally] = {}
        self._closed: list[RefusalSummary] = []

    @property
    def tracked_keys(self) -> int:
        """Keys held in memory (at most ``max_keys`` + 1)."""
        return len(self._tallies)

    def admit(self, refusal: Refusal) -> bool:
        """True if ``refusal`` is to be written now; else it is counted for a summary."""
        key: tuple[str, ...] = refusal.key
        tally = self._tallies.get(key)
        if tally is not None and refusal.at >= tally.started_at + self._window:
            self._close(key)
            tally = None
        if tally is None and len(self._tallies) >= self._policy.max_keys:
            self._close_expired(refusal.at)
            if len(self._tallies) >= self._policy.max_keys:
                key = (_OVERFLOW,)
                tally = self._tallies.get(key)
        if tally is None:
            tally = _Tally(first=refusal, started_at=refusal.at, overflow=key == (_OVERFLOW,))
            self._tallies[key] = tally
        if tally.written < self._policy.burst:
            tally.written += 1
            return True
        tally.suppressed += 1
        tally.first_suppressed_at = tally.first_suppressed_at or refusal.at
        tally.last_at = refusal.at
        return False

    def due(self, *, now: datetime, everything: bool = False) -> list[RefusalSummary]:
        """Summaries of the windows that ended by ``now`` (all of them if ``everything``)."""
        if everything:
            for key in list(self._tallies):
                self._close(key)
        else:
            self._close_expired(now)
        closed, self._closed = self._closed, []
        return closed

    def _close_expired(self, now: datetime) -> None:
        for key, tally in list(self._tallies.items()):
            if now >= tally.started_at + self._window:
                self._close(key)

    def _close(self, key: tuple[str, ...]) -> None:
        tally = self._tallies.pop(key)
        if tally.suppressed and tally.first_suppressed_at and tally.last_at:
            self._closed.append(
                RefusalSummary(
                    first=tally.first,
                    count=tally.suppressed,
                    first_at=tally.first_suppressed_at,
                    last_at=tally.last_at,
                    window_s=self._policy.window_s,
                    overflow=tally.overflow,
                )
            )


def write_refusal(rt: Runtime, refusal: Refusal) -> None:
    """Write one refusal as a security event (failures are logged, never raised)."""
    details = dict(refusal.details)
    if refusal.source is not None:
        details["source"] = refusal.source
    _append(rt, refusal, details=details, now=refusal.at)


def _write_summary(rt: Runtime, summary: RefusalSummary, *, now: datetime) -> None:
    first = summary.first
    details = {
        **first.details,
        "aggregated": True,
        "count": summary.count,
        "first_at": summary.first_at.isoformat(),
        "last_at": summary.last_at.isoformat(),
        "window_s": summary.window_s,
    }
    if summary.overflow:  # many keys: the first refusal's who and why are only an example
        details["overflow"] = True
        _append(rt, replace(first, actor=ANONYMOUS, subject="unknown"), details=details, now=now)
        return
    if first.source is not None:
        details["source"] = first.source
    _append(rt, first, details=details, now=now)


def _append(rt: Runtime, refusal: Refusal, *, details: dict[str, Any], now: datetime) -> None:
    try:
        with rt.uow.begin() as tx:
            tx.events.append(
                type=refusal.type,
                actor=refusal.actor,
                subject=refusal.subject,
                details=details,
                now=now,
                outcome="refused",
                origin=f"https from {refusal.source}" if refusal.source else None,
            )
    except TrustFleetError:
        logger.exception("could not record the refusal %s (%s)", refusal.type, refusal.code)


class RefusalRecorder:
    """A :class:`RefusalThrottle` in front of the store, shared by a process's requests.

    Thread-safe: requests record from worker threads while a timer calls :meth:`flush`.
    """

    def __init__(self, policy: RefusalPolicy) -> None:
        self._throttle = RefusalThrottle(policy)
        self._lock = threading.Lock()
        self.suppressed = 0

    def sink(self, source: str | None) -> RefusalSink:
        """A sink for one request from ``source`` (the client's address)."""

        def record(rt: Runtime, refusal: Refusal) -> None:
            self.record(rt, replace(refusal, source=source))

        return record

    def record(self, rt: Runtime, refusal: Refusal) -> None:
        """Write ``refusal`` now, or count it for its window's summary."""
        with self._lock:
            write = self._throttle.admit(refusal)
            if not write:
                self.suppressed += 1
            summaries = self._throttle.due(now=refusal.at)
        if write:
            write_refusal(rt, refusal)
        for summary in summaries:
            _write_summary(rt, summary, now=refusal.at)

    def flush(self, rt: Runtime, *, now: datetime, everything: bool = False) -> int:
        """Write the summaries of the windows that ended (all, if ``everything``); how many."""
        with self._lock:
            summaries = self._throttle.due(now=now, everything=everything)
        for summary in summaries:
            _write_summary(rt, summary, now=now)
        return len(summaries)
