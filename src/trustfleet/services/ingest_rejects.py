"""Dropped device messages become a bounded number of ``ingest.rejected`` security events.

A device that sends thousands of bad messages must be visible to the operator without writing
thousands of rows. :class:`RejectLimiter` sums rejections per device over a tumbling window:
the first rejection opens the device's window, and when the window ends one event carries the
count and the codes. It tracks at most ``max_devices`` devices; rejections of further devices
in that window are summed into one event about the service itself (subject
``service:ingest``), so memory stays bounded whatever the fleet does.

Each ingest worker keeps its own limiter (state that no other process needs, ARCHITECTURE §4):
with N workers a device gets at most N events per window.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from trustfleet.errors import TrustFleetError
from trustfleet.store import JSON, UnitOfWork

__all__ = ["REJECTED_EVENT", "RejectLimiter", "RejectSummary", "write_rejections"]

logger = logging.getLogger(__name__)

REJECTED_EVENT: Final = "ingest.rejected"
OVERFLOW_SUBJECT: Final = "service:ingest"
_MAX_CODES: Final = 16
"""Distinct codes kept per device and window (further ones count as ``other``)."""


@dataclass(frozen=True, slots=True)
class RejectSummary:
    """One ``ingest.rejected`` event: who, since when, how many, and why."""

    subject: str
    first_at: datetime
    count: int
    codes: dict[str, int]


@dataclass
class _Window:
    first_at: datetime
    count: int = 0
    codes: Counter[str] = field(default_factory=Counter)

    def add(self, code: str) -> None:
        self.count += 1
        self.codes[code if code in self.codes or len(self.codes) < _MAX_CODES else "other"] += 1


class RejectLimiter:
    """Per-device tumbling windows of rejections, bounded in devices.

    Args:
        window: How long one device's window stays open.
        max_devices: Most devices tracked at once.
    """

    def __init__(self, *, window: timedelta, max_devices: int) -> None:
        self._window = window
        self._max_devices = max_devices
        self._devices: dict[str, _Window] = {}
        self._overflow: _Window | None = None

    def __len__(self) -> int:
        return len(self._devices)

    def add(self, device_id: str, code: str, *, now: datetime) -> None:
        """Count one dropped message of ``device_id`` (an empty id: the device is unknown)."""
        window = self._devices.get(device_id)
        if window is None and device_id and len(self._devices) < self._max_devices:
            window = self._devices[device_id] = _Window(first_at=now)
        elif window is None:
            if self._overflow is None:
                self._overflow = _Window(first_at=now)
            window = self._overflow
        window.add(code)

    def due(self, *, now: datetime, flush: bool = False) -> list[RejectSummary]:
        """The summaries whose window has ended (every one with ``flush``); forgets them."""
        ended: list[str] = []
        for device, w in self._devices.items():  # in the order the windows opened
            if not flush and now - w.first_at < self._window:
                break  # every later window opened later still: a turn costs O(due), not O(all)
            ended.append(device)
        summaries = [self._summary(f"device:{d}", self._devices.pop(d)) for d in ended]
        overflow = self._overflow
        if overflow is not None and (flush or now - overflow.first_at >= self._window):
            summaries.append(self._summary(OVERFLOW_SUBJECT, overflow))
            self._overflow = None
        return summaries

    @staticmethod
    def _summary(subject: str, window: _Window) -> RejectSummary:
        return RejectSummary(subject, window.first_at, window.count, dict(window.codes))


def write_rejections(
    uow: UnitOfWork, summaries: list[RejectSummary], *, now: datetime, window_s: float
) -> int:
    """Append one ``ingest.rejected`` event per summary, in one transaction.

    A store that is unavailable loses these summaries (logged): they are counters, and the
    next window counts again.

    Returns:
        How many events were written.
    """
    if not summaries:
        return 0
    try:
        with uow.begin() as tx:
            for s in summaries:
                details: dict[str, JSON] = {
                    "count": s.count,
                    "codes": s.codes,
                    "first_at": s.first_at.isoformat(),
                    "window_s": window_s,
                }
                tx.events.append(
                    type=REJECTED_EVENT, actor="system", subject=s.subject, details=details, now=now
                )
    except TrustFleetError as exc:
        logger.warning("%d ingest.rejected events not written: %s", len(summaries), exc.one_line())
        return 0
    return len(summaries)
