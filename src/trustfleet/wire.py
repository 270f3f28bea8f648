"""The MQTT wire contract (docs/mqtt.md): topics, command payloads and limits, in one place.

Every topic string of the product comes from here: the device namespace
(:data:`DEVICE_TOPIC_ROOT`), the topic of each message kind (:func:`device_topic`), its parser
(:func:`parse_device_topic`) and the shared-subscription filters of the service's workers
(:func:`shared_filter`). The limits of the messages are named here once, and so is the command
message (service -> device, ``cmd`` and ``ota/cmd``) with its encoder and its parser.

Pure: no awscrt, no I/O, no settings. The broker's guard plugin (``broker/plugin/tf_guard.c``)
repeats :data:`DEVICE_TOPIC_ROOT` as a C constant; a unit test keeps the two equal.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from trustfleet.errors import InvalidInput

__all__ = [
    "ATTEST_GROUP",
    "BROKER_STATS_FILTER",
    "BROKER_STATS_TOPIC",
    "COMMAND_NAMES",
    "DEVICE_ID_PATTERN",
    "DEVICE_TOPIC_ROOT",
    "DEVICE_TO_SERVICE",
    "INGEST_GROUP",
    "INGEST_KINDS",
    "LIMITS",
    "MAX_BOOT_CHARS",
    "MAX_BROKER_STATS_BYTES",
    "MAX_CHALLENGE_BYTES",
    "MAX_CHALLENGE_ID_CHARS",
    "MAX_COMMAND_BYTES",
    "MAX_COMMAND_ID_CHARS",
    "MAX_COMMAND_NAME_CHARS",
    "MAX_EVIDENCE_BYTES",
    "MAX_METRICS",
    "MAX_METRICS_REPORT_BYTES",
    "MAX_METRIC_NAME_CHARS",
    "MAX_NONCE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_REQUESTED_PCRS",
    "MAX_SEQ",
    "MAX_SET_MEMBERS",
    "MAX_SET_MEMBER_CHARS",
    "MAX_TS_CHARS",
    "PROTOCOL",
    "SERVICE_TOPIC_ROOT",
    "SERVICE_TO_DEVICE",
    "SHARED_SUBSCRIPTIONS",
    "TOPIC_KINDS",
    "Command",
    "TopicKind",
    "amqp_routing_key",
    "decode_command",
    "device_filter",
    "device_topic",
    "encode_command",
    "encode_device_message",
    "group_filters",
    "parse_device_topic",
    "shared_filter",
    "shared_filters",
    "topic_device",
    "topic_of_routing_key",
]

PROTOCOL: Final = "tf/v1"
"""The contract's name and version: the first two levels of every topic."""
DEVICE_TOPIC_ROOT: Final = f"{PROTOCOL}/d"
"""Every device owns ``tf/v1/d/<device-id>/#`` and nothing else."""
DEVICE_ID_PATTERN: Final = re.compile(r"[a-z0-9-]{8,64}")
"""A device id as it appears in a topic level (the same as ``pki.DEVICE_ID_PATTERN``)."""

TopicKind = Literal[
    "telemetry",
    "events",
    "cmd/result",
    "ota/status",
    "attest/evidence",
    "metrics",
    "cmd",
    "ota/cmd",
    "attest/challenge",
]
TOPIC_KINDS: Final[tuple[TopicKind, ...]] = get_args(TopicKind)
"""Every topic below ``tf/v1/d/<id>/``: device -> service first, then service -> device."""
DEVICE_TO_SERVICE: Final[tuple[TopicKind, ...]] = TOPIC_KINDS[:6]
SERVICE_TO_DEVICE: Final[tuple[TopicKind, ...]] = TOPIC_KINDS[6:]
INGEST_KINDS: Final[tuple[TopicKind, ...]] = ("telemetry", "events", "cmd/result", "ota/status")
"""What the ingest workers store (evidence goes to the attestation verifier)."""
INGEST_GROUP: Final = "ingest"
"""The shared-subscription group of the ingest workers."""
ATTEST_GROUP: Final = "attest"
"""The shared-subscription group of the attestation schedulers (boot announcements)."""
SHARED_SUBSCRIPTIONS: Final[Mapping[str, tuple[TopicKind, ...]]] = {
    INGEST_GROUP: (*INGEST_KINDS, "attest/evidence", "metrics"),
    ATTEST_GROUP: ("events",),
}
"""What each worker group of the service subscribes to, as shared subscriptions."""

