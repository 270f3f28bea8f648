"""``store/_rows.record_of``: a record reads each of its fields from the row by name."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from trustfleet.store._rows import record_of
from trustfleet.store.records import CrlRecord, DeviceRecord

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


DEVICE = DeviceRecord(
    id="dev-1",
    model="m1",
    state="enrolled",
    created_at=NOW,
    updated_at=NOW,
    last_seen_at=None,
    firmware_version="1.0.0",
)


def _device_row() -> SimpleNamespace:
    # quarantined_at: a column the record does not have, so it is not read.
    return SimpleNamespace(**dataclasses.asdict(DEVICE), quarantined_at=NOW)


def test_every_field_is_read_from_the_attribute_of_its_name() -> None:
    assert record_of(DeviceRecord, _device_row()) == DEVICE


def test_a_converted_value_replaces_the_rows_own() -> None:
    row = SimpleNamespace(
        issuer="device-ca", crl_number=7, this_update=NOW, next_update=NOW, der=memoryview(b"\x30")
    )
    record = record_of(CrlRecord, row, der=bytes(row.der))
    assert record.der == b"\x30" and type(record.der) is bytes
    assert record.crl_number == 7


def test_a_row_without_a_field_of_the_record_is_an_error() -> None:
    row = _device_row()
    del row.firmware_version
    with pytest.raises(AttributeError, match="firmware_version"):
        record_of(DeviceRecord, row)
