"""The fleet for operators: the inventory, the fleet's summary and each device's history.

Read-only: every function opens one read transaction and returns frozen records. Lists come
in pages (:class:`~trustfleet.services.queries.Page`, offset cursors from
:func:`~trustfleet.services.queries.parse_cursor`); every ``limit`` is 1 to
:data:`~trustfleet.store.MAX_LIST_LIMIT`.

**Online.** A device is online when the service received an MQTT message from it (telemetry,
heartbeat, result, OTA status: ``last_seen_at``) within ``[api] online_window_s`` (default
120 s) before ``now``. The agents' heartbeat period is a device-side setting (default 30 s),
so the window is the service's own: four missed heartbeats make a device offline.

**Slot.** The boot slot is reported in attestation evidence and OTA status but not stored by
the service, so :attr:`InventoryRow.slot` is None until it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from trustfleet.errors import InvalidInput
from trustfleet.services.queries import Page, parse_cursor
from trustfleet.store import (
    DEVICE_STATES,
    ENROLLMENT_EVENT_TYPES,
    INVENTORY_ORDERS,
    MAX_LIST_LIMIT,
    OUTCOMES,
    InventoryEntry,
    InventoryQuery,
)

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import (
        AttestationResultRecord,
        CertificateRecord,
        DeviceRecord,
        SecurityEventRecord,
        TelemetryRecord,
        Transaction,
    )

__all__ = [
    "CERT_EXPIRY_WINDOW",
    "INVENTORY_SORTS",
    "FleetSummary",
    "HourCount",
    "InventoryFilter",
    "InventoryRow",
    "attestation_history",
    "device_certificates",
    "device_events",
    "device_telemetry",
    "fleet_summary",
    "list_enrollments",
    "list_events",
    "list_inventory",
    "online_since",
    "paged",
]

T = TypeVar("T")
INVENTORY_SORTS: Final = INVENTORY_ORDERS
"""The sorts :func:`list_inventory` accepts (``-``: descending; ties by device id)."""
CERT_EXPIRY_WINDOW: Final = timedelta(days=7)
"""The summary counts the LDevIDs that end within this window."""
SUMMARY_HOURS: Final = 24
RECENT_EVENTS: Final = 10
_ATTESTATION_STATES: Final = ("ok", "failed", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryFilter:
    """Which devices :func:`list_inventory` lists; every field None (the default) filters nothing.

    Attributes:
        state: Only devices in this state.
        model: Only this model.
        firmware_version: Only devices that reported this release.
        online: Only online (True) or offline (False) devices (see the module docstring).
        quarantined: Only quarantined devices (True) or only the others (False).
        attestation: The newest verdict passed (``ok``), failed (``failed``) or there is none.
        cert_expires_before: Only devices whose newest valid LDevID ends before this time.
        search: Only devices whose id contains this text (``%`` and ``_`` match themselves).
    """

    state: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    online: bool | None = None
    quarantined: bool | None = None
    attestation: Literal["ok", "failed", "none"] | None = None
    cert_expires_before: datetime | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryRow:
    """One device of the inventory.

    Attributes:
        device: The device.
        online: Heard from within the online window.
        cert_not_after: The end of its newest valid LDevID, if any.
        attestation_ok: Whether its newest verdict passed (None: never attested).
        attested_at: When that verdict was made.
        quarantined: Whether it is quarantined.
        slot: Its boot slot, when the service knows it (not stored yet: None).
    """

    device: DeviceRecord
    online: bool
    cert_not_after: datetime | None
    attestation_ok: bool | None
    attested_at: datetime | None
    quarantined: bool
    slot: str | None


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


def paged(
    rt: Runtime,
    fetch: Callable[[Transaction, int, int], list[T]],
    *,
    limit: int,
    cursor: str | None,
    device_id: str | None = None,
) -> Page[T]:
    """One page from ``fetch(tx, limit, offset)`` in one read transaction (a full page is
    followed by a one-item probe for the next cursor).

    ``device_id`` given: NotFound unless the device exists.
    """
    offset = parse_cursor(cursor)
    _check_limit(limit)
    with rt.uow.begin(read_only=True) as tx:
        if device_id is not None:
            tx.devices.require(device_id)
        items = fetch(tx, limit, offset)
        more = len(items) == limit and bool(fetch(tx, 1, offset + limit))
    return Page(tuple(items), str(offset + limit) if more else None)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be 1 to {MAX_LIST_LIMIT}", code="query.bad_limit")


def _choice(value: str | None, allowed: tuple[str, ...], *, name: str) -> None:
    if value is not None and value not in allowed:
        raise InvalidInput(
            f"unknown {name} '{value[:40]}'",
            hint="one of: " + ", ".join(allowed),
            code=f"query.bad_{name}",
        )


def list_inventory(
    rt: Runtime,
    *,
    filters: InventoryFilter,
    sort: str = "id",
    limit: int,
    cursor: str | None,
    now: datetime,
) -> Page[InventoryRow]:
    """A page of the inventory: the devices ``filters`` selects, in the ``sort`` order.

    Raises:
        InvalidInput: A bad cursor, limit, sort (``query.bad_sort``), state, attestation or
            naive time.
    """
    _choice(sort, INVENTORY_SORTS, name="sort")
    _choice(filters.state, DEVICE_STATES, name="state")
    _choice(filters.attestation, _ATTESTATION_STATES, name="attestation")
    seen_since = online_since(rt, now=now)
    query = InventoryQuery(
        state=filters.state,
        model=filters.model,
        firmware_version=filters.firmware_version,
        seen_since=seen_since,
        online=filters.online,
        quarantined=filters.quarantined,
        attestation=filters.attestation,
        cert_expires_before=filters.cert_expires_before,
        search=filters.search or None,
    )
    page = paged(
        rt, lambda tx, n, o: tx.inventory.page(query, sort=sort, limit=n, offset=o),
        limit=limit, cursor=cursor,
    )  # fmt: skip
    return Page(tuple(_row(e, seen_since) for e in page.items), page.next_cursor)


def _row(entry: InventoryEntry, seen_since: datetime) -> InventoryRow:
    seen = entry.device.last_seen_at
    return InventoryRow(
        device=entry.device,
        online=seen is not None and seen >= seen_since,
        cert_not_after=entry.cert_not_after,
        attestation_ok=entry.attestation_ok,
        attested_at=entry.attested_at,
        quarantined=entry.quarantined_at is not None,
        slot=None,
    )


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


def device_certificates(
    rt: Runtime, device_id: str, *, limit: int, cursor: str | None = None
) -> Page[CertificateRecord]:
    """A page of a device's certificates, newest first.

    Raises:
        NotFound: No such device.
        InvalidInput: A bad cursor or limit.
    """
    return paged(
        rt, lambda tx, n, o: tx.certificates.page_for_device(device_id, limit=n, offset=o),
        limit=limit, cursor=cursor, device_id=device_id,
    )  # fmt: skip


def device_telemetry(
    rt: Runtime,
    device_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[TelemetryRecord]:
    """A page of a device's telemetry received in ``[since, until)``, newest first.

    Raises:
        NotFound: No such device.
        InvalidInput: A bad cursor or limit, or a naive time.
    """
    return paged(
        rt,
        lambda tx, n, o: tx.telemetry.page_for_device(
            device_id, since=since, until=until, limit=n, offset=o
        ),
        limit=limit, cursor=cursor, device_id=device_id,
    )  # fmt: skip


def device_events(
    rt: Runtime, device_id: str, *, limit: int, cursor: str | None = None
) -> Page[SecurityEventRecord]:
    """A page of the security events about a device (subject ``device:<id>``), newest first.

    Raises:
        NotFound: No such device.
        InvalidInput: A bad cursor or limit.
    """
    subject = f"device:{device_id}"
    return paged(
        rt, lambda tx, n, o: tx.events.page(subject=subject, limit=n, offset=o),
        limit=limit, cursor=cursor, device_id=device_id,
    )  # fmt: skip


def list_events(
    rt: Runtime,
    *,
    type_prefix: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: Literal["-id", "id"] = "-id",
    limit: int,
    cursor: str | None = None,
) -> Page[SecurityEventRecord]:
    """A page of the security event log, every given filter applied.

    Args:
        rt: The runtime.
        type_prefix: Only types starting with this (``device.`` or ``device.enrolled``).
        actor: Only events by this actor.
        subject: Only events about this subject.
        outcome: Only ``ok`` or only ``refused`` events.
        since: Only events at or after this time.
        until: Only events before this time.
        sort: ``-id`` newest first, ``id`` in log order.
        limit: Most events (1 to MAX_LIST_LIMIT).
        cursor: The previous page's ``next_cursor``.

    Raises:
        InvalidInput: A bad cursor, limit, sort, outcome or naive time.
    """
    _choice(sort, ("-id", "id"), name="sort")
    _choice(outcome, OUTCOMES, name="outcome")
    return paged(
        rt,
        lambda tx, n, o: tx.events.page(
            type_prefix=type_prefix, actor=actor, subject=subject, outcome=outcome,
            since=since, until=until, newest_first=sort == "-id", limit=n, offset=o,
        ),
        limit=limit, cursor=cursor,
    )  # fmt: skip


def list_enrollments(
    rt: Runtime, *, device_id: str | None = None, limit: int, cursor: str | None = None
) -> Page[SecurityEventRecord]:
    """A page of enrollments (``device.enrolled``, ``device.reenrolled``), newest first.

    Raises:
        NotFound: ``device_id`` given and no such device.
        InvalidInput: A bad cursor or limit.
    """
    subject = None if device_id is None else f"device:{device_id}"
    return paged(
        rt,
        lambda tx, n, o: tx.events.page(
            types=ENROLLMENT_EVENT_TYPES, subject=subject, limit=n, offset=o
        ),
        limit=limit, cursor=cursor, device_id=device_id,
    )  # fmt: skip


def attestation_history(
    rt: Runtime, device_id: str, *, limit: int, cursor: str | None = None
) -> Page[AttestationResultRecord]:
    """A page of a device's attestation verdicts, newest first.

    Raises:
        NotFound: No such device.
        InvalidInput: A bad cursor or limit.
    """
    return paged(
        rt, lambda tx, n, o: tx.attestation.results_page(device_id, limit=n, offset=o),
        limit=limit, cursor=cursor, device_id=device_id,
    )  # fmt: skip