# -- limits (docs/mqtt.md "Limits") ---------------------------------------------------------

MAX_PAYLOAD_BYTES: Final = 16 * 1024
"""Default of ``[broker] max_payload_bytes``: the largest PUBLISH a device may send."""
MAX_COMMAND_BYTES: Final = 16 * 1024
"""The largest command payload the service sends."""
MAX_COMMAND_ID_CHARS: Final = 128
"""A command's ``id``."""
MAX_COMMAND_NAME_CHARS: Final = 64
"""A command's ``name``."""
MAX_CHALLENGE_BYTES: Final = 1024
"""The bound on a challenge payload (its JSON is about 120 bytes)."""
MAX_CHALLENGE_ID_CHARS: Final = 128
"""A challenge's ``id``."""
MAX_NONCE_BYTES: Final = 64
"""A challenge's ``nonce``, decoded."""
MAX_REQUESTED_PCRS: Final = 24
"""The PCRs a challenge may ask for (``pcrs``)."""
MAX_EVIDENCE_BYTES: Final = 64 * 1024
"""The bound on an evidence payload (the service's default bound too)."""
MAX_METRICS: Final = 256
"""Names in a telemetry message's ``metrics``."""
MAX_METRIC_NAME_CHARS: Final = 64
"""One metric name."""
MAX_SEQ: Final = 2**63 - 1
"""The largest ``seq`` (a signed 64-bit column)."""
MAX_TS_CHARS: Final = 40
"""The longest ``ts`` text."""
MAX_BOOT_CHARS: Final = 32
"""The longest ``boot`` id (of ``[A-Za-z0-9_-]``)."""
MAX_METRICS_REPORT_BYTES: Final = MAX_PAYLOAD_BYTES
"""The largest metrics report (``metrics``); never above :data:`MAX_PAYLOAD_BYTES`."""
MAX_SET_MEMBERS: Final = 128
"""Items in one list of a metrics report (ports, connections, addresses, hashes, files)."""
MAX_SET_MEMBER_CHARS: Final = 320
"""One string in a metrics report (``remote_addr``, an address, a hash, ``path=sha256``)."""

# -- service topics (issue 13, service-side signals; docs/mqtt.md "Broker statistics") -------

SERVICE_TOPIC_ROOT: Final = f"{PROTOCOL}/s"
"""Topics of the service itself; no device may subscribe or publish there (the guard plugin)."""
BROKER_STATS_TOPIC: Final = f"{SERVICE_TOPIC_ROOT}/broker/stats"
"""Where the broker's guard plugin publishes per-device counters every service window (the
plugin repeats it as ``TF_STATS_TOPIC``; a unit test keeps the two equal)."""
BROKER_STATS_FILTER: Final = f"$share/{INGEST_GROUP}/{BROKER_STATS_TOPIC}"
"""The ingest workers' shared subscription to the broker's statistics (one worker per chunk)."""
MAX_BROKER_STATS_BYTES: Final = 16 * 1024
"""The largest statistics chunk the broker sends (``plugin_opt_stats_max_bytes``)."""

