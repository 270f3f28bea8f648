"""Device messages from MQTT: validation (pure), batched storage, bounded retention.

The contract is docs/mqtt.md. :func:`parse_message` is the verifier: a pure function of the
topic, the payload bytes and the bounds. :func:`store_batch` writes one batch in one
transaction; :func:`apply_retention` bounds the telemetry table by age and by row count.
Nothing here keeps per-device state between calls (ARCHITECTURE §4): whether a device may
still report is read from the store for every batch.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from trustfleet.errors import InvalidInput
from trustfleet.ota.status_report import OtaStatus, parse_ota_status
from trustfleet.pki import DEVICE_ID_PATTERN
from trustfleet.services._campaign_reports import apply_ota_reports
from trustfleet.store import NewTelemetry, UnitOfWork

__all__ = [
    "INGEST_GROUP",
    "MESSAGE_KINDS",
    "BatchOutcome",
    "DeviceMessage",
    "RetentionOutcome",
    "apply_retention",
    "ingest_subscriptions",
    "parse_message",
    "store_batch",
]

logger = logging.getLogger(__name__)

TOPIC_ROOT: Final = "tf/v1/d"
INGEST_GROUP: Final = "ingest"
MessageKind = Literal["telemetry", "events", "cmd/result", "ota/status"]
MESSAGE_KINDS: Final[tuple[MessageKind, ...]] = ("telemetry", "events", "cmd/result", "ota/status")
MAX_METRICS: Final = 256
"""Most metrics in one telemetry message."""
MAX_METRIC_NAME_CHARS: Final = 64
MAX_SEQ: Final = 2**63 - 1
MAX_TS_CHARS: Final = 40
_ACCEPTING_STATES: Final = frozenset({"enrolled"})
"""Only an enrolled device holds a device-CA certificate the broker accepts."""


def ingest_subscriptions(group: str = INGEST_GROUP) -> tuple[str, ...]:
    """The MQTT 5 shared subscriptions of the ingest workers, one per message kind."""
    return tuple(f"$share/{group}/{TOPIC_ROOT}/+/{kind}" for kind in MESSAGE_KINDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceMessage:
    """One valid message from a device.

    Attributes:
        device_id: From the topic (the broker's ACL ties it to the sender's certificate).
        kind: ``telemetry``, ``events``, ``cmd/result`` or ``ota/status``.
        ts: The device's timestamp (UTC).
        seq: The device's per-boot counter.
        body: The whole JSON object.
        ota: The checked report, for ``ota/status``.
    """

    device_id: str
    kind: MessageKind
    ts: datetime
    seq: int
    body: Mapping[str, Any]
    ota: OtaStatus | None = None


def parse_message(topic: str, payload: bytes, *, max_bytes: int) -> DeviceMessage:
    """Check one message against the tf/v1 contract.

    Args:
        topic: The topic it was published on.
        payload: Its payload.
        max_bytes: Bound on the payload size.

    Returns:
        The message.

    Raises:
        InvalidInput: The topic, size, encoding or content breaks the contract; the code
            (``ingest.topic``, ``ingest.too_large``, ``ingest.not_json``, ``ingest.not_object``,
            ``ingest.field``) says which.
    """
    device_id, kind = _parse_topic(topic)
    if len(payload) > max_bytes:
        raise InvalidInput(f"payload over {max_bytes} bytes", code="ingest.too_large")
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInput("payload is not UTF-8 JSON", code="ingest.not_json") from exc
    if not isinstance(body, dict):
        raise InvalidInput("payload is not a JSON object", code="ingest.not_object")
    ts = _parse_ts(body.get("ts"))
    seq = body.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise InvalidInput("seq must be a non-negative integer", code="ingest.field")
    if kind == "telemetry":
        _check_metrics(body.get("metrics"))
    elif kind == "events" and not isinstance(body.get("type"), str):
        raise InvalidInput("an event needs a string 'type'", code="ingest.field")
    elif kind == "cmd/result" and not (
        isinstance(body.get("id"), str) and isinstance(body.get("ok"), bool)
    ):
        raise InvalidInput("a command result needs 'id' and 'ok'", code="ingest.field")
    ota = parse_ota_status(body) if kind == "ota/status" else None
    return DeviceMessage(device_id=device_id, kind=kind, ts=ts, seq=seq, body=body, ota=ota)


def _parse_topic(topic: str) -> tuple[str, MessageKind]:
    prefix = TOPIC_ROOT + "/"
    if topic.startswith(prefix):
        device_id, _, rest = topic[len(prefix) :].partition("/")
        for kind in MESSAGE_KINDS:
            if rest == kind and DEVICE_ID_PATTERN.fullmatch(device_id):
                return device_id, kind
    raise InvalidInput("not a device message topic", code="ingest.topic")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _parse_ts(value: object) -> datetime:
    if not isinstance(value, str) or len(value) > MAX_TS_CHARS:
        raise InvalidInput("ts must be an RFC 3339 string", code="ingest.field")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("ts must be an RFC 3339 string", code="ingest.field") from exc
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise InvalidInput("ts must carry a UTC offset", code="ingest.field")
    return ts.astimezone(UTC)


def _check_metrics(value: object) -> None:
    if not isinstance(value, dict) or len(value) > MAX_METRICS:
        raise InvalidInput(
            f"metrics must be an object of at most {MAX_METRICS} entries", code="ingest.field"
        )
    for name, number in value.items():
        if not 1 <= len(name) <= MAX_METRIC_NAME_CHARS:
            raise InvalidInput("a metric name is empty or too long", code="ingest.field")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InvalidInput(f"metric {name!r} is not a number", code="ingest.field")
        if isinstance(number, float) and not math.isfinite(number):
            raise InvalidInput(f"metric {name!r} is not finite", code="ingest.field")


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did.

    Attributes:
        telemetry_rows: Telemetry rows written.
        accepted: Messages from devices that may report (every kind).
        refused: Messages dropped because the device is unknown, revoked or not enrolled.
        refused_devices: Those devices' ids.
        ota_applied: ``ota/status`` reports that moved a campaign row.
    """

    telemetry_rows: int = 0
    accepted: int = 0
    refused: int = 0
    refused_devices: tuple[str, ...] = field(default=())
    ota_applied: int = 0


