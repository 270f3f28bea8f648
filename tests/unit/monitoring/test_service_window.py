"""Service-side signals, the pure parts: window boundaries, the broker's chunk format and its
bounds, merging counters, counting the security log, the service record."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput
from trustfleet.monitoring import SERVICE_NUMBERS, SERVICE_SETS
from trustfleet.monitoring.service_window import (
    BrokerCounters,
    StoreSignals,
    closed_ends,
    count_store_signals,
    decode_broker_stats,
    merge_counters,
    service_record,
    window_floor,
)
from trustfleet.wire import DEVICE_ID_PATTERN, MAX_BROKER_STATS_BYTES

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # a multiple of 60 s, 300 s, 3600 s
DEV = "dev-00000001"
GOOD: dict[str, Any] = {
    "v": 1, "boot": "0123456789abcdef", "seq": 7, "part": 0,
    "end": int(T0.timestamp()), "interval_s": 60, "untracked": 0, "unattributed": 2,
    "devices": {DEV: {"c": 1, "r": 0, "d": 1, "z": 2, "m": 10, "b": 640, "a": ["127.0.0.1"]}},
}  # fmt: skip


def _decode(doc: Any) -> Any:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return decode_broker_stats(
        payload, max_bytes=MAX_BROKER_STATS_BYTES, device_id_pattern=DEVICE_ID_PATTERN
    )


def test_a_chunk_decodes() -> None:
    stats = _decode(GOOD)
    assert (stats.boot, stats.seq, stats.end, stats.interval_s) == ("0123456789abcdef", 7, T0, 60)
    assert stats.unattributed == 2
    assert stats.devices == {
        DEV: BrokerCounters(
            connects=1, disconnects=1, denied=2, messages=10, bytes=640,
            addresses=frozenset({"127.0.0.1"}),
        )
    }  # fmt: skip


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _device(**changes: Any) -> dict[str, Any]:
    return _with(devices={DEV: {**GOOD["devices"][DEV], **changes}})


BAD: dict[str, Any] = {
    "too_large": b"{" + b" " * MAX_BROKER_STATS_BYTES + b"}",
    "not_json": b"{nope",
    "not_utf8": b"\xff\xfe",
    "array": [GOOD],
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "other_version": _with(v=2),
    "boot_missing": {k: v for k, v in GOOD.items() if k != "boot"},
    "boot_injection": _with(boot="a/b"),
    "end_off_boundary": _with(end=int(T0.timestamp()) + 1),
    "interval_zero": _with(interval_s=0),
    "interval_huge": _with(interval_s=86_401),
    "negative_count": _device(m=-1),
    "bool_count": _device(c=True),
    "float_count": _device(b=1.5),
    "huge_count": _device(b=2**60),
    "devices_not_object": _with(devices=[DEV]),
    "device_key_not_an_id": _with(devices={"tf/v1/d/#": {}}),
    "device_not_object": _with(devices={DEV: 3}),
    "address_not_ip": _device(a=["<script>"]),
    "address_too_long": _device(a=["1" * 46]),
    "too_many_addresses": _device(a=[f"10.0.0.{i}" for i in range(17)]),
}


@pytest.mark.parametrize("doc", BAD.values(), ids=BAD.keys())
def test_malformed_chunks_are_refused_with_a_code(doc: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        _decode(doc)
    assert info.value.code == "monitor.broker_stats.invalid"


@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_are_refused_cleanly(payload: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        _decode(payload)


@pytest.mark.parametrize(
    ("at", "interval_s", "floor"),
    [
        (T0, 60, T0),
        (T0 + timedelta(seconds=59, microseconds=999_999), 60, T0),
        (T0 - timedelta(microseconds=1), 60, T0 - timedelta(seconds=60)),
        (T0 + timedelta(minutes=7), 300, T0 + timedelta(minutes=5)),
        (T0 + timedelta(minutes=59), 3600, T0),
        (
            T0 + timedelta(seconds=13),
            7,
            datetime.fromtimestamp((T0.timestamp() + 13) // 7 * 7, UTC),
        ),
    ],
    ids=["on_boundary", "just_before_next", "just_before", "five_minutes", "hour", "odd_length"],
)
def test_windows_end_on_multiples_of_their_length(
    at: datetime, interval_s: int, floor: datetime
) -> None:
    assert window_floor(at, interval_s) == floor


def test_closed_windows_wait_for_the_grace_and_are_built_once() -> None:
    args: dict[str, Any] = {"interval_s": 60, "grace_s": 5.0, "max_windows": 10}
    first = {**args, "max_windows": 1}
    assert closed_ends(after=None, now=T0 + timedelta(seconds=4), **first) == [
        T0 - timedelta(minutes=1)
    ]
    assert closed_ends(after=None, now=T0 + timedelta(seconds=5), **first) == [T0]
    assert closed_ends(after=T0, now=T0 + timedelta(seconds=30), **args) == []
    later = T0 + timedelta(minutes=3, seconds=5)
    assert closed_ends(after=T0, now=later, **args) == [
        T0 + timedelta(minutes=m) for m in (1, 2, 3)
    ]


def test_catching_up_is_bounded_to_the_newest_windows() -> None:
    now = T0 + timedelta(hours=5, seconds=10)
    ends = closed_ends(after=T0, now=now, interval_s=60, grace_s=5, max_windows=4)
    assert ends == [T0 + timedelta(hours=5) - timedelta(minutes=m) for m in (3, 2, 1, 0)]
    assert closed_ends(after=None, now=now, interval_s=60, grace_s=5, max_windows=1) == [
        T0 + timedelta(hours=5)
    ]


def test_merging_counters_sums_and_bounds_the_addresses() -> None:
    a = BrokerCounters(connects=1, messages=5, bytes=100, addresses=frozenset({"10.0.0.1"}))
    b = BrokerCounters(
        connects=2, refusals=1, disconnects=1, denied=4, messages=1, bytes=7,
        addresses=frozenset(f"10.0.1.{i}" for i in range(20)),
    )  # fmt: skip
    merged = merge_counters(a, b)
    assert (merged.connects, merged.refusals, merged.disconnects) == (3, 1, 1)
    assert (merged.denied, merged.messages, merged.bytes) == (4, 6, 107)
    assert len(merged.addresses) == 16
    assert merge_counters(BrokerCounters(), a) == a


def test_the_security_log_is_counted_per_device() -> None:
    events: list[tuple[str, str, dict[str, Any]]] = [
        ("enrollment.refused", f"device:{DEV}", {"code": "est.csr.key"}),
        ("enrollment.refused", f"device:{DEV}", {"aggregated": True, "count": 40}),
        ("enrollment.refused", "unknown", {"code": "est.auth.missing"}),  # nobody to charge
        ("attestation.failed", f"device:{DEV}", {"codes": ["a", "b", "c"]}),
        ("attestation.failed", f"device:{DEV}", {"codes": []}),
        ("attestation.missed", "device:dev-00000002", {"challenge": "x"}),
        ("device.quarantined", f"device:{DEV}", {}),  # not a signal
    ]
    assert count_store_signals(events) == {
        DEV: StoreSignals(est_refusals=41, attestation_findings=4),
        "dev-00000002": StoreSignals(missed_challenges=1),
    }


def test_a_service_record_names_every_service_metric() -> None:
    broker = BrokerCounters(connects=2, bytes=9, addresses=frozenset({"::1"}))
    record = service_record(
        DEV, model="gw", end=T0, interval_s=60, broker=broker, store=StoreSignals(est_refusals=1)
    )
    assert record.source == "service"
    assert set(record.numbers) == set(SERVICE_NUMBERS)
    assert set(record.sets) == set(SERVICE_SETS)
    assert record.numbers["svc-connect-attempts"] == 2
    assert record.numbers["svc-bytes-in"] == 9
    assert record.numbers["svc-est-refusals"] == 1
    quiet = service_record(DEV, model="gw", end=T0, interval_s=60, broker=None, store=None)
    assert set(quiet.numbers) == set(SERVICE_NUMBERS) and not quiet.sets
