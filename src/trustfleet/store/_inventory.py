"""The fleet inventory: devices joined with their certificate, verdict and quarantine, in SQL.

A fleet may hold 100k devices, so every filter, sort and count here is one SQL statement:
nothing loads the whole fleet. Each device's newest valid LDevID (highest id) gives its
certificate expiry and its newest verdict (``verified_at``, then id) its attestation state,
both as correlated subqueries served by the ``certificates(device_id)`` and
``attestation_results(device_id, verified_at)`` indexes.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

import sqlalchemy as sa
from sqlalchemy import case, func, select

from trustfleet.errors import InvalidInput
from trustfleet.store import _validate as check
from trustfleet.store._models import (
    AttestationResultRow,
    CertificateRow,
    DeviceRow,
    SecurityEventRow,
    TelemetryRow,
)
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle
from trustfleet.store.records import DeviceRecord

__all__ = [
    "ENROLLMENT_EVENT_TYPES",
    "INVENTORY_ORDERS",
    "FleetCounts",
    "InventoryEntry",
    "InventoryQuery",
    "InventoryRepository",
]

AttestationState = Literal["ok", "failed", "none"]
INVENTORY_ORDERS: Final = (
    "id", "-id", "last_seen", "-last_seen", "cert_expiry", "-cert_expiry", "state", "model",
)  # fmt: skip
"""The orders :meth:`InventoryRepository.page` accepts (``-``: descending; ties by id)."""
ENROLLMENT_EVENT_TYPES: Final = ("device.enrolled", "device.reenrolled")
"""The event types that count as an enrollment."""
_HOUR: Final = timedelta(hours=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryQuery:
    """Which devices a page holds; every field None (the default) filters nothing.

    Attributes:
        state: Only devices in this state.
        model: Only this model.
        firmware_version: Only devices that reported this release.
        seen_since: With ``online``: the cut between online (seen at or after) and offline.
        online: Only devices seen since ``seen_since`` (True) or not (False, never seen too).
        quarantined: Only quarantined devices (True) or only the others (False).
        attestation: Newest verdict passed (``ok``), failed (``failed``), or none stored.
        cert_expires_before: Only devices whose newest valid LDevID ends before this time.
        search: Only device ids containing this text, ignoring case (``%`` and ``_`` match
            themselves).
    """

    state: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    seen_since: datetime | None = None
    online: bool | None = None
    quarantined: bool | None = None
    attestation: AttestationState | None = None
    cert_expires_before: datetime | None = None
    search: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InventoryEntry:
    """One device of the inventory.

    Attributes:
        device: The device.
        cert_not_after: The end of its newest valid LDevID, if it has one.
        attestation_ok: Whether its newest verdict passed (None: no verdict stored).
        attested_at: When that verdict was made.
        quarantined_at: Since when it is quarantined (None: it is not).
    """

    device: DeviceRecord
    cert_not_after: datetime | None
    attestation_ok: bool | None
    attested_at: datetime | None
    quarantined_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetCounts:
    """Counts over the whole fleet (see :meth:`InventoryRepository.counts`).

    Attributes:
        by_state: Device state to how many devices are in it (states with none left out).
        by_firmware: ``(version or None, devices)``, most devices first (at most ``top``).
        attestation: ``ok``, ``failed`` and ``none`` to how many devices' newest verdict is so.
        online: Devices seen since ``seen_since``.
        quarantined: Quarantined devices.
        certs_expiring: Valid LDevIDs that end within the window asked for (not yet ended).
    """

    by_state: dict[str, int]
    by_firmware: tuple[tuple[str | None, int], ...]
    attestation: dict[AttestationState, int]
    online: int
    quarantined: int
    certs_expiring: int


def _table(row_class: Any) -> sa.Table:
    return cast(sa.Table, row_class.__table__)


_D = _table(DeviceRow)
_C = _table(CertificateRow)
_A = _table(AttestationResultRow)


def _newest_verdict(column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    return (
        select(column)
        .where(_A.c.device_id == _D.c.id)
        .order_by(_A.c.verified_at.desc(), _A.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _enriched() -> sa.Subquery:
    """Every device with ``cert_not_after``, ``attestation_ok`` and ``attested_at``."""
    cert = (
        select(_C.c.not_after)
        .where(_C.c.device_id == _D.c.id, _C.c.kind == "ldevid", _C.c.status == "valid")
        .order_by(_C.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return select(
        _D,
        cert.label("cert_not_after"),
        _newest_verdict(_A.c.ok).label("attestation_ok"),
        _newest_verdict(_A.c.verified_at).label("attested_at"),
    ).subquery("inventory")


def _where(q: InventoryQuery, inv: sa.Subquery) -> builtins.list[sa.ColumnElement[bool]]:
    c = inv.c
    clauses: builtins.list[sa.ColumnElement[bool]] = []
    for column, value in ((c.state, q.state), (c.model, q.model)):
        if value is not None:
            clauses.append(column == value)
    if q.firmware_version is not None:
        clauses.append(c.firmware_version == q.firmware_version)
    if q.online is not None and q.seen_since is not None:
        since = check.aware(q.seen_since, name="seen_since")
        online = c.last_seen_at >= since
        clauses.append(online if q.online else sa.or_(c.last_seen_at.is_(None), ~online))
    if q.quarantined is not None:
        quarantined = c.quarantined_at.is_not(None)
        clauses.append(quarantined if q.quarantined else c.quarantined_at.is_(None))
    if q.attestation is not None:
        clauses.append(_attestation_is(c.attestation_ok, c.attested_at, q.attestation))
    if q.cert_expires_before is not None:
        before = check.aware(q.cert_expires_before, name="cert_expires_before")
        clauses.append(c.cert_not_after < before)
    if q.search:
        clauses.append(func.lower(c.id).contains(q.search.lower(), autoescape=True))
    return clauses


def _attestation_is(
    ok: sa.ColumnElement[Any], at: sa.ColumnElement[Any], state: AttestationState
) -> sa.ColumnElement[bool]:
    if state == "none":
        return at.is_(None)
    return sa.and_(at.is_not(None), ok == (state == "ok"))


def _order(sort: str, inv: sa.Subquery) -> builtins.list[sa.ColumnElement[Any]]:
    c = inv.c
    check.one_of(sort, INVENTORY_ORDERS, name="sort")
    if sort in ("id", "-id"):
        return [c.id.desc() if sort == "-id" else c.id.asc()]
    column = {
        "last_seen": c.last_seen_at,
        "cert_expiry": c.cert_not_after,
        "state": c.state,
        "model": c.model,
    }[sort.lstrip("-")]
    ordered = column.desc() if sort.startswith("-") else column.asc()
    return [ordered.nulls_last(), c.id.asc()]


def _entry(row: Any) -> InventoryEntry:
    ok = row.attestation_ok
    return InventoryEntry(
        device=record_of(DeviceRecord, row),
        cert_not_after=row.cert_not_after,
        attestation_ok=None if ok is None else bool(ok),
        attested_at=row.attested_at,
        quarantined_at=row.quarantined_at,
    )


class InventoryRepository:
    """The fleet inventory, within one transaction. Get it as ``tx.inventory``."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def page(
        self, query: InventoryQuery, *, sort: str = "id", limit: int, offset: int = 0
    ) -> builtins.list[InventoryEntry]:
        """Devices matching ``query`` in the ``sort`` order (one of :data:`INVENTORY_ORDERS`).

        Raises:
            InvalidInput: The page is out of range, the sort unknown or a time naive.
        """
        limit, offset = check.page(limit=limit, offset=offset)
        inv = _enriched()
        statement = (
            select(inv).where(*_where(query, inv)).order_by(*_order(sort, inv))
            .limit(limit).offset(offset)
        )  # fmt: skip
        conn = self._handle.session.connection()
        return [_entry(row) for row in conn.execute(statement)]

    def counts(
        self, *, seen_since: datetime, expiring_before: datetime, now: datetime
    ) -> FleetCounts:
        """Counts over the fleet: per state, per firmware (top 20), per attestation state,
        online (seen since ``seen_since``), quarantined, and valid LDevIDs ending in
        ``[now, expiring_before)``."""
        conn = self._handle.session.connection()
        by_state = conn.execute(select(_D.c.state, func.count()).group_by(_D.c.state))
        n = func.count().label("n")
        firmware = conn.execute(
            select(_D.c.firmware_version, n)
            .group_by(_D.c.firmware_version)
            .order_by(n.desc(), _D.c.firmware_version.asc().nulls_last())
            .limit(20)
        )
        inv = _enriched()
        verdict = case(
            (inv.c.attested_at.is_(None), "none"), (inv.c.attestation_ok, "ok"), else_="failed"
        ).label("verdict")
        verdicts = dict.fromkeys(("ok", "failed", "none"), 0)
        for state, count in conn.execute(select(verdict, func.count()).group_by(verdict)):
            verdicts[state] = int(count)
        since = check.aware(seen_since, name="seen_since")
        online = conn.scalar(select(func.count()).where(_D.c.last_seen_at >= since))
        quarantined = conn.scalar(select(func.count()).where(_D.c.quarantined_at.is_not(None)))
        expiring = conn.scalar(
            select(func.count()).where(
                _C.c.kind == "ldevid", _C.c.status == "valid",
                _C.c.not_after >= check.aware(now, name="now"),
                _C.c.not_after < check.aware(expiring_before, name="expiring_before"),
            )
        )  # fmt: skip
        return FleetCounts(
            by_state={state: int(count) for state, count in by_state},
            by_firmware=tuple((version, int(count)) for version, count in firmware),
            attestation=cast("dict[AttestationState, int]", verdicts),
            online=int(online or 0),
            quarantined=int(quarantined or 0),
            certs_expiring=int(expiring or 0),
        )

    def hourly(
        self, kind: Literal["enrollments", "telemetry"], *, since: datetime, hours: int
    ) -> tuple[int, ...]:
        """How many enrollment events or telemetry rows fell in each hour from ``since``.

        One statement: ``hours`` conditional sums over the rows at or after ``since``.

        Raises:
            InvalidInput: ``hours`` is not 1 to 168, or ``since`` is naive.
        """
        if not 1 <= hours <= 168:
            raise InvalidInput("hours must be 1 to 168", code="store.bad_bound")
        start = check.aware(since, name="since")
        if kind == "enrollments":
            e = _table(SecurityEventRow)
            column, where = e.c.occurred_at, e.c.type.in_(ENROLLMENT_EVENT_TYPES)
        else:
            t = _table(TelemetryRow)
            column, where = t.c.received_at, t.c.id.is_not(None)
        end = start + hours * _HOUR
        sums = [
            func.coalesce(func.sum(case(
                (sa.and_(column >= start + i * _HOUR, column < start + (i + 1) * _HOUR), 1),
                else_=0,
            )), 0)
            for i in range(hours)
        ]  # fmt: skip
        row = (
            self._handle.session.connection()
            .execute(select(*sums).where(where, column >= start, column < end))
            .one()
        )
        return tuple(int(value) for value in row)
