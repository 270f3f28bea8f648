"""Device messages from MQTT: validation (pure), batched storage, bounded retention.

The contract is docs/mqtt.md. :func:`parse_message` is the verifier: a pure function of the
topic, the payload bytes, the bounds and ``now``, which checks every bound the store will apply
(so a bad message is refused alone, before it joins a batch). :func:`store_batch` writes one
batch in one transaction; :func:`store_isolating` splits a batch the store still refuses until
the culprit is alone; :func:`apply_retention` bounds the telemetry table by age and row count.
Nothing here keeps per-device state between calls (ARCHITECTURE §4): whether a device may
still report is read from the store for every batch.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from trustfleet.errors import InvalidInput, TrustFleetError, Unavailable
from trustfleet.ota.status_report import OtaStatus, parse_ota_status
from trustfleet.pki import DEVICE_ID_PATTERN
from trustfleet.services._campaign_reports import apply_ota_reports
from trustfleet.services._ingest_checks import (
    MAX_METRIC_NAME_CHARS,
    MAX_METRICS,
    MAX_SEQ,
    MAX_TS_CHARS,
    IngestLimits,
    check_boot,
    check_metrics_object,
    check_seq,
    load_body,
    parse_ts,
)
from trustfleet.store import NewTelemetry, Transaction, UnitOfWork, check_command_result
from trustfleet.wire import DEVICE_TOPIC_ROOT, INGEST_GROUP, shared_filter

__all__ = [
    "INGEST_GROUP",
    "MAX_METRICS",
    "MAX_METRIC_NAME_CHARS",
    "MAX_SEQ",
    "MAX_TS_CHARS",
    "MESSAGE_FAULTS",
    "MESSAGE_KINDS",
    "BatchOutcome",
    "DeviceMessage",
    "IngestLimits",
    "Rejection",
    "RetentionOutcome",
    "apply_retention",
    "command_result",
    "fault_code",
    "ingest_subscriptions",
    "parse_message",
    "store_batch",
    "store_isolating",
]

logger = logging.getLogger(__name__)

TOPIC_ROOT: Final = DEVICE_TOPIC_ROOT
MessageKind = Literal["telemetry", "events", "cmd/result", "ota/status"]
MESSAGE_KINDS: Final[tuple[MessageKind, ...]] = ("telemetry", "events", "cmd/result", "ota/status")
DEFAULT_LIMITS: Final = IngestLimits()
_ACCEPTING_STATES: Final = frozenset({"enrolled"})
"""Only an enrolled device holds a device-CA certificate the broker accepts."""

MESSAGE_FAULTS: Final[tuple[type[BaseException], ...]] = (
    TrustFleetError,
    ValueError,  # and UnicodeError, json's JSONDecodeError
    TypeError,
    LookupError,
    ArithmeticError,  # OverflowError (datetime arithmetic), ZeroDivisionError
    AttributeError,
    RecursionError,
    struct.error,  # TPM structures in attestation evidence
)
"""What processing one device message can raise: a message's fault, never the process's.

The ingest worker's one boundary (:mod:`trustfleet.server.ingest_worker`) catches exactly these per
message and drops that message alone; :func:`store_isolating` splits a batch on them. Errors
of the process itself (``MemoryError``, ``OSError``, ``KeyboardInterrupt``) are not listed:
they end the worker and its supervisor restarts it. :class:`~trustfleet.errors.Unavailable`
is a ``TrustFleetError`` but the store's fault: callers test for it first.
"""


def fault_code(exc: BaseException) -> str:
    """The stable code of a message fault: its own code, else ``ingest.internal``."""
    if isinstance(exc, TrustFleetError):
        return exc.code or f"ingest.{exc.category}"
    return "ingest.internal"


def ingest_subscriptions(group: str = INGEST_GROUP) -> tuple[str, ...]:
    """The MQTT 5 shared subscriptions of the ingest workers, one per message kind."""
    return tuple(shared_filter(group, kind) for kind in MESSAGE_KINDS)


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
        boot: The device's per-boot id, if it sent one.
    """

    device_id: str
    kind: MessageKind
    ts: datetime
    seq: int
    body: Mapping[str, Any]
    ota: OtaStatus | None = None
    boot: str | None = None


def parse_message(
    topic: str, payload: bytes, *, now: datetime, limits: IngestLimits = DEFAULT_LIMITS
) -> DeviceMessage:
    """Check one message against the tf/v1 contract and every bound the store applies.

    Args:
        topic: The topic it was published on.
        payload: Its payload.
        now: The receiving time (timezone-aware): ``ts`` must lie near it.
        limits: The bounds.

    Returns:
        The message.

    Raises:
        InvalidInput: The topic, size, encoding or content breaks the contract; the code
            (``ingest.topic``, ``ingest.too_large``, ``ingest.not_json``, ``ingest.not_object``,
            ``ingest.too_deep``, ``ingest.field``, ``ingest.ts_range``, ``ingest.range``) says
            which.
    """
    device_id, kind = _parse_topic(topic)
    body = load_body(payload, limits)
    ts = parse_ts(body.get("ts"), now=now, limits=limits)
    seq = check_seq(body.get("seq"))
    boot = check_boot(body.get("boot"))
    if kind == "telemetry":
        check_metrics_object(body.get("metrics"))
    elif kind == "events" and not isinstance(body.get("type"), str):
        raise InvalidInput("an event needs a string 'type'", code="ingest.field")
    elif kind == "cmd/result":
        command_result(body)
    ota = parse_ota_status(body) if kind == "ota/status" else None
    return DeviceMessage(
        device_id=device_id, kind=kind, ts=ts, seq=seq, body=body, ota=ota, boot=boot
    )


