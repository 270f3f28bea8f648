"""The metrics report codec: round trips, and a table of hostile payloads with their codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet import wire
from trustfleet.errors import InvalidInput
from trustfleet.monitoring.records import DEVICE_NUMBERS, MetricsRecord
from trustfleet.monitoring.report import DEFAULT_MAX_MEMBER_CHARS, decode_report, encode_report

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE = "dev-00000001"


def _decode(payload: bytes, *, now: datetime = NOW) -> MetricsRecord:
    return decode_report(
        payload,
        device_id=DEVICE,
        model="gw-1",
        now=now,
        max_bytes=wire.MAX_METRICS_REPORT_BYTES,
        max_set_members=wire.MAX_SET_MEMBERS,
        max_past_s=7 * 86400,
        max_future_s=3600,
        max_member_chars=wire.MAX_SET_MEMBER_CHARS,
    )


def _full() -> MetricsRecord:
    return MetricsRecord(
        device_id=DEVICE,
        model="gw-1",
        source="device",
        end=NOW,
        interval_s=300,
        numbers=dict.fromkeys(DEVICE_NUMBERS, 1.0) | {"cpu-percent": 12.5},
        sets={
            "listening-tcp-ports": frozenset({"22", "8883"}),
            "listening-udp-ports": frozenset({"123"}),
            "destination-ip-addresses": frozenset({"192.0.2.10", "2001:db8::1"}),
            "remote-endpoints": frozenset({"192.0.2.10:8883", "[2001:db8::1]:443"}),
            "executables": frozenset({"a" * 64}),
            "watched-files": frozenset({"/etc/passwd=" + "b" * 64}),
        },
    )


def test_a_full_report_round_trips_in_device_defender_shape() -> None:
    record = _full()
    payload = encode_report(record, report_id=42)
    doc = json.loads(payload)
    assert doc["header"] == {"report_id": 42, "version": "1.0"}
    assert doc["metrics"]["network_stats"]["bytes_in"] == 1
    assert doc["metrics"]["listening_tcp_ports"]["ports"] == [{"port": 22}, {"port": 8883}]
    est = doc["metrics"]["tcp_connections"]["established_connections"]
    assert {"remote_addr": "192.0.2.10:8883"} in est["connections"]
    assert doc["custom_metrics"]["cpu-percent"] == [{"number": 12.5}]
    assert doc["custom_metrics"]["executables"] == [{"string_list": ["a" * 64]}]
    assert _decode(payload) == record
    assert len(payload) < wire.MAX_METRICS_REPORT_BYTES


def test_an_empty_report_is_a_window_without_metrics() -> None:
    record = MetricsRecord(DEVICE, "gw-1", "device", NOW, 60)
    assert _decode(encode_report(record, report_id=0)) == record


def test_limits_agree_with_the_wire() -> None:
    assert wire.MAX_SET_MEMBER_CHARS == DEFAULT_MAX_MEMBER_CHARS
    assert wire.MAX_METRICS_REPORT_BYTES <= wire.MAX_PAYLOAD_BYTES


_PORTS = st.frozensets(st.integers(1, 65535).map(str), max_size=8)
_V4 = st.ip_addresses(v=4).map(str)
_V6 = st.ip_addresses(v=6).map(str)
_HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
_PATHS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_ENDPOINTS = st.one_of(
    st.tuples(_V4, st.integers(1, 65535)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.tuples(_V6, st.integers(1, 65535)).map(lambda t: f"[{t[0]}]:{t[1]}"),
)
_PERCENT = st.floats(0, 100, allow_nan=False, allow_infinity=False)
_NUMBER = st.one_of(st.integers(0, 2**53).map(float), _PERCENT)


@st.composite
def _records(draw: st.DrawFn) -> MetricsRecord:
    names = draw(st.sets(st.sampled_from(DEVICE_NUMBERS)))
    numbers = {name: draw(_PERCENT if "percent" in name else _NUMBER) for name in names}
    sets_: dict[str, frozenset[str]] = {}
    candidates: dict[str, st.SearchStrategy[frozenset[str]]] = {
        "listening-tcp-ports": _PORTS,
        "listening-udp-ports": _PORTS,
        "destination-ip-addresses": st.frozensets(st.one_of(_V4, _V6), max_size=6),
        "remote-endpoints": st.frozensets(_ENDPOINTS, max_size=6),
        "executables": st.frozensets(_HEX, max_size=4),
        "watched-files": st.frozensets(
            st.tuples(_PATHS, _HEX).map(lambda t: f"{t[0]}={t[1]}"), max_size=3
        ),
    }
    for name in draw(st.sets(st.sampled_from(sorted(candidates)))):
        sets_[name] = draw(candidates[name])
    offset_ms = draw(st.integers(-7 * 86400 * 1000, 3600 * 1000))
    return MetricsRecord(
        device_id=DEVICE,
        model="gw-1",
        source="device",
        end=NOW + timedelta(milliseconds=offset_ms),
        interval_s=draw(st.integers(1, 86400)),
        numbers=numbers,
        sets=sets_,
    )


@given(_records(), st.integers(0, 2**63 - 1))
def test_every_record_round_trips(record: MetricsRecord, report_id: int) -> None:
    assert _decode(encode_report(record, report_id=report_id)) == record


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_cleanly(payload: bytes) -> None:
    try:
        _decode(payload)
    except InvalidInput as exc:
        assert str(exc.code).startswith("monitor.report.")


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(encode_report(_full(), report_id=1))
    for path, value in changes.items():
        target = doc
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        target[keys[-1]] = value
    return doc


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


_HOSTILE: list[tuple[str, bytes, str]] = [
    ("oversized", b" " * (wire.MAX_METRICS_REPORT_BYTES + 1), "size"),
    ("not-json", b"{nope", "json"),
    ("not-utf8", b'{"ts": "\xff"}', "json"),
    ("deep-nesting", b"[" * 10_000, "json"),
    ("array", b"[]", "shape"),
    ("unknown-top-field", _bytes(_doc(extra=1)), "field"),
    ("no-header", _bytes({"ts": "2026-03-01T12:00:00Z", "interval_s": 1}), "shape"),
    ("report-id-string", _bytes(_doc(header__report_id="1")), "header"),
    ("report-id-negative", _bytes(_doc(header__report_id=-1)), "header"),
    ("report-id-bool", _bytes(_doc(header__report_id=True)), "header"),
    ("version", _bytes(_doc(header__version="2.0")), "version"),
    ("ts-naive", _bytes(_doc(ts="2026-03-01T12:00:00")), "ts"),
    ("ts-garbage", _bytes(_doc(ts="yesterday")), "ts"),
    ("ts-long", _bytes(_doc(ts="2026-03-01T12:00:00" + "0" * 40 + "Z")), "ts"),
    ("ts-number", _bytes(_doc(ts=1700000000)), "ts"),
    ("ts-future", _bytes(_doc(ts="2026-03-01T14:00:00Z")), "ts"),
    ("ts-ancient", _bytes(_doc(ts="2025-01-01T00:00:00Z")), "ts"),
    ("interval-zero", _bytes(_doc(interval_s=0)), "interval"),
    ("interval-float", _bytes(_doc(interval_s=1.5)), "interval"),
    ("interval-huge", _bytes(_doc(interval_s=10**9)), "interval"),
    ("bytes-negative", _bytes(_doc(metrics__network_stats__bytes_in=-1)), "number"),
    ("bytes-string", _bytes(_doc(metrics__network_stats__bytes_in="1")), "number"),
    ("bytes-bool", _bytes(_doc(metrics__network_stats__bytes_in=True)), "number"),
    ("bytes-huge", _bytes(_doc(metrics__network_stats__bytes_in=2**64)), "number"),
    ("bytes-nan", _bytes(_doc()).replace(b'"bytes_in": 1', b'"bytes_in": NaN'), "number"),
    ("bytes-infinity", _bytes(_doc()).replace(b'"bytes_in": 1', b'"bytes_in": Infinity'), "number"),
    ("cpu-over-100", _bytes(_doc(**{"custom_metrics__cpu-percent": [{"number": 101}]})), "number"),
    (
        "custom-two-values",
        _bytes(_doc(**{"custom_metrics__num-processes": [{"number": 1}] * 2})),
        "shape",
    ),
    (
        "custom-extra-key",
        _bytes(_doc(**{"custom_metrics__num-processes": [{"number": 1, "x": 1}]})),
        "shape",
    ),
    ("custom-unknown", _bytes(_doc(**{"custom_metrics__rootkit": [{"number": 1}]})), "field"),
    ("network-unknown", _bytes(_doc(metrics__network_stats__bytes_sideways=1)), "field"),
    ("port-zero", _bytes(_doc(metrics__listening_tcp_ports__ports=[{"port": 0}])), "port"),
    ("port-high", _bytes(_doc(metrics__listening_tcp_ports__ports=[{"port": 65536}])), "port"),
    ("port-string", _bytes(_doc(metrics__listening_udp_ports__ports=[{"port": "22"}])), "port"),
    ("port-missing", _bytes(_doc(metrics__listening_udp_ports__ports=[{}])), "shape"),
    ("ports-not-list", _bytes(_doc(metrics__listening_tcp_ports__ports={"port": 1})), "shape"),
    (
        "ports-too-many",
        _bytes(
            _doc(metrics__listening_tcp_ports__ports=[{"port": 1}] * (wire.MAX_SET_MEMBERS + 1))
        ),
        "members",
    ),
    (
        "remote-no-port",
        _bytes(
            _doc(
                metrics__tcp_connections__established_connections__connections=[
                    {"remote_addr": "192.0.2.1"}
                ]
            )
        ),
        "address",
    ),
    (
        "remote-hostname",
        _bytes(
            _doc(
                metrics__tcp_connections__established_connections__connections=[
                    {"remote_addr": "evil.example:443"}
                ]
            )
        ),
        "address",
    ),
    (
        "remote-v6-unbracketed",
        _bytes(
            _doc(
                metrics__tcp_connections__established_connections__connections=[
                    {"remote_addr": "2001:db8::1:443"}
                ]
            )
        ),
        "address",
    ),
    (
        "remote-port-zero",
        _bytes(
            _doc(
                metrics__tcp_connections__established_connections__connections=[
                    {"remote_addr": "192.0.2.1:0"}
                ]
            )
        ),
        "address",
    ),
    (
        "local-port-bad",
        _bytes(
            _doc(
                metrics__tcp_connections__established_connections__connections=[
                    {"remote_addr": "192.0.2.1:1", "local_port": 70000}
                ]
            )
        ),
        "port",
    ),
    (
        "ip-not-address",
        _bytes(_doc(**{"custom_metrics__destination-ip-addresses": [{"ip_list": ["999.1.1.1"]}]})),
        "address",
    ),
    (
        "ip-not-string",
        _bytes(_doc(**{"custom_metrics__destination-ip-addresses": [{"ip_list": [3232235777]}]})),
        "member",
    ),
    (
        "executable-not-hash",
        _bytes(_doc(**{"custom_metrics__executables": [{"string_list": ["bash"]}]})),
        "member",
    ),
    (  # the one-match fast path for digests must not let one bad member through
        "executable-upper-case-among-good",
        _bytes(_doc(**{"custom_metrics__executables": [{"string_list": ["a" * 64, "A" * 64]}]})),
        "member",
    ),
    (
        "executable-newline-joined",
        _bytes(
            _doc(**{"custom_metrics__executables": [{"string_list": ["a" * 64 + "\n" + "b" * 64]}]})
        ),
        "member",
    ),
    (
        "member-too-long",
        _bytes(
            _doc(
                **{"custom_metrics__watched-files": [{"string_list": ["/" * 400 + "=" + "a" * 64]}]}
            )
        ),
        "member",
    ),
    (
        "watched-file-control-char",
        _bytes(
            _doc(**{"custom_metrics__watched-files": [{"string_list": ["/etc/\nx=" + "a" * 64]}]})
        ),
        "member",
    ),
    (
        "watched-file-no-hash",
        _bytes(_doc(**{"custom_metrics__watched-files": [{"string_list": ["/etc/passwd"]}]})),
        "member",
    ),
]


@pytest.mark.parametrize(
    ("payload", "what"), [c[1:] for c in _HOSTILE], ids=[c[0] for c in _HOSTILE]
)
def test_hostile_reports_are_refused_with_a_code(payload: bytes, what: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _decode(payload)
    assert caught.value.code == f"monitor.report.{what}"
    assert caught.value.hint
