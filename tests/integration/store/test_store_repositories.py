"""Repository round trips on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from trustfleet.errors import Conflict, InvalidInput, NotFound
from trustfleet.store import CertificateRecord, CrlRecord, DeviceRecord, UnitOfWork

CEST = timezone(timedelta(hours=2))


def _add_certificate(
    uow: UnitOfWork, now: datetime, *, serial: str = "1a2b", device_id: str | None = "dev-1"
) -> CertificateRecord:
    der = b"\x30\x03\x02\x01" + serial.encode()
    with uow.begin() as tx:
        return tx.certificates.add(
            issuer="device",
            serial=serial,
            kind="ldevid",
            device_id=device_id,
            subject="CN=dev-1",
            not_before=now,
            not_after=now + timedelta(days=30),
            sha256=hashlib.sha256(der).hexdigest(),
            der=der,
            now=now,
        )


def _add_device(uow: UnitOfWork, now: datetime, device_id: str = "dev-1") -> DeviceRecord:
    with uow.begin() as tx:
        return tx.devices.add(id=device_id, model="rpi4", now=now)


def test_device_round_trip(uow: UnitOfWork, now: datetime) -> None:
    added = _add_device(uow, now)
    assert added == DeviceRecord(
        id="dev-1", model="rpi4", state="manufactured", created_at=now, updated_at=now
    )
    later = now + timedelta(minutes=5)
    with uow.begin() as tx:
        assert tx.devices.get("dev-1") == added
        assert tx.devices.require("dev-1") == added
        assert tx.devices.get("nope") is None
        updated = tx.devices.set_state("dev-1", "enrolled", now=later)
    assert updated.state == "enrolled"
    assert updated.updated_at == later
    assert updated.created_at == now
    with uow.begin() as tx:
        assert tx.devices.get("dev-1") == updated


def test_device_list_pages_and_filters(uow: UnitOfWork, now: datetime) -> None:
    with uow.begin() as tx:
        for index in range(5):
            tx.devices.add(id=f"d{index}", model="m", now=now)
        tx.devices.set_state("d3", "revoked", now=now)
    with uow.begin() as tx:
        assert [d.id for d in tx.devices.list(limit=2)] == ["d0", "d1"]
        assert [d.id for d in tx.devices.list(limit=2, offset=2)] == ["d2", "d3"]
        assert [d.id for d in tx.devices.list(state="revoked")] == ["d3"]
        assert tx.devices.count() == 5
        assert tx.devices.count(state="manufactured") == 4
        with pytest.raises(InvalidInput):
            tx.devices.list(limit=0)


def test_duplicate_device_is_conflict_and_transaction_survives(
    uow: UnitOfWork, now: datetime
) -> None:
    _add_device(uow, now)
    with uow.begin() as tx:
        with pytest.raises(Conflict, match="device 'dev-1' already exists"):
            tx.devices.add(id="dev-1", model="other", now=now)
        tx.devices.add(id="dev-2", model="other", now=now)  # savepoint kept the tx usable
    with uow.begin() as tx:
        assert tx.devices.count() == 2


def test_missing_device_errors(uow: UnitOfWork, now: datetime) -> None:
    with uow.begin() as tx:
        with pytest.raises(NotFound):
            tx.devices.require("ghost")
        with pytest.raises(NotFound):
            tx.devices.set_state("ghost", "enrolled", now=now)
        with pytest.raises(InvalidInput):
            tx.devices.set_state("ghost", "bogus", now=now)  # type: ignore[arg-type]


def test_certificate_round_trip_and_revocation(uow: UnitOfWork, now: datetime) -> None:
    _add_device(uow, now)
    added = _add_certificate(uow, now)
    assert added.status == "valid"
    assert added.revoked_at is None
    with uow.begin() as tx:
        assert tx.certificates.get("device", "1a2b") == added
        assert tx.certificates.get_by_sha256(added.sha256) == added
        assert tx.certificates.list_for_device("dev-1") == [added]
        assert tx.certificates.count(issuer="device", status="valid") == 1
        revoked = tx.certificates.revoke("device", "1a2b", reason="keyCompromise", now=now)
    assert revoked.status == "revoked"
    assert revoked.revoked_at == now
    assert revoked.revocation_reason == "keyCompromise"
    with uow.begin() as tx:
        assert tx.certificates.list_revoked("device") == [revoked]
        assert tx.certificates.list_revoked("root") == []
        with pytest.raises(Conflict, match="already revoked"):
            tx.certificates.revoke("device", "1a2b", reason="superseded", now=now)
        with pytest.raises(NotFound):
            tx.certificates.revoke("device", "ffff", reason="superseded", now=now)


def test_duplicate_certificate_is_conflict(uow: UnitOfWork, now: datetime) -> None:
    _add_device(uow, now)
    _add_certificate(uow, now)
    with pytest.raises(Conflict, match="already exists"):
        _add_certificate(uow, now)


def test_certificate_for_unknown_device_is_not_found(uow: UnitOfWork, now: datetime) -> None:
    with pytest.raises(NotFound, match="device 'ghost'"):
        _add_certificate(uow, now, device_id="ghost")


@pytest.mark.parametrize(
    "serial", ["01", "ABC", "", "xyz", "0"], ids=["leading-zero", "upper", "empty", "nonhex", "0"]
)
def test_bad_serials_are_refused(uow: UnitOfWork, now: datetime, serial: str) -> None:
    with pytest.raises(InvalidInput):
        _add_certificate(uow, now, serial=serial, device_id=None)


def test_crl_numbers_increase(uow: UnitOfWork, now: datetime) -> None:
    with uow.begin() as tx:
        assert tx.crls.get("device") is None
        assert tx.crls.next_number("device") == 1
        first = tx.crls.put(
            issuer="device",
            crl_number=1,
            this_update=now,
            next_update=now + timedelta(days=1),
            der=b"crl-1",
        )
    assert first == CrlRecord(
        issuer="device",
        crl_number=1,
        this_update=now,
        next_update=now + timedelta(days=1),
        der=b"crl-1",
    )
    with uow.begin() as tx:
        assert tx.crls.next_number("device") == 2
        with pytest.raises(Conflict, match="does not exceed"):
            tx.crls.put(
                issuer="device", crl_number=1, this_update=now, next_update=now, der=b"again"
            )
        second = tx.crls.put(
            issuer="device", crl_number=2, this_update=now, next_update=now, der=b"crl-2"
        )
    with uow.begin() as tx:
        assert tx.crls.get("device") == second


def test_timestamps_come_back_aware_utc(uow: UnitOfWork) -> None:
    local = datetime(2025, 6, 1, 14, 30, 15, 654321, tzinfo=CEST)
    with uow.begin() as tx:
        tx.devices.add(id="tz", model="m", now=local)
        tx.events.append(
            type="device.registered", actor="system", subject="x", details={}, now=local
        )
    with uow.begin() as tx:
        device = tx.devices.require("tz")
        (event,) = tx.events.list()
    for value in (device.created_at, device.updated_at, event.occurred_at):
        assert value.tzinfo is UTC
        assert value == local
        assert value.hour == 12


def test_naive_datetimes_are_refused(uow: UnitOfWork) -> None:
    with uow.begin() as tx, pytest.raises(InvalidInput, match="timezone-aware"):
        tx.devices.add(id="naive", model="m", now=datetime(2025, 1, 1))