def store_batch(
    uow: UnitOfWork, messages: Sequence[DeviceMessage], *, now: datetime
) -> BatchOutcome:
    """Write a batch of valid messages in one transaction.

    Messages of devices that are not registered and enrolled (revoked, decommissioned,
    unknown) are dropped. Telemetry becomes rows; ``ota/status`` reports move their campaign
    rows (:mod:`trustfleet.services.campaigns`); every accepted message moves its device's
    ``last_seen_at`` to ``now``.

    Args:
        uow: The store.
        messages: Valid messages (from :func:`parse_message`), at most 1000 devices.
        now: The receiving time (timezone-aware).

    Returns:
        The outcome.

    Raises:
        Unavailable: The store cannot be reached or stayed locked.
    """
    if not messages:
        return BatchOutcome()
    with uow.begin() as tx:
        states = tx.devices.states(m.device_id for m in messages)
        accepted = [m for m in messages if states.get(m.device_id) in _ACCEPTING_STATES]
        rows = [
            NewTelemetry(
                device_id=m.device_id,
                received_at=now,
                device_ts=m.ts,
                seq=m.seq,
                metrics=m.body["metrics"],
            )
            for m in accepted
            if m.kind == "telemetry"
        ]
        written = tx.telemetry.add_many(rows)
        tx.devices.mark_seen(dict.fromkeys((m.device_id for m in accepted), now))
        reports = [(m.device_id, m.ota) for m in accepted if m.ota is not None]
        ota = apply_ota_reports(tx, reports, now=now)
    refused = sorted({m.device_id for m in messages} - {m.device_id for m in accepted})
    for m in accepted:
        if m.kind != "telemetry":
            what = m.body.get("type", m.body.get("id"))
            logger.debug("%s from %s: %s", m.kind, m.device_id, what)
    return BatchOutcome(
        telemetry_rows=written,
        accepted=len(accepted),
        refused=len(messages) - len(accepted),
        refused_devices=tuple(refused),
        ota_applied=ota.applied,
    )


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    """Rows the retention job deleted: by age, then beyond the row bound."""

    expired: int
    trimmed: int


def apply_retention(
    uow: UnitOfWork, *, now: datetime, retention_days: int, max_rows: int
) -> RetentionOutcome:
    """Delete telemetry older than the window, then the oldest rows beyond ``max_rows``.

    Args:
        uow: The store.
        now: The current time (timezone-aware).
        retention_days: Rows received more than this many days before ``now`` go.
        max_rows: At most this many rows remain (globally).

    Returns:
        How many rows went, and why.
    """
    with uow.begin() as tx:
        expired = tx.telemetry.delete_received_before(now - timedelta(days=retention_days))
        trimmed = tx.telemetry.trim_to(max_rows)
    if expired or trimmed:
        logger.info("telemetry retention: %d expired, %d over the bound", expired, trimmed)
    return RetentionOutcome(expired=expired, trimmed=trimmed)
