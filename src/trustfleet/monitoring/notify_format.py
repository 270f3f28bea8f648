"""What receivers get: the webhook body and its signature, and the RFC 5424 syslog message.

Pure: bytes, secrets and ``now`` in, bytes out. ``services/notify.py`` sends them.

Webhook signature (header ``X-TrustFleet-Signature``): ``t=<unix seconds>,v1=<hex>`` where the
hex is HMAC-SHA256 with the shared secret over ``f"{t}.".encode() + body``. A receiver
recomputes it, compares in constant time, and refuses a timestamp further than its tolerance
from its clock (replay). Every notice carries an ``event_id`` that stays the same over retries,
so a receiver that remembers the ids it accepted (for the tolerance window) drops duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.monitoring.records import Severity

__all__ = [
    "MAX_NOTICE_BYTES",
    "MAX_SIGNATURE_HEADER_CHARS",
    "MAX_SYSLOG_BYTES",
    "SIGNATURE_HEADER",
    "SYSLOG_SD_ID",
    "AlertNotice",
    "notice_from_json",
    "syslog_message",
    "verify_webhook",
    "webhook_body",
    "webhook_signature",
]

SIGNATURE_HEADER: Final = "X-TrustFleet-Signature"
MAX_NOTICE_BYTES: Final = 16 * 1024
"""Largest webhook body; larger evidence is replaced by ``{"truncated": true}``."""
MAX_SIGNATURE_HEADER_CHARS: Final = 1024
MAX_SYSLOG_BYTES: Final = 2048
"""Largest syslog message (RFC 5426 §3.2: receivers SHOULD accept 2048 octets)."""
SYSLOG_SD_ID: Final = "trustfleet@32473"
_MAX_SD_VALUE_CHARS: Final = 128
_MAX_SYSLOG_MSG_BYTES: Final = 1024
_BOM: Final = b"\xef\xbb\xbf"
_FACILITY: Final = 4  # security/authorization messages (RFC 5424 table 1)
_SYSLOG_SEVERITY: Final[dict[str, int]] = {"critical": 2, "high": 3, "medium": 4, "low": 5}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertNotice:
    """An alert as it is sent to receivers.

    Attributes:
        event_id: Unique per notification, the same over its retries (receivers dedupe on it).
        alert_id: The alert's id.
        device_id: The device.
        kind: The alert's kind, e.g. ``monitor.volume.high``.
        severity: ``low`` to ``critical``.
        state: The alert's state when the notice was written.
        summary: One readable line.
        evidence: JSON detail of the findings.
        first_seen: The alert's first finding.
        last_seen: Its last finding.
        created_at: When the notice was written.
    """

    event_id: str
    alert_id: int
    device_id: str
    kind: str
    severity: Severity
    state: str
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    first_seen: datetime
    last_seen: datetime
    created_at: datetime


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_body(notice: AlertNotice) -> bytes:
    """The JSON body of a webhook (UTF-8, sorted keys, at most :data:`MAX_NOTICE_BYTES`)."""
    doc: dict[str, Any] = {
        "type": "trustfleet.alert",
        "event_id": notice.event_id,
        "alert_id": notice.alert_id,
        "device_id": notice.device_id,
        "kind": notice.kind,
        "severity": notice.severity,
        "state": notice.state,
        "summary": notice.summary[:300],
        "evidence": dict(notice.evidence),
        "first_seen": _iso(notice.first_seen),
        "last_seen": _iso(notice.last_seen),
        "created_at": _iso(notice.created_at),
    }
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    if len(body) > MAX_NOTICE_BYTES:
        doc["evidence"] = {"truncated": True}
        body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return body


def notice_from_json(body: bytes) -> AlertNotice:
    """The notice a :func:`webhook_body` holds (the outbox stores the body).

    Raises:
        InvalidInput: Not such a body (``monitor.notice.invalid``).
    """
    try:
        doc = json.loads(body)
        return AlertNotice(
            event_id=str(doc["event_id"]), alert_id=int(doc["alert_id"]),
            device_id=str(doc["device_id"]), kind=str(doc["kind"]), severity=doc["severity"],
            state=str(doc["state"]), summary=str(doc["summary"]), evidence=dict(doc["evidence"]),
            first_seen=datetime.fromisoformat(doc["first_seen"]),
            last_seen=datetime.fromisoformat(doc["last_seen"]),
            created_at=datetime.fromisoformat(doc["created_at"]),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("not an alert notice", code="monitor.notice.invalid") from exc


def _mac(secret: bytes, body: bytes, timestamp: int) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_signature(secret: bytes, body: bytes, *, timestamp: int) -> str:
    """The ``X-TrustFleet-Signature`` header value: ``t=<timestamp>,v1=<hex HMAC-SHA256>``.

    Args:
        secret: The receiver's shared secret.
        body: The exact body sent.
        timestamp: Unix seconds of the attempt.
    """
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def verify_webhook(secret: bytes, body: bytes, header: str, *, now: int, tolerance_s: int) -> None:
    """Check a webhook's signature header the way a receiver should.

    Several ``v1=`` values are accepted (any one matching: a sender rotating secrets); the
    comparison is constant-time; a timestamp more than ``tolerance_s`` from ``now`` is refused,
    so a captured request cannot be replayed later. Within the window, drop duplicates by the
    body's ``event_id``.

    Raises:
        VerificationFailed: Malformed header, stale or future timestamp, or no matching
            signature (codes ``monitor.webhook.header``, ``.stale``, ``.signature``).
    """
    timestamp, macs = _parse_header(header)
    if abs(now - timestamp) > tolerance_s:
        raise VerificationFailed(
            "the webhook's timestamp is outside the tolerance", code="monitor.webhook.stale"
        )
    expected = _mac(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, m) for m in macs):
        raise VerificationFailed(
            "the webhook's signature does not match", code="monitor.webhook.signature"
        )


def _parse_header(header: str) -> tuple[int, list[str]]:
    bad = VerificationFailed("malformed webhook signature header", code="monitor.webhook.header")
    if len(header) > MAX_SIGNATURE_HEADER_CHARS:
        raise bad
    timestamp: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise bad
        if key == "t" and value.isdigit() and len(value) <= 12 and timestamp is None:
            timestamp = int(value)
        elif key == "v1" and len(value) == 64 and value.isascii():
            macs.append(value.lower())
        elif key in ("t", "v1"):
            raise bad
    if timestamp is None or not macs:
        raise bad
    return timestamp, macs


# -- syslog (RFC 5424) --------------------------------------------------------------------------


def _header_field(value: str, *, max_chars: int) -> str:
    """A HEADER field: printable US-ASCII without spaces, or NILVALUE ``-``."""
    cleaned = "".join(c for c in value if "!" <= c <= "~")[:max_chars]
    return cleaned or "-"


def _sd_value(value: str) -> str:
    """A PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (RFC 5424 §6.3.3), bounded."""
    text = value[:_MAX_SD_VALUE_CHARS]
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def syslog_message(
    alert: AlertNotice, *, hostname: str, app_name: str, now: datetime, procid: str = "-"
) -> bytes:
    """An alert as one RFC 5424 message (no transport framing).

    ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID alert [trustfleet@32473 alert=".." device=".."
    kind=".." severity=".."] BOM summary`` — PRI is facility 4 (security) * 8 + the severity
    (critical 2, high 3, medium 4, low 5); at most :data:`MAX_SYSLOG_BYTES`.

    Args:
        alert: The notice.
        hostname: HOSTNAME (sanitised to printable ASCII, at most 255).
        app_name: APP-NAME (at most 48).
        now: TIMESTAMP.
        procid: PROCID (at most 128; ``-`` when unknown).
    """
    pri = _FACILITY * 8 + _SYSLOG_SEVERITY.get(alert.severity, 5)
    header = " ".join(
        (
            f"<{pri}>1",
            _timestamp(now),
            _header_field(hostname, max_chars=255),
            _header_field(app_name, max_chars=48),
            _header_field(procid, max_chars=128),
            "alert",
        )
    )
    params = (
        ("alert", str(alert.alert_id)),
        ("device", alert.device_id),
        ("kind", alert.kind),
        ("severity", alert.severity),
    )
    sd = f"[{SYSLOG_SD_ID} " + " ".join(f'{k}="{_sd_value(v)}"' for k, v in params) + "]"
    prefix = f"{header} {sd} ".encode() + _BOM
    room = min(_MAX_SYSLOG_MSG_BYTES, MAX_SYSLOG_BYTES - len(prefix))
    return prefix + _cut_utf8(f"{alert.device_id}: {alert.summary}", room)


def _cut_utf8(text: str, max_bytes: int) -> bytes:
    """``text`` in UTF-8, cut at a character boundary to at most ``max_bytes``."""
    data = text.replace("\n", " ").encode()
    if len(data) <= max_bytes:
        return data
    return data[:max_bytes].decode("utf-8", "ignore").encode()
