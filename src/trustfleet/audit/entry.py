"""The bytes of one audit-log entry: a security event as canonical JSON.

An entry is the UTF-8 JSON object of the event with its keys sorted and no spaces::

    {"actor":"operator:alice@host","details":{"reason":"keyCompromise"},
     "origin":"cli host=ops1 pid=4242","outcome":"ok","subject":"device:d1",
     "time":"2026-12-02T15:00:00.123456Z","type":"certificate.revoked"}

Event ``id`` is the entry at leaf index ``id - 1`` of the Merkle tree: its position, which the
tree fixes, is not repeated inside it (so an entry moved to another position can be recognised
there). The encoding is a pure function of the event's fields, so the store keeps only the
fields and anyone can recompute the bytes; :func:`decode_entry` is strict so that two different
byte strings never decode to one event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from trustfleet.errors import InvalidInput

__all__ = ["MAX_ENTRY_BYTES", "AuditEntry", "EntryError", "decode_entry", "encode_entry"]

MAX_ENTRY_BYTES: Final = 65535
"""An entry bundle stores each entry's length in two bytes (C2SP tlog-tiles)."""

_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_KEYS: Final = frozenset({"actor", "details", "origin", "outcome", "subject", "time", "type"})


class EntryError(InvalidInput):
    """Bytes that are not a canonical audit entry."""


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One event as the audit log holds it.

    Attributes:
        id: Position in the log, from 1 (leaf index ``id - 1``); not part of the bytes.
        time: When it happened (UTC, microseconds).
        type: Stable dotted name, e.g. ``certificate.revoked``.
        actor: Who caused it, e.g. ``operator:alice@ops1``, ``device:d1``, ``system``.
        origin: From where, e.g. ``cli host=ops1 pid=4242 tty=/dev/pts/1``, ``est 10.0.0.7``.
        outcome: ``ok`` for a change that took effect, ``refused`` for a refused request.
        subject: What it is about, e.g. ``device:d1``.
        details: Event-specific JSON object.
    """

    id: int
    time: datetime
    type: str
    actor: str
    origin: str
    outcome: str
    subject: str
    details: Mapping[str, Any]


def _time_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise EntryError("an entry's time must be timezone-aware")
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def encode_entry(entry: AuditEntry) -> bytes:
    """The canonical bytes of an entry (sorted keys, no spaces, UTF-8).

    Raises:
        EntryError: The time is naive, a number is not finite, or the entry is too large.
    """
    document = {
        "actor": entry.actor,
        "details": entry.details,
        "origin": entry.origin,
        "outcome": entry.outcome,
        "subject": entry.subject,
        "time": _time_text(entry.time),
        "type": entry.type,
    }
    try:
        text = json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:
        raise EntryError(f"entry {entry.id} is not canonical JSON: {exc}") from None
    data = text.encode("utf-8")
    if len(data) > MAX_ENTRY_BYTES:
        raise EntryError(f"entry {entry.id} is {len(data)} bytes, over {MAX_ENTRY_BYTES}")
    return data


def _no_constant(name: str) -> float:
    raise EntryError(f"entry holds {name}, which JSON does not allow")


def decode_entry(data: bytes, *, id: int) -> AuditEntry:  # the event's id
    """Parse the bytes of entry ``id``; they must be exactly what :func:`encode_entry` writes.

    Raises:
        EntryError: The bytes are not a canonical entry (named field or reason).
    """
    if len(data) > MAX_ENTRY_BYTES:
        raise EntryError(f"entry is {len(data)} bytes, over {MAX_ENTRY_BYTES}")
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EntryError(f"entry is not UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict) or set(document) != _KEYS:
        raise EntryError(f"entry must be an object with exactly the keys {sorted(_KEYS)}")
    entry = _entry_of(document, id=id)
    if encode_entry(entry) != data:
        raise EntryError(f"entry {entry.id} is not in canonical form")
    return entry


def _entry_of(document: dict[str, Any], *, id: int) -> AuditEntry:
    texts = ("actor", "origin", "outcome", "subject", "time", "type")
    for key in texts:
        if not isinstance(document[key], str):
            raise EntryError(f"entry field {key!r} must be a string")
    if id < 1:
        raise EntryError(f"entry id {id} must be a positive integer")
    if not isinstance(document["details"], dict):
        raise EntryError("entry field 'details' must be an object")
    try:
        time = datetime.strptime(document["time"], _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise EntryError(f"entry time {document['time']!r} is not {_TIME_FORMAT}") from None
    return AuditEntry(
        id=id,
        time=time,
        type=document["type"],
        actor=document["actor"],
        origin=document["origin"],
        outcome=document["outcome"],
        subject=document["subject"],
        details=document["details"],
    )