LIMITS: Final[Mapping[str, int]] = {
    "MAX_PAYLOAD_BYTES": MAX_PAYLOAD_BYTES,
    "MAX_COMMAND_BYTES": MAX_COMMAND_BYTES,
    "MAX_COMMAND_ID_CHARS": MAX_COMMAND_ID_CHARS,
    "MAX_COMMAND_NAME_CHARS": MAX_COMMAND_NAME_CHARS,
    "MAX_CHALLENGE_BYTES": MAX_CHALLENGE_BYTES,
    "MAX_CHALLENGE_ID_CHARS": MAX_CHALLENGE_ID_CHARS,
    "MAX_NONCE_BYTES": MAX_NONCE_BYTES,
    "MAX_REQUESTED_PCRS": MAX_REQUESTED_PCRS,
    "MAX_EVIDENCE_BYTES": MAX_EVIDENCE_BYTES,
    "MAX_METRICS": MAX_METRICS,
    "MAX_METRIC_NAME_CHARS": MAX_METRIC_NAME_CHARS,
    "MAX_SEQ": MAX_SEQ,
    "MAX_TS_CHARS": MAX_TS_CHARS,
    "MAX_BOOT_CHARS": MAX_BOOT_CHARS,
    "MAX_METRICS_REPORT_BYTES": MAX_METRICS_REPORT_BYTES,
    "MAX_SET_MEMBERS": MAX_SET_MEMBERS,
    "MAX_SET_MEMBER_CHARS": MAX_SET_MEMBER_CHARS,
    "MAX_BROKER_STATS_BYTES": MAX_BROKER_STATS_BYTES,
}
"""Every limit by name (what docs/mqtt.md lists)."""

# -- topics ---------------------------------------------------------------------------------


def device_topic(device_id: str, kind: str) -> str:
    """``tf/v1/d/<device-id>/<kind>``.

    Raises:
        InvalidInput: ``device_id`` is not a device id (it could name another device's
            namespace or a wildcard), or ``kind`` is not a topic of the contract.
    """
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise InvalidInput(f"{str(device_id)[:70]!r} is not a device id", code="mqtt.device_id")
    if kind not in TOPIC_KINDS:
        raise InvalidInput(f"{str(kind)[:70]!r} is not a device topic", code="mqtt.topic")
    return f"{DEVICE_TOPIC_ROOT}/{device_id}/{kind}"


def parse_device_topic(topic: str) -> tuple[str, TopicKind] | None:
    """The device id and kind of ``tf/v1/d/<device-id>/<kind>``, else None."""
    prefix = DEVICE_TOPIC_ROOT + "/"
    if not isinstance(topic, str) or not topic.startswith(prefix):
        return None
    device_id, _, rest = topic[len(prefix) :].partition("/")
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        return None
    for kind in TOPIC_KINDS:
        if rest == kind:
            return device_id, kind
    return None


def topic_device(topic: str) -> str | None:
    """The device id of any topic in a device's namespace ``tf/v1/d/<device-id>/…``, else None."""
    prefix = DEVICE_TOPIC_ROOT + "/"
    if not isinstance(topic, str) or not topic.startswith(prefix):
        return None
    device_id, slash, rest = topic[len(prefix) :].partition("/")
    return device_id if slash and rest and DEVICE_ID_PATTERN.fullmatch(device_id) else None


def amqp_routing_key(topic: str) -> str:
    """The routing key of ``amq.topic`` that RabbitMQ's MQTT plugin gives an MQTT topic or filter.

    Levels are joined by ``.`` instead of ``/``; the filter wildcard ``+`` is ``*`` (``#`` stays).
    Our topics never hold a ``.``: device ids are ``[a-z0-9-]``, kinds are fixed.
    """
    return topic.replace("/", ".").replace("+", "*")


def topic_of_routing_key(key: str) -> str:
    """The MQTT topic of a routing key of a message published by an MQTT client (the inverse)."""
    return key.replace(".", "/")


def device_filter(device_id: str) -> str:
    """``tf/v1/d/<device-id>/#``: one device's whole namespace (``+`` for every device).

    Raises:
        InvalidInput: Neither a device id nor ``+``.
    """
    if device_id != "+" and not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise InvalidInput(f"{device_id[:70]!r} is not a device id", code="mqtt.device_id")
    return f"{DEVICE_TOPIC_ROOT}/{device_id}/#"


def shared_filters(group: str) -> tuple[str, ...]:
    """Every shared subscription of a worker group (:data:`SHARED_SUBSCRIPTIONS`)."""
    return tuple(shared_filter(group, kind) for kind in SHARED_SUBSCRIPTIONS[group])


