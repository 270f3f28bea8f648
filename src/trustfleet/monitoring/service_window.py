"""Service-side signals of a device (issue 13 §1), pure: the broker's statistics chunks, the
counts taken from the security log, window boundaries, and the ``source="service"`` record.

The broker's guard plugin publishes, every service window, compact JSON chunks of per-device
counters (docs/mqtt.md "Broker statistics"); :func:`decode_broker_stats` checks one against
bounds. :func:`count_store_signals` counts what the security log says of each device in a
window (enrollment refusals, attestation findings, missed challenges), and
:func:`service_record` merges both into one :class:`~trustfleet.monitoring.MetricsRecord`.
Windows end on multiples of the window length since the Unix epoch (:func:`closed_ends`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from trustfleet.errors import InvalidInput
from trustfleet.monitoring.records import MetricsRecord

__all__ = [
    "EST_REFUSAL_TYPES",
    "MAX_SOURCE_ADDRESSES",
    "STORE_SIGNAL_TYPES",
    "BrokerCounters",
    "BrokerStats",
    "StoreSignals",
    "closed_ends",
    "count_store_signals",
    "decode_broker_stats",
    "merge_counters",
    "service_record",
    "window_floor",
]

EST_REFUSAL_TYPES: Final = ("enrollment.refused",)
"""Security events of refused (re-)enrollments; their subject names the device if known."""
STORE_SIGNAL_TYPES: Final = (*EST_REFUSAL_TYPES, "attestation.failed", "attestation.missed")
"""Every security-event type a service window counts."""
MAX_SOURCE_ADDRESSES: Final = 16
"""Source addresses kept per device and window (the plugin sends at most 4 per broker run)."""
_MAX_ADDRESS_CHARS: Final = 45
_ADDRESS_CHARS: Final = frozenset("0123456789abcdefABCDEF.:")
_MAX_COUNT: Final = 2**53
_BROKER_KEYS: Final = {"c": "connects", "r": "refusals", "d": "disconnects", "z": "denied",
                       "m": "messages", "b": "bytes"}  # fmt: skip
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BrokerCounters:
    """What the broker saw of one device in one window."""

    connects: int = 0
    refusals: int = 0
    disconnects: int = 0
    denied: int = 0
    messages: int = 0
    bytes: int = 0
    addresses: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BrokerStats:
    """One statistics chunk of the broker (a window's devices may span several chunks)."""

    boot: str
    seq: int
    part: int
    end: datetime
    interval_s: int
    untracked: int
    unattributed: int
    devices: Mapping[str, BrokerCounters] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreSignals:
    """What the security log says of one device in one window."""

    est_refusals: int = 0
    attestation_findings: int = 0
    missed_challenges: int = 0


def _bad(what: str) -> InvalidInput:
    return InvalidInput(
        f"broker statistics: {what}",
        hint="the guard plugin's chunk format is in docs/mqtt.md",
        code="monitor.broker_stats.invalid",
    )


def _count(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise _bad(f"'{key}' must be a count")
    return value


def _addresses(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or len(value) > MAX_SOURCE_ADDRESSES:
        raise _bad(f"'a' must be a list of at most {MAX_SOURCE_ADDRESSES} addresses")
    for item in value:
        if (
            not isinstance(item, str)
            or not 0 < len(item) <= _MAX_ADDRESS_CHARS
            or not set(item) <= _ADDRESS_CHARS
        ):
            raise _bad("an address is not an IP address")
    return frozenset(value)


def _device_counters(doc: Any) -> BrokerCounters:
    if not isinstance(doc, dict):
        raise _bad("a device's counters must be an object")
    values = {name: _count(doc, key) for key, name in _BROKER_KEYS.items()}
    return BrokerCounters(**values, addresses=_addresses(doc.get("a", [])))


def _header(doc: dict[str, Any], *, device_id_pattern: re.Pattern[str]) -> dict[str, Any]:
    boot = doc.get("boot")
    if not isinstance(boot, str) or not 0 < len(boot) <= 32 or not boot.isalnum():
        raise _bad("'boot' must be a short alphanumeric id")
    interval_s, end = _count(doc, "interval_s"), _count(doc, "end")
    if not 0 < interval_s <= 86_400 or end % interval_s:
        raise _bad("'end' must be a multiple of 'interval_s' (1..86400)")
    devices = doc.get("devices")
    if not isinstance(devices, dict):
        raise _bad("'devices' must be an object")
    if any(not device_id_pattern.fullmatch(str(name)) for name in devices):
        raise _bad("a device key is not a device id")
    return {"boot": boot, "interval_s": interval_s, "end": end, "devices": devices}


def decode_broker_stats(
    payload: bytes, *, max_bytes: int, device_id_pattern: re.Pattern[str]
) -> BrokerStats:
    """Parse and check one statistics chunk of the broker's guard plugin.

    Args:
        payload: The chunk (compact JSON).
        max_bytes: The largest chunk accepted.
        device_id_pattern: A compiled pattern of device ids (``wire.DEVICE_ID_PATTERN``).

    Returns:
        The chunk.

    Raises:
        InvalidInput: ``monitor.broker_stats.invalid``: too large, not JSON, or a field is
            missing, of the wrong type or out of range.
    """
    if len(payload) > max_bytes:
        raise _bad(f"chunk larger than {max_bytes} bytes")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _bad("chunk is not UTF-8 JSON") from exc
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise _bad("chunk is not a version 1 object")
    head = _header(doc, device_id_pattern=device_id_pattern)
    return BrokerStats(
        boot=head["boot"],
        seq=_count(doc, "seq"),
        part=_count(doc, "part"),
        end=_EPOCH + timedelta(seconds=head["end"]),
        interval_s=head["interval_s"],
        untracked=_count(doc, "untracked"),
        unattributed=_count(doc, "unattributed"),
        devices={str(k): _device_counters(v) for k, v in head["devices"].items()},
    )


def merge_counters(a: BrokerCounters, b: BrokerCounters) -> BrokerCounters:
    """The sum of two views of one device's window (e.g. two broker runs in one window)."""
    addresses = sorted(a.addresses | b.addresses)[:MAX_SOURCE_ADDRESSES]
    return BrokerCounters(
        connects=a.connects + b.connects,
        refusals=a.refusals + b.refusals,
        disconnects=a.disconnects + b.disconnects,
        denied=a.denied + b.denied,
        messages=a.messages + b.messages,
        bytes=a.bytes + b.bytes,
        addresses=frozenset(addresses),
    )


def window_floor(at: datetime, interval_s: int) -> datetime:
    """The latest window end at or before ``at`` (windows end on multiples of ``interval_s``
    seconds since the Unix epoch, UTC)."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    seconds = int((at - _EPOCH) // timedelta(seconds=1))
    return _EPOCH + timedelta(seconds=seconds - seconds % interval_s)


def closed_ends(
    *, after: datetime | None, now: datetime, interval_s: int, grace_s: float, max_windows: int
) -> list[datetime]:
    """The ends of the windows to build now, oldest first, at most ``max_windows``.

    A window is closed once ``now`` is ``grace_s`` past its end (late broker chunks can still
    arrive during the grace). Windows already built (ending at or before ``after``) are
    skipped; when ``after`` is None or far behind, only the newest ``max_windows`` closed
    windows are built (bounded work per call, no unbounded backfill).
    """
    last = window_floor(now - timedelta(seconds=grace_s), interval_s)
    step = timedelta(seconds=interval_s)
    first = last - step * (max_windows - 1)
    if after is not None and after + step > first:
        first = window_floor(after, interval_s) + step
    ends: list[datetime] = []
    end = first
    while end <= last and len(ends) < max_windows:
        ends.append(end)
        end += step
    return ends


def _device_of(subject: str) -> str | None:
    prefix, _, device_id = subject.partition(":")
    return device_id if prefix == "device" and device_id else None


def count_store_signals(
    events: Iterable[tuple[str, str, Mapping[str, Any]]],
) -> dict[str, StoreSignals]:
    """Per device, the service signals in security events ``(type, subject, details)``.

    ``enrollment.refused`` counts one refusal (or ``details.count`` for an aggregated summary),
    ``attestation.failed`` its ``details.codes`` (at least one), ``attestation.missed`` one.
    Events whose subject is not ``device:<id>`` are skipped.
    """
    counts: dict[str, list[int]] = {}
    for event_type, subject, details in events:
        device_id = _device_of(subject)
        if device_id is None or event_type not in STORE_SIGNAL_TYPES:
            continue
        slot = counts.setdefault(device_id, [0, 0, 0])
        if event_type in EST_REFUSAL_TYPES:
            count = details.get("count") if details.get("aggregated") else 1
            slot[0] += count if isinstance(count, int) and count > 0 else 1
        elif event_type == "attestation.failed":
            codes = details.get("codes")
            slot[1] += max(1, len(codes)) if isinstance(codes, list) else 1
        else:
            slot[2] += 1
    return {d: StoreSignals(*values) for d, values in counts.items()}


def service_record(
    device_id: str,
    *,
    model: str,
    end: datetime,
    interval_s: int,
    broker: BrokerCounters | None,
    store: StoreSignals | None,
) -> MetricsRecord:
    """The ``source="service"`` window of one device: every ``SERVICE_NUMBERS`` name (zero
    when nothing was seen) and the source addresses when the broker saw the device."""
    b = broker or BrokerCounters()
    s = store or StoreSignals()
    numbers = {
        "svc-connect-attempts": float(b.connects),
        "svc-connect-refusals": float(b.refusals),
        "svc-disconnects": float(b.disconnects),
        "svc-authz-failures": float(b.denied),
        "svc-messages-in": float(b.messages),
        "svc-bytes-in": float(b.bytes),
        "svc-est-refusals": float(s.est_refusals),
        "svc-attestation-findings": float(s.attestation_findings),
        "svc-missed-challenges": float(s.missed_challenges),
    }
    sets = {"svc-source-addresses": b.addresses} if broker is not None else {}
    return MetricsRecord(
        device_id=device_id,
        model=model,
        source="service",
        end=end,
        interval_s=interval_s,
        numbers=numbers,
        sets=sets,
    )
