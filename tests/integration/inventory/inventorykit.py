"""A small fleet in a real store (SQLite and PostgreSQL) for the inventory's tests.

Every device differs from the others in the attributes the inventory filters and sorts on;
:data:`FLEET` states them, so a test derives what a filter or a sort must return from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest

from trustfleet.services.runtime import Runtime
from trustfleet.store import DeviceState, Transaction, UnitOfWork, create_engine, migrate

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
ONLINE_WINDOW_S = 120.0


@dataclass(frozen=True)
class Dev:
    """One device of the fleet: what the inventory must report about it."""

    id: str
    model: str
    state: DeviceState
    firmware: str | None = None
    seen_s_ago: float | None = None  # None: never seen
    quarantined: bool = False
    certs: tuple[tuple[float, str], ...] = ()  # (days from NOW to not_after, status), oldest first
    verdicts: tuple[tuple[bool, float], ...] = ()  # (ok, minutes ago), stored in this order

    @property
    def online(self) -> bool:
        return self.seen_s_ago is not None and self.seen_s_ago <= ONLINE_WINDOW_S

    @property
    def cert_not_after(self) -> datetime | None:
        valid = [days for days, status in self.certs if status == "valid"]
        return None if not valid else NOW + timedelta(days=valid[-1])

    @property
    def attestation(self) -> str:
        if not self.verdicts:
            return "none"
        return "ok" if min(self.verdicts, key=lambda v: v[1])[0] else "failed"

    @property
    def last_seen(self) -> datetime | None:
        return None if self.seen_s_ago is None else NOW - timedelta(seconds=self.seen_s_ago)


FLEET: tuple[Dev, ...] = (
    Dev("dev-a0000001", "m1", "enrolled", "1.0", 10, certs=((30, "valid"),),
        verdicts=((False, 90), (True, 5))),
    Dev("dev-a0000002", "m1", "enrolled", "1.1", 300, certs=((3, "valid"),),
        verdicts=((True, 90), (False, 5))),
    Dev("dev-a0000003", "m2", "enrolled", "1.0", None, quarantined=True,
        certs=((100, "valid"), (1, "revoked"))),
    Dev("dev-b0000004", "m2", "manufactured"),
    Dev("dev-b0000005", "m1", "revoked", "1.1", 119, certs=((10, "revoked"), (60, "valid")),
        verdicts=((True, 30),)),
    Dev("dev-100%", "m3", "enrolled", "2.0", 5, certs=((-2, "valid"),)),
    Dev("dev-100x", "m3", "enrolled", "2.0", 121),
    Dev("dev_under1", "m3", "decommissioned", "2.0", 3600, verdicts=((False, 1),)),
    Dev("devXunder1", "m3", "enrolled", None, 0, quarantined=True),
)  # fmt: skip
BY_ID = {d.id: d for d in FLEET}


@dataclass
class Fleet:
    """The store holding :data:`FLEET` and a runtime-like handle on it for the services."""

    uow: UnitOfWork
    rt: Runtime
    serials: list[int] = field(default_factory=list)


def _add_device(tx: Transaction, dev: Dev, serial: int) -> int:
    tx.devices.add(id=dev.id, model=dev.model, state=dev.state, now=NOW - timedelta(days=30))
    if dev.firmware is not None:
        tx.devices.set_firmware_version(dev.id, dev.firmware, now=NOW - timedelta(days=1))
    if dev.last_seen is not None:
        tx.devices.mark_seen({dev.id: dev.last_seen})
    if dev.quarantined:
        tx.attestation.set_quarantine(
            dev.id, at=NOW - timedelta(hours=1), reason="test", by="system", release=None
        )
    for days, status in dev.certs:
        serial += 1
        not_after = NOW + timedelta(days=days)
        tx.certificates.add(
            issuer="device", serial=format(serial, "x"), kind="ldevid", device_id=dev.id,
            subject=f"CN={dev.id}", not_before=not_after - timedelta(days=365),
            not_after=not_after, sha256=hashlib.sha256(str(serial).encode()).hexdigest(),
            der=b"der", now=NOW - timedelta(days=2),
        )  # fmt: skip
        if status == "revoked":
            tx.certificates.revoke("device", format(serial, "x"), reason="superseded", now=NOW)
    for i, (ok, minutes) in enumerate(dev.verdicts):
        tx.attestation.add_result(
            device_id=dev.id, challenge_id=f"{dev.id}-{i}", ok=ok, findings=[],
            verified_at=NOW - timedelta(minutes=minutes), release=None, clock=None,
        )  # fmt: skip
    return serial


def runtime_on(uow: UnitOfWork) -> Runtime:
    """A stand-in for a Runtime: the store and ``[api] online_window_s``."""
    settings = SimpleNamespace(api=SimpleNamespace(online_window_s=ONLINE_WINDOW_S))
    return cast(Runtime, SimpleNamespace(uow=uow, settings=settings))


@pytest.fixture
def fleet(db_url: str) -> Iterator[Fleet]:
    """:data:`FLEET` in a migrated store on each backend."""
    engine = create_engine(db_url)
    migrate(engine)
    uow = UnitOfWork(engine)
    serial = 0
    with uow.begin() as tx:
        for dev in FLEET:
            serial = _add_device(tx, dev, serial)
    try:
        yield Fleet(uow=uow, rt=runtime_on(uow))
    finally:
        engine.dispose()