def group_filters(group: str) -> tuple[str, ...]:
    """A worker group's filters without ``$share`` (``tf/v1/d/+/<kind>``): what a RabbitMQ
    group queue is bound for, where the queue itself shares the messages out."""
    return tuple(
        shared_filter(group, kind).split("/", 2)[2] for kind in SHARED_SUBSCRIPTIONS[group]
    )


def shared_filter(group: str, kind: str) -> str:
    """The MQTT 5 shared subscription ``$share/<group>/tf/v1/d/+/<kind>`` of a worker group."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", group) or kind not in TOPIC_KINDS:
        raise InvalidInput(f"no shared subscription for {group!r}/{kind!r}", code="mqtt.topic")
    return f"$share/{group}/{DEVICE_TOPIC_ROOT}/+/{kind}"


# -- device messages (device -> service: telemetry, events, cmd/result, ota/status) ----------


def encode_device_message(
    document: Mapping[str, Any],
    *,
    seq: int,
    now: datetime,
    max_bytes: int,
    boot: str | None = None,
) -> bytes:
    """The UTF-8 JSON payload ``{"ts", "seq", "boot", **document}`` of a device message.

    ``(device, boot, seq)`` names a message: the service stores it at most once. The
    service's verifier is ``services.ingest.parse_message``.

    Raises:
        ValueError: The payload would be larger than ``max_bytes``.
    """
    ts = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head: dict[str, Any] = (
        {"ts": ts, "seq": seq} if boot is None else {"ts": ts, "seq": seq, "boot": boot}
    )
    payload = json.dumps({**head, **document}, separators=(",", ":")).encode()
    if len(payload) > max_bytes:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {max_bytes}")
    return payload


# -- commands (service -> device: cmd, ota/cmd) ---------------------------------------------

COMMAND_NAMES: Final = ("ping", "report", "update", "reenroll", "decommission")
"""The commands the service sends (``update`` on ``ota/cmd``, the others on ``cmd``).

``reenroll`` (``{"rekey": bool}``): enroll again now (with a new key generated in the token if
``rekey``); ``decommission`` (``{"nonce": hex}``): wipe keys and sealed data and answer with
signed wipe evidence (docs/lifecycle.md)."""


@dataclass(frozen=True)
class Command:
    """A command from the fleet service: ``{"id", "name", "args"}``."""

    id: str
    name: str
    args: dict[str, Any]


def encode_command(
    name: str, args: Mapping[str, Any], *, command_id: str | None = None
) -> tuple[str, bytes]:
    """A command message: its id (a fresh UUID unless given) and its JSON payload.

    Raises:
        InvalidInput: Unknown command, or the payload is not JSON or too large.
    """
    if name not in COMMAND_NAMES:
        raise InvalidInput(f"unknown command '{name}'", hint="one of: " + ", ".join(COMMAND_NAMES))
    command_id = command_id or str(uuid.uuid4())
    try:
        payload = json.dumps(
            {"id": command_id, "name": name, "args": dict(args)}, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidInput("command arguments are not JSON", code="mqtt.command") from exc
    if len(payload) > MAX_COMMAND_BYTES:
        raise InvalidInput(f"command over {MAX_COMMAND_BYTES} bytes", code="mqtt.command")
    return command_id, payload


def decode_command(raw: bytes, *, max_bytes: int) -> Command | str:
    """Parse a command payload; the command, or why it was refused (a short reason).

    A refused payload without a usable ``id`` cannot be answered; the caller logs it.
    """
    if len(raw) > max_bytes:
        return f"payload larger than {max_bytes} bytes"
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "payload is not UTF-8 JSON"
    if not isinstance(doc, dict):
        return "payload is not a JSON object"
    cid, name, args = doc.get("id"), doc.get("name"), doc.get("args", {})
    problem = ""
    if not isinstance(cid, str) or not 0 < len(cid) <= MAX_COMMAND_ID_CHARS:
        problem = "'id' must be a non-empty string"
    elif not isinstance(name, str) or not 0 < len(name) <= MAX_COMMAND_NAME_CHARS:
        problem = "'name' must be a non-empty string"
    elif not isinstance(args, dict):
        problem = "'args' must be an object"
    return problem or Command(id=str(cid), name=str(name), args=args)
