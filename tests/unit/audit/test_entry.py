"""The audit log's entry bytes: canonical JSON of one event, strict both ways."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from trustfleet.audit.entry import (
    MAX_ENTRY_BYTES,
    AuditEntry,
    EntryError,
    decode_entry,
    encode_entry,
)

ENTRY = AuditEntry(
    id=42,
    time=datetime(2026, 12, 2, 15, 0, 0, 123456, tzinfo=UTC),
    type="certificate.revoked",
    actor="operator:alice@ops1",
    origin="cli host=ops1 pid=4242",
    outcome="ok",
    subject="device:d1",
    details={"reason": "keyCompromise", "serials": ["0a", "0b"], "n": 1.5, "ü": "ß"},
)


def test_encoding_is_canonical_json_with_sorted_keys_and_no_spaces() -> None:
    data = encode_entry(ENTRY)
    assert data.startswith(b'{"actor":"operator:alice@ops1","details":{"n":1.5,"reason"')
    assert b", " not in data and b": " not in data
    assert b'"time":"2026-12-02T15:00:00.123456Z"' in data
    assert "ß".encode() in data  # UTF-8, not \u escapes


def test_round_trip_gives_the_same_entry_and_bytes() -> None:
    data = encode_entry(ENTRY)
    assert decode_entry(data, id=42) == ENTRY
    assert encode_entry(decode_entry(data, id=42)) == data


def test_a_time_in_another_zone_is_written_in_utc() -> None:
    plus_two = ENTRY.time.astimezone(timezone(timedelta(hours=2)))
    assert encode_entry(replace(ENTRY, time=plus_two)) == encode_entry(ENTRY)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"time": datetime(2026, 1, 1)}, "timezone-aware"),  # naive on purpose
        ({"details": {"x": float("nan")}}, "canonical JSON"),
        ({"details": {"x": "a" * MAX_ENTRY_BYTES}}, "over 65535"),
    ],
)
def test_entries_the_log_cannot_hold_are_refused(change: dict[str, object], reason: str) -> None:
    with pytest.raises(EntryError, match=reason):
        encode_entry(replace(ENTRY, **change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff", "UTF-8"),
        (b"[]", "exactly the keys"),
        (encode_entry(ENTRY).replace(b'"actor"', b'"id":42,"actor"'), "exactly the keys"),
        (encode_entry(ENTRY).replace(b'"outcome":"ok"', b'"outcome":1'), "'outcome' must be"),
        (encode_entry(ENTRY).replace(b".123456Z", b"Z"), "is not"),
        (encode_entry(ENTRY).replace(b'"details":{', b'"details": {'), "canonical form"),
        (encode_entry(ENTRY).replace(b'"n":1.5', b'"n":NaN'), "JSON does not allow"),
        (encode_entry(ENTRY).replace(b'"details":{"n":1.5,', b'"details":{'), None),
    ],
)
def test_decoding_refuses_anything_but_the_canonical_form(data: bytes, reason: str | None) -> None:
    if reason is None:  # a different but canonical entry decodes (control row)
        assert decode_entry(data, id=1).details.get("n") is None
        return
    with pytest.raises(EntryError, match=reason):
        decode_entry(data, id=1)


def test_decoding_refuses_oversized_input_before_parsing() -> None:
    with pytest.raises(EntryError, match="over"):
        decode_entry(b" " * (MAX_ENTRY_BYTES + 1), id=1)


def test_the_id_is_the_position_not_part_of_the_bytes() -> None:
    data = encode_entry(ENTRY)
    assert b'"id"' not in data
    assert encode_entry(replace(ENTRY, id=7)) == data
    assert decode_entry(data, id=7).id == 7
    with pytest.raises(EntryError, match="positive"):
        decode_entry(data, id=0)