def command_result(body: Mapping[str, Any]) -> dict[str, Any]:
    """The result a ``cmd/result`` body carries, as the store keeps it: its ``result`` object
    (``{}`` without one) with its ``error`` text, if any, under ``"error"``.

    Raises:
        InvalidInput: No string ``id`` (at most 64 characters: a command id) or no boolean ``ok``, a
            ``result`` that is not an object or an ``error`` that is not text (``ingest.field``),
            or a result too large for the store (``store.details_too_large``).
    """
    command_id, result, error = body.get("id"), body.get("result", {}), body.get("error")
    named = isinstance(command_id, str) and len(command_id) <= 64
    if not named or not isinstance(body.get("ok"), bool):
        raise InvalidInput("a command result needs 'id' and 'ok'", code="ingest.field")
    if not isinstance(result, dict) or not isinstance(error, str | None):
        raise InvalidInput("'result' must be an object, 'error' text", code="ingest.field")
    return check_command_result(result if error is None else {**result, "error": error})


def _parse_topic(topic: str) -> tuple[str, MessageKind]:
    prefix = TOPIC_ROOT + "/"
    if topic.startswith(prefix):
        device_id, _, rest = topic[len(prefix) :].partition("/")
        for kind in MESSAGE_KINDS:
            if rest == kind and DEVICE_ID_PATTERN.fullmatch(device_id):
                return device_id, kind
    raise InvalidInput("not a device message topic", code="ingest.topic")


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did.

    Attributes:
        telemetry_rows: Telemetry rows written (a redelivered message is not written again).
        accepted: Messages from devices that may report (every kind).
        refused: Messages dropped because the device is unknown, revoked or not enrolled.
        refused_devices: Those devices' ids.
        ota_applied: ``ota/status`` reports that moved a campaign row.
        commands_answered: ``cmd/result`` messages stored as their command's answer.
    """

    telemetry_rows: int = 0
    accepted: int = 0
    refused: int = 0
    refused_devices: tuple[str, ...] = field(default=())
    ota_applied: int = 0
    commands_answered: int = 0

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(
            telemetry_rows=self.telemetry_rows + other.telemetry_rows,
            accepted=self.accepted + other.accepted,
            refused=self.refused + other.refused,
            refused_devices=tuple(sorted({*self.refused_devices, *other.refused_devices})),
            ota_applied=self.ota_applied + other.ota_applied,
            commands_answered=self.commands_answered + other.commands_answered,
        )


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
                boot=m.boot,
            )
            for m in accepted
            if m.kind == "telemetry"
        ]
        written = tx.telemetry.add_many(rows)
        tx.devices.mark_seen(dict.fromkeys((m.device_id for m in accepted), now))
        reports = [(m.device_id, m.ota) for m in accepted if m.ota is not None]
        ota = apply_ota_reports(tx, reports, now=now)
        answered = _store_results(tx, [m for m in accepted if m.kind == "cmd/result"], now=now)
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
        commands_answered=answered,
    )


def _store_results(tx: Transaction, results: Sequence[DeviceMessage], *, now: datetime) -> int:
    """Store each ``cmd/result`` in its command's row; how many answered a command.

    A result for a command of another device, an unknown one or one already answered changes
    nothing (a device cannot answer another device's command).
    """
    answered = 0
    for m in results:
        stored = tx.commands.answer(
            m.body["id"], device_id=m.device_id, ok=m.body["ok"], result=command_result(m.body),
            now=now,
        )  # fmt: skip
        if not stored:
            logger.info(
                "result from %s for no command of its own: %.64s", m.device_id, m.body["id"]
            )
        answered += stored
    return answered


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message dropped alone: its device, its index in the batch and the error's code."""

    device_id: str
    index: int
    code: str


def store_isolating(
    uow: UnitOfWork, messages: Sequence[DeviceMessage], *, now: datetime, _base: int = 0
) -> tuple[BatchOutcome, tuple[Rejection, ...]]:
    """Store a batch; if it fails because of its content, split it until the culprit is alone.

    A batch that fails with a message fault (:data:`MESSAGE_FAULTS`, other than the store
    being unavailable) is stored as two halves, recursively; a single message that still
    fails is dropped and reported, and every other message is stored (at most
    ``2 * log2(n)`` extra transactions per bad message).

    Args:
        uow: The store.
        messages: Valid messages (from :func:`parse_message`).
        now: The receiving time.

    Returns:
        What was stored, and the messages dropped (index into ``messages``, code).

    Raises:
        Unavailable: The store cannot be reached; halves stored before it are committed
            (a redelivery of them is deduplicated by (device, boot, seq)).
    """
    try:
        return store_batch(uow, messages, now=now), ()
    except Unavailable:
        raise
    except MESSAGE_FAULTS as exc:
        if len(messages) == 1:
            logger.warning(
                "dropped a message of %s that the store refused: %s (%s)",
                messages[0].device_id, fault_code(exc), type(exc).__name__,
            )  # fmt: skip
            return BatchOutcome(), (Rejection(messages[0].device_id, _base, fault_code(exc)),)
    middle = len(messages) // 2
    first, dropped_first = store_isolating(uow, messages[:middle], now=now, _base=_base)
    second, dropped_second = store_isolating(uow, messages[middle:], now=now, _base=_base + middle)
    return first + second, dropped_first + dropped_second


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
