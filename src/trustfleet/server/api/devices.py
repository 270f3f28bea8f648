"""``/devices`` and ``/enrollments``: the inventory, a device's history, revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Query

from trustfleet.errors import NotFound
from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._device_lists import DeviceId, device_list_route
from trustfleet.server.api._pagination import ItemsPage, PagingDep, page_of
from trustfleet.server.api.events import present_event
from trustfleet.server.api.schemas import (
    CertificateOut,
    DecommissionIn,
    DecommissionOut,
    DeviceOut,
    DeviceState,
    EventOut,
    RevokeIn,
    Rfc3339,
    TelemetryOut,
)
from trustfleet.services import inventory
from trustfleet.services.decommission import decommission_offline, request_decommission
from trustfleet.services.revocation import revoke_device
from trustfleet.services.runtime import Runtime
from trustfleet.store import MAX_LIST_LIMIT, CertificateRecord, TelemetryRecord
from trustfleet.store.lifecycle_records import DecommissionRecord

__all__ = ["router"]

router = APIRouter(tags=["devices"])
_Text = Annotated[str | None, Query(max_length=64)]
Sort = Literal[
    "id", "-id", "last_seen", "-last_seen", "cert_expiry", "-cert_expiry", "state", "model"
]


def _present(row: inventory.InventoryRow) -> DeviceOut:
    d = row.device
    return DeviceOut(
        id=d.id, model=d.model, state=d.state, firmware_version=d.firmware_version,
        slot=row.slot, last_seen_at=d.last_seen_at, online=row.online,
        cert_not_after=row.cert_not_after, attestation_ok=row.attestation_ok,
        attested_at=row.attested_at, quarantined=row.quarantined, created_at=d.created_at,
        updated_at=d.updated_at,
    )  # fmt: skip


def _certificate(rec: CertificateRecord) -> CertificateOut:
    pem = x509.load_der_x509_certificate(rec.der).public_bytes(Encoding.PEM).decode("ascii")
    return CertificateOut(
        issuer=rec.issuer, serial=rec.serial, kind=rec.kind, subject=rec.subject,
        status=rec.status, not_before=rec.not_before, not_after=rec.not_after,
        sha256=rec.sha256, revoked_at=rec.revoked_at, revocation_reason=rec.revocation_reason,
        pem=pem,
    )  # fmt: skip


def _telemetry(rec: TelemetryRecord) -> TelemetryOut:
    return TelemetryOut(
        id=rec.id, received_at=rec.received_at, device_ts=rec.device_ts, seq=rec.seq,
        boot=rec.boot, metrics=dict(rec.metrics),
    )  # fmt: skip


@router.get("/devices", response_model=ItemsPage[DeviceOut], **guarded("fleet.read"))
async def get_devices(
    caller: CallerDep,
    paging: PagingDep,
    *,
    state: DeviceState | None = None,
    model: _Text = None,
    firmware_version: _Text = None,
    online: bool | None = None,
    quarantined: bool | None = None,
    attestation: Literal["ok", "failed", "none"] | None = None,
    cert_expires_before: Rfc3339 | None = None,
    search: _Text = None,
    sort: Sort = "id",
) -> Any:
    """The inventory: devices with their state, firmware, connection, certificate expiry,
    attestation verdict and quarantine; filtered, sorted and paged."""
    filters = inventory.InventoryFilter(
        state=state, model=model, firmware_version=firmware_version, online=online,
        quarantined=quarantined, attestation=attestation,
        cert_expires_before=cert_expires_before, search=search,
    )  # fmt: skip
    page = await caller.run(
        inventory.list_inventory, caller.rt, filters=filters, sort=sort, limit=paging.limit,
        cursor=paging.cursor, now=caller.clock(),
    )  # fmt: skip
    return page_of(page, _present)


def _one_row(rt: Runtime, device_id: str, *, now: datetime) -> inventory.InventoryRow:
    """The inventory row of one device (the search matches ids by substring)."""
    cursor: str | None = None
    filters = inventory.InventoryFilter(search=device_id)
    while True:
        page = inventory.list_inventory(
            rt, filters=filters, limit=MAX_LIST_LIMIT, cursor=cursor, now=now
        )
        for row in page.items:
            if row.device.id == device_id:
                return row
        if page.next_cursor is None:
            raise NotFound(f"device '{device_id}' not found", code="store.device.not_found")
        cursor = page.next_cursor


@router.get("/devices/{device_id}", response_model=DeviceOut, **guarded("fleet.read"))
async def get_device(caller: CallerDep, device_id: DeviceId) -> Any:
    """One device of the inventory."""
    return _present(await caller.run(_one_row, caller.rt, device_id, now=caller.clock()))


device_list_route(
    router, "certificates", response_model=ItemsPage[CertificateOut],
    service=inventory.device_certificates, present=_certificate, permission="fleet.read",
    doc="A device's certificates (IDevID, LDevIDs), with their PEM.",
)  # fmt: skip


@router.get(
    "/devices/{device_id}/telemetry",
    response_model=ItemsPage[TelemetryOut],
    **guarded("fleet.read"),
)
async def get_telemetry(
    caller: CallerDep,
    device_id: DeviceId,
    paging: PagingDep,
    since: Rfc3339 | None = None,
    until: Rfc3339 | None = None,
) -> Any:
    """A device's telemetry received in ``[since, until)``."""
    page = await caller.run(
        inventory.device_telemetry, caller.rt, device_id, since=since, until=until,
        limit=paging.limit, cursor=paging.cursor,
    )  # fmt: skip
    return page_of(page, _telemetry)


