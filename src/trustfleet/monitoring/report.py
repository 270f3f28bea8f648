"""A device's metrics report on the wire: AWS IoT Device Defender's report shape, both ways.

The agent encodes one :class:`~trustfleet.monitoring.records.MetricsRecord` per interval with
:func:`encode_report`; the service decodes what arrives on ``tf/v1/d/<id>/metrics`` with
:func:`decode_report`. Decoding is strict and bounded (every type, count, length, port, address,
time and number is checked) and fast: ``json.loads`` and direct checks, no model classes. Its
failures are :class:`~trustfleet.errors.InvalidInput` with a ``monitor.report.<what>`` code.

The shape::

    {"header": {"report_id": 1, "version": "1.0"},
     "ts": "2026-01-01T00:05:00Z", "interval_s": 300,
     "metrics": {
       "listening_tcp_ports": {"ports": [{"port": 22}], "total": 1},
       "listening_udp_ports": {"ports": [{"port": 123}], "total": 1},
       "network_stats": {"bytes_in": 1, "bytes_out": 2, "packets_in": 3, "packets_out": 4},
       "tcp_connections": {"established_connections": {
           "connections": [{"remote_addr": "192.0.2.1:8883", "local_port": 40000}],
           "total": 1}}},
     "custom_metrics": {
       "num-processes": [{"number": 50}], "cpu-percent": [{"number": 3.5}],
       "memory-percent": [{"number": 41.0}], "failed-logins": [{"number": 0}],
       "destination-ip-addresses": [{"ip_list": ["192.0.2.1"]}],
       "executables": [{"string_list": ["<sha256 hex>"]}],
       "watched-files": [{"string_list": ["/etc/passwd=<sha256 hex>"]}]}}

``ts`` is the end of the window, ``interval_s`` its length. A metric that was not collected is
absent. IPv6 remote addresses are written ``[addr]:port``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, cast

from trustfleet.errors import InvalidInput
from trustfleet.monitoring._report_encode import encode_custom, encode_metrics, iso
from trustfleet.monitoring._report_names import CUSTOM_NUMBERS, MAX_COUNT, NET, PORTS
from trustfleet.monitoring.records import MetricsRecord

__all__ = [
    "DEFAULT_MAX_MEMBER_CHARS",
    "MAX_INTERVAL_S",
    "REPORT_VERSION",
    "decode_report",
    "encode_report",
]

REPORT_VERSION: Final = "1.0"
"""The ``header.version`` this codec writes and accepts."""
DEFAULT_MAX_MEMBER_CHARS: Final = 320
"""Default bound on one set member (``wire.MAX_SET_MEMBER_CHARS`` is the same value)."""
MAX_INTERVAL_S: Final = 7 * 24 * 3600
"""The longest window a report may describe."""
_MAX_TS_CHARS: Final = 40
_MAX_REPORT_ID: Final = 2**63 - 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA256_LINES = re.compile(r"[0-9a-f]{64}(?:\n[0-9a-f]{64})*")
"""A whole list of digests joined by newlines: one match checks them all (the hot path)."""
_PATH_BAD = re.compile(r"[\x00-\x1f\x7f]")


def encode_report(record: MetricsRecord, *, report_id: int) -> bytes:
    """The UTF-8 JSON report of one device window (Device Defender's shape).

    Only the device metrics of :data:`~trustfleet.monitoring.records.DEVICE_NUMBERS` and
    :data:`~trustfleet.monitoring.records.DEVICE_SETS` are written; others are dropped. The
    caller bounds the size (``wire.MAX_METRICS_REPORT_BYTES``).

    Args:
        record: The window (its ``device_id``/``model`` are not written: the topic names the
            device, the inventory its model).
        report_id: A number naming the report (monotonic per device).

    Returns:
        The compact JSON payload.
    """
    document = {
        "header": {"report_id": int(report_id), "version": REPORT_VERSION},
        "ts": iso(record.end),
        "interval_s": int(record.interval_s),
        "metrics": encode_metrics(record),
        "custom_metrics": encode_custom(record),
    }
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


# -- decoding -------------------------------------------------------------------------------


def _bad(what: str, message: str) -> InvalidInput:
    return InvalidInput(
        f"metrics report: {message}",
        code=f"monitor.report.{what}",
        hint="see docs/mqtt.md (metrics) for the report's shape and limits",
    )


def _obj(value: object, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad("shape", f"{where} must be an object")
    if not value.keys() <= allowed:
        extra = sorted(value.keys() - allowed)[0]
        raise _bad("field", f"unknown field {extra[:40]!r} in {where}")
    return value


def _count(value: object, where: str, upper: float = MAX_COUNT) -> float:
    kind = type(value)  # exact types: a bool is not a number here
    if kind is not int and kind is not float:
        raise _bad("number", f"{where} must be a number")
    number = cast(float, value)
    if 0 <= number <= upper:  # NaN and the infinities fail one side
        return float(number)
    raise _bad("number", f"{where} must be finite, in 0..{upper:g}")


def _list(value: object, where: str, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise _bad("shape", f"{where} must be a list")
    if len(value) > max_items:
        raise _bad("members", f"{where} has {len(value)} items, more than {max_items}")
    return value


def _port(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _bad("port", f"{where} must be a port number 1..65535")
    return value


@lru_cache(maxsize=8192)
def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def _endpoint(text: str) -> str | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or len(port) > 5 or not 1 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        addr = _address(host[1:-1])
        return f"[{addr}]:{int(port)}" if addr and ":" in addr else None
    addr = _address(host)
    return f"{addr}:{int(port)}" if addr and ":" not in addr else None


def _member(value: object, where: str, max_chars: int) -> str:
    if not isinstance(value, str) or not value:
        raise _bad("member", f"{where} members must be non-empty strings")
    if len(value) > max_chars:
        raise _bad("member", f"a member of {where} is longer than {max_chars} characters")
    return value


def _sha_member(value: str) -> str | None:
    return value if _SHA256.fullmatch(value) else None


def _file_member(value: str) -> str | None:
    path, sep, digest = value.rpartition("=")
    if not sep or not path or _PATH_BAD.search(path) or not _SHA256.fullmatch(digest):
        return None
    return value


_CUSTOM_SETS: Final[Mapping[str, tuple[str, Callable[[str], str | None], str]]] = {
    "destination-ip-addresses": ("ip_list", _address, "address"),
    "executables": ("string_list", _sha_member, "member"),
    "watched-files": ("string_list", _file_member, "member"),
}


_CUSTOM_KEYS: Final = frozenset({*CUSTOM_NUMBERS, *_CUSTOM_SETS})
_WHERE: Final = {name: f"metrics.{name}" for name in PORTS}


class _Limits:
    __slots__ = ("chars", "members")

    def __init__(self, members: int, chars: int) -> None:
        self.members = members
        self.chars = chars


_PORT_KEYS: Final = frozenset({"port", "interface"})
_EST_KEYS: Final = frozenset({"established_connections"})
_CONN_LIST_KEYS: Final = frozenset({"connections", "total"})
_CONN_KEYS: Final = frozenset({"remote_addr", "local_port", "local_interface"})
_SECTION_KEYS: Final = frozenset({"ports", "total"})
_HEADER_KEYS: Final = frozenset({"report_id", "version"})
_TOP_KEYS: Final = frozenset({"header", "ts", "interval_s", "metrics", "custom_metrics"})


def _ports(section: dict[str, Any], where: str, lim: _Limits) -> frozenset[str]:
    items = _list(section["ports"], where + ".ports", lim.members)
    out: set[str] = set()
    for item in items:
        port = item.get("port") if type(item) is dict and len(item) == 1 else None
        if type(port) is int and 1 <= port <= 65535:  # the usual case, checked fast
            out.add(str(port))
            continue
        entry = _obj(item, f"{where}.ports[]", _PORT_KEYS)
        if "port" not in entry:
            raise _bad("shape", f"{where}.ports[] needs a 'port'")
        out.add(str(_port(entry["port"], f"{where}.ports[].port")))
    return frozenset(out)


def _connections(section: object, lim: _Limits, numbers: dict[str, float]) -> frozenset[str] | None:
    where = "metrics.tcp_connections"
    body = _obj(section, where, _EST_KEYS)
    est = _obj(
        body.get("established_connections", {}),
        f"{where}.established_connections",
        _CONN_LIST_KEYS,
    )
    if "total" in est:
        numbers["num-established-tcp-connections"] = _count(est["total"], f"{where} total")
    if "connections" not in est:
        return None
    items = _list(est["connections"], f"{where} connections", lim.members)
    out: set[str] = set()
    for item in items:
        conn = _obj(item, "tcp_connections connections[]", _CONN_KEYS)
        remote = _member(conn.get("remote_addr"), "remote_addr", lim.chars)
        endpoint = _endpoint(remote)
        if endpoint is None:
            raise _bad("address", f"remote_addr {remote[:60]!r} is not address:port")
        if "local_port" in conn:
            _port(conn["local_port"], "local_port")
        out.add(endpoint)
    return frozenset(out)


_METRIC_KEYS: Final = frozenset({*PORTS, "network_stats", "tcp_connections"})


def _decode_metrics(
    value: object, lim: _Limits, numbers: dict[str, float], sets: dict[str, frozenset[str]]
) -> None:
    metrics = _obj(value, "metrics", _METRIC_KEYS)
    for section_name, (set_name, total_name) in PORTS.items():
        if section_name not in metrics:
            continue
        where = _WHERE[section_name]
        section = _obj(metrics[section_name], where, _SECTION_KEYS)
        if "ports" in section:
            sets[set_name] = _ports(section, where, lim)
        if "total" in section:
            numbers[total_name] = _count(section["total"], f"{where}.total")
    if "network_stats" in metrics:
        net = _obj(metrics["network_stats"], "metrics.network_stats", frozenset(NET))
        for key, value_ in net.items():
            numbers[NET[key]] = _count(value_, f"network_stats.{key}")
    if "tcp_connections" in metrics:
        endpoints = _connections(metrics["tcp_connections"], lim, numbers)
        if endpoints is not None:
            sets["remote-endpoints"] = endpoints


def _single(value: object, name: str, key: str) -> object:
    if type(value) is not list or len(value) != 1 or type(value[0]) is not dict:
        raise _bad("shape", f"custom metric {name!r} must be a list of one object")
    entry: dict[str, Any] = value[0]
    if len(entry) != 1 or key not in entry:
        raise _bad("shape", f"custom metric {name!r} must hold {key!r} only")
    return entry[key]


def _decode_custom(
    value: object, lim: _Limits, numbers: dict[str, float], sets: dict[str, frozenset[str]]
) -> None:
    custom = _obj(value, "custom_metrics", _CUSTOM_KEYS)
    for name, raw in custom.items():
        if name in CUSTOM_NUMBERS:
            numbers[name] = _count(_single(raw, name, "number"), name, CUSTOM_NUMBERS[name])
            continue
        key, check, what = _CUSTOM_SETS[name]
        items = _list(_single(raw, name, key), name, lim.members)
        if check is _sha_member and _all_digests(items):
            sets[name] = frozenset(items)
            continue
        out: set[str] = set()
        chars = lim.chars
        for item in items:
            fast = type(item) is str and 0 < len(item) <= chars
            member = check(item if fast else _member(item, name, chars))
            if member is None:
                raise _bad(what, f"{str(item)[:60]!r} is not a valid member of {name}")
            out.add(member)
        sets[name] = frozenset(out)


def _all_digests(items: list[Any]) -> bool:
    """Whether every item is a SHA-256 digest in lower-case hex (checked in one match)."""
    if not items:
        return True
    if not all(type(item) is str for item in items):
        return False
    joined = "\n".join(items)
    # n digests of 64 characters joined by n - 1 newlines: a member holding a newline of its own
    # would make the text longer than this, so the length check keeps the match sound.
    return len(joined) == 65 * len(items) - 1 and _SHA256_LINES.fullmatch(joined) is not None


def _header(value: object) -> None:
    header = _obj(value, "header", _HEADER_KEYS)
    rid = header.get("report_id")
    if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= _MAX_REPORT_ID:
        raise _bad("header", "header.report_id must be an integer 0..2^63-1")
    if header.get("version") != REPORT_VERSION:
        raise _bad("version", f"header.version must be {REPORT_VERSION!r}")


def _end(value: object, *, now: datetime, max_past_s: int, max_future_s: int) -> datetime:
    if not isinstance(value, str) or len(value) > _MAX_TS_CHARS:
        raise _bad("ts", "ts must be an ISO 8601 time")
    try:
        end = datetime.fromisoformat(value)
    except ValueError:
        raise _bad("ts", "ts must be an ISO 8601 time") from None
    if end.tzinfo is None:
        raise _bad("ts", "ts must carry a UTC offset")
    end = end.astimezone(UTC)
    if end < now - timedelta(seconds=max_past_s) or end > now + timedelta(seconds=max_future_s):
        raise _bad("ts", f"ts {value!r} is too far from the service's time")
    return end


def _parse(payload: bytes, max_bytes: int) -> dict[str, Any]:
    if not isinstance(payload, bytes | bytearray) or len(payload) > max_bytes:
        raise _bad("size", f"the report is larger than {max_bytes} bytes")
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad("json", "the report is not UTF-8 JSON") from None
    return _obj(document, "the report", _TOP_KEYS)


def decode_report(
    payload: bytes,
    *,
    device_id: str,
    model: str,
    now: datetime,
    max_bytes: int,
    max_set_members: int,
    max_past_s: int,
    max_future_s: int,
    max_member_chars: int = DEFAULT_MAX_MEMBER_CHARS,
) -> MetricsRecord:
    """Check a device's metrics report and return its window (``source="device"``).

    Args:
        payload: The PUBLISH payload.
        device_id: The device (from the topic the broker let it publish on).
        model: The device's model (from the inventory).
        now: The service's time.
        max_bytes: Bound on the payload.
        max_set_members: Bound on the items of any list (ports, connections, addresses…).
        max_past_s: How old the window's end may be.
        max_future_s: How far ahead of ``now`` the window's end may be (clock skew).
        max_member_chars: Bound on one string member.

    Returns:
        The window's record.

    Raises:
        InvalidInput: ``monitor.report.<what>``: ``size``, ``json``, ``shape``, ``field``,
            ``header``, ``version``, ``ts``, ``interval``, ``number``, ``port``, ``address``,
            ``members``, ``member``.
    """
    document = _parse(payload, max_bytes)
    for key in ("header", "ts", "interval_s"):
        if key not in document:
            raise _bad("shape", f"the report needs {key!r}")
    _header(document["header"])
    end = _end(document["ts"], now=now, max_past_s=max_past_s, max_future_s=max_future_s)
    interval = document["interval_s"]
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise _bad("interval", "interval_s must be an integer")
    if not 1 <= interval <= MAX_INTERVAL_S:
        raise _bad("interval", f"interval_s must be in 1..{MAX_INTERVAL_S}")
    lim = _Limits(max_set_members, max_member_chars)
    numbers: dict[str, float] = {}
    sets: dict[str, frozenset[str]] = {}
    _decode_metrics(document.get("metrics", {}), lim, numbers, sets)
    _decode_custom(document.get("custom_metrics", {}), lim, numbers, sets)
    return MetricsRecord(
        device_id=device_id,
        model=model,
        source="device",
        end=end,
        interval_s=interval,
        numbers=numbers,
        sets=sets,
    )
