"""The fleet at a glance for operators: counts, the newest events, the last day's activity.

Re-exported by :mod:`trustfleet.services.inventory` (read its docstring for "online").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from trustfleet.store import DEVICE_STATES

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import SecurityEventRecord

__all__ = [
    "CERT_EXPIRY_WINDOW",
    "RECENT_EVENTS",
    "SUMMARY_HOURS",
    "FleetSummary",
    "HourCount",
    "fleet_summary",
    "online_since",
]

CERT_EXPIRY_WINDOW: Final = timedelta(days=7)
"""The summary counts the LDevIDs that end within this window."""
SUMMARY_HOURS: Final = 24
RECENT_EVENTS: Final = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class HourCount:
    """How many things happened in the hour starting at ``start``."""

    start: datetime
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSummary:
    """The fleet at a glance.

    Attributes:
        at: The ``now`` it was computed for.
        devices: How many devices there are.
        by_state: Device state to count (every state, zeros included).
        by_firmware: ``(version or None, devices)``, most devices first, at most 20.
        attestation_ok: Devices whose newest verdict passed.
        attestation_failed: Devices whose newest verdict failed.
        attestation_none: Devices never attested.
        online: Devices online (see the module docstring).
        quarantined: Quarantined devices.
        certs_expiring: Valid LDevIDs that end within :data:`CERT_EXPIRY_WINDOW` of ``at``.
        recent_events: The newest security events, newest first.
        enrollments_per_hour: Enrollments and re-enrollments per hour, oldest hour first; the
            last hour is the one ``at`` falls in (24 hours).
        telemetry_per_hour: Telemetry messages stored per hour, the same hours.
    """

    at: datetime
    devices: int
    by_state: dict[str, int]
    by_firmware: tuple[tuple[str | None, int], ...]
    attestation_ok: int
    attestation_failed: int
    attestation_none: int
    online: int
    quarantined: int
    certs_expiring: int
    recent_events: tuple[SecurityEventRecord, ...]
    enrollments_per_hour: tuple[HourCount, ...]
    telemetry_per_hour: tuple[HourCount, ...]


def online_since(rt: Runtime, *, now: datetime) -> datetime:
    """The earliest ``last_seen_at`` of an online device at ``now``."""
    return now - timedelta(seconds=rt.settings.api.online_window_s)


def fleet_summary(rt: Runtime, *, now: datetime) -> FleetSummary:
    """The fleet at ``now``: counts, the newest events and the last 24 hours' activity."""
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=SUMMARY_HOURS - 1)
    with rt.uow.begin(read_only=True) as tx:
        counts = tx.inventory.counts(
            seen_since=online_since(rt, now=now), expiring_before=now + CERT_EXPIRY_WINDOW, now=now
        )
        recent = tx.events.page(limit=RECENT_EVENTS)
        enrollments = tx.inventory.hourly("enrollments", since=first_hour, hours=SUMMARY_HOURS)
        telemetry = tx.inventory.hourly("telemetry", since=first_hour, hours=SUMMARY_HOURS)
    by_state: dict[str, int] = {state: counts.by_state.get(state, 0) for state in DEVICE_STATES}
    return FleetSummary(
        at=now,
        devices=sum(counts.by_state.values()),
        by_state=by_state,
        by_firmware=counts.by_firmware,
        attestation_ok=counts.attestation["ok"],
        attestation_failed=counts.attestation["failed"],
        attestation_none=counts.attestation["none"],
        online=counts.online,
        quarantined=counts.quarantined,
        certs_expiring=counts.certs_expiring,
        recent_events=tuple(recent),
        enrollments_per_hour=_hours(first_hour, enrollments),
        telemetry_per_hour=_hours(first_hour, telemetry),
    )


def _hours(first: datetime, counts: tuple[int, ...]) -> tuple[HourCount, ...]:
    return tuple(HourCount(start=first + timedelta(hours=i), count=n) for i, n in enumerate(counts))
