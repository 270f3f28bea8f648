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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from trustfleet.errors import InvalidInput
from trustfleet.services._fleet_summary import (
    CERT_EXPIRY_WINDOW,
    FleetSummary,
    HourCount,
    fleet_summary,
    online_since,
)
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
        search: Only devices whose id contains this text, ignoring case (``%`` and ``_``
            match themselves).
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
        decommission: For a decommissioned device, ``verified`` or ``unverified`` (flagged:
            no proof of the wipe); else None.
    """

    device: DeviceRecord
    online: bool
    cert_not_after: datetime | None
    attestation_ok: bool | None
    attested_at: datetime | None
    quarantined: bool
    slot: str | None
    decommission: str | None = None


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
    rows = tuple(_row(e, seen_since) for e in page.items)
    return Page(_with_decommissions(rt, rows), page.next_cursor)


def _with_decommissions(rt: Runtime, rows: tuple[InventoryRow, ...]) -> tuple[InventoryRow, ...]:
    """Say, for each decommissioned device, whether its wipe was verified."""
    retired = [r.device.id for r in rows if r.device.state == "decommissioned"]
    if not retired:
        return rows
    with rt.uow.begin(read_only=True) as tx:
        found = {d: tx.decommissions.get(d) for d in retired}
    states = {d: rec.state for d, rec in found.items() if rec is not None}
    return tuple(replace(r, decommission=states.get(r.device.id)) for r in rows)


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