device_list_route(
    router, "events", response_model=ItemsPage[EventOut], service=inventory.device_events,
    present=present_event, permission="fleet.read", doc="The security events about a device.",
)  # fmt: skip


@router.get("/enrollments", response_model=ItemsPage[EventOut], **guarded("fleet.read"))
async def get_enrollments(
    caller: CallerDep,
    paging: PagingDep,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    """Enrollments and re-enrollments (their events), of one device or all."""
    page = await caller.run(
        inventory.list_enrollments, caller.rt, device_id=device_id, limit=paging.limit,
        cursor=paging.cursor,
    )  # fmt: skip
    return page_of(page, present_event)


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut, **guarded("devices.revoke"))
async def post_revoke(caller: CallerDep, device_id: DeviceId, body: RevokeIn) -> Any:
    """Revoke every certificate of a device; the broker cuts it off."""
    await caller.run(
        revoke_device, caller.rt, device_id, reason=body.reason, actor=caller.principal.actor,
        now=caller.clock(),
    )  # fmt: skip
    return _present(await caller.run(_one_row, caller.rt, device_id, now=caller.clock()))


def _decommission(rt: Runtime, device_id: str, *, offline: bool, actor: str,
                  now: datetime) -> DecommissionRecord:  # fmt: skip
    if offline:
        return decommission_offline(rt, device_id, actor=actor, now=now)
    return request_decommission(rt, None, device_id, actor=actor, now=now).decommission


@router.post(
    "/devices/{device_id}/decommission", response_model=DecommissionOut,
    **guarded("devices.revoke"),
)  # fmt: skip
async def post_decommission(caller: CallerDep, device_id: DeviceId, body: DecommissionIn) -> Any:
    """Decommission a device: it wipes itself and proves it, or (offline) it is retired now."""
    rec = await caller.run(
        _decommission, caller.rt, device_id, offline=body.offline,
        actor=caller.principal.actor, now=caller.clock(),
    )  # fmt: skip
    return DecommissionOut(
        device_id=rec.device_id, state=rec.state, flagged=rec.state == "unverified",
        requested_by=rec.requested_by, requested_at=rec.requested_at, deadline=rec.deadline,
        completed_at=rec.completed_at, reason=rec.reason,
    )  # fmt: skip
