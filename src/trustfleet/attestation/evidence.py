"""The attestation messages on MQTT (docs/attestation.md): challenge and evidence.

* service -> device ``tf/v1/d/<id>/attest/challenge``: ``{"id", "nonce", "pcrs"}``;
* device -> service ``tf/v1/d/<id>/attest/evidence``: ``{"id", "quote", "signature",
  "eventlog", "release", "slot"}``.

:func:`parse_evidence` only checks the shape and the bounds; what the evidence proves is
:func:`~trustfleet.attestation.verify.verify_evidence`'s business.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

from trustfleet.attestation.eventlog import EventLogEntry, eventlog_to_json, parse_eventlog
from trustfleet.attestation.reference import DEFAULT_PCRS
from trustfleet.errors import InvalidInput

__all__ = [
    "NONCE_BYTES",
    "Challenge",
    "Evidence",
    "encode_challenge",
    "encode_evidence",
    "make_challenge",
    "parse_evidence",
]

NONCE_BYTES: Final = 32
"""Random bytes in a challenge nonce."""

_MALFORMED: Final = "attestation.evidence.malformed"
_KEYS: Final = frozenset({"id", "quote", "signature", "eventlog", "release", "slot"})
_HINT: Final = "send the evidence as docs/attestation.md describes it"


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """A challenge the service sent, as the service remembers it.

    Attributes:
        id: The challenge id (echoed in the evidence).
        nonce: The random bytes the quote must carry as ``extraData``.
        issued_at: When it was sent (UTC).
        pcrs: The SHA-256 PCRs the quote must cover.
        used: Whether evidence for it was already accepted.
    """

    id: str
    nonce: bytes
    issued_at: datetime
    pcrs: tuple[int, ...] = DEFAULT_PCRS
    used: bool = False


class Evidence(NamedTuple):
    """An evidence message whose shape and sizes are valid (a cheap immutable record).

    Attributes:
        challenge_id: The challenge it answers.
        quote: The marshalled ``TPMS_ATTEST``.
        signature: The marshalled ``TPMT_SIGNATURE``.
        eventlog: The event log.
        release: The release the device says it runs (optional).
        slot: The slot it says it booted (optional).
    """

    challenge_id: str
    quote: bytes
    signature: bytes
    eventlog: tuple[EventLogEntry, ...]
    release: str | None
    slot: str | None


def make_challenge(
    *, challenge_id: str | None = None, now: datetime, pcrs: Sequence[int] = DEFAULT_PCRS
) -> Challenge:
    """A fresh challenge with a random nonce.

    Args:
        challenge_id: Its id (a random one when omitted).
        now: The issue time.
        pcrs: The PCRs to quote.

    Returns:
        The challenge (not yet used).
    """
    return Challenge(
        id=challenge_id or secrets.token_hex(16),
        nonce=secrets.token_bytes(NONCE_BYTES),
        issued_at=now,
        pcrs=tuple(pcrs),
    )


def encode_challenge(challenge: Challenge) -> bytes:
    """The MQTT payload of a challenge."""
    body = {
        "id": challenge.id,
        "nonce": base64.b64encode(challenge.nonce).decode("ascii"),
        "pcrs": list(challenge.pcrs),
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def encode_evidence(
    *,
    challenge_id: str,
    quote: bytes,
    signature: bytes,
    eventlog: Iterable[EventLogEntry],
    release: str | None = None,
    slot: str | None = None,
) -> bytes:
    """The MQTT payload of evidence (what the device's attester publishes)."""
    body: dict[str, Any] = {
        "id": challenge_id,
        "quote": base64.b64encode(quote).decode("ascii"),
        "signature": base64.b64encode(signature).decode("ascii"),
        "eventlog": eventlog_to_json(eventlog),
    }
    if release is not None:
        body["release"] = release
    if slot is not None:
        body["slot"] = slot
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _malformed(message: str) -> InvalidInput:
    return InvalidInput(message, hint=_HINT, code=_MALFORMED)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant)
"""One decoder for every payload (``json.loads`` with options builds one per call)."""


def _b64(body: dict[str, Any], key: str, max_bytes: int) -> bytes:
    value = body.get(key)
    if not isinstance(value, str):
        raise _malformed(message=f"'{key}' must be base64 text")
    try:
        raw = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise _malformed(message=f"'{key}' is not valid base64") from exc
    if len(raw) > max_bytes:
        raise _malformed(message=f"'{key}' must be base64 of at most {max_bytes} bytes")
    return raw


def _optional_text(body: dict[str, Any], key: str, max_chars: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise _malformed(message=f"'{key}' must be a string of at most {max_chars} characters")
    return value


def parse_evidence(
    payload: bytes,
    *,
    max_bytes: int,
    max_quote_bytes: int,
    max_signature_bytes: int,
    max_eventlog_entries: int,
    max_string_chars: int,
) -> Evidence:
    """Check the shape and the bounds of an evidence payload.

    Args:
        payload: The MQTT payload.
        max_bytes: Bound on the payload.
        max_quote_bytes: Bound on the decoded quote.
        max_signature_bytes: Bound on the decoded signature.
        max_eventlog_entries: Bound on the event log's entries.
        max_string_chars: Bound on every string (id, release, slot, log fields).

    Returns:
        The evidence.

    Raises:
        InvalidInput: Oversized, not UTF-8 JSON, not an object, a field missing or of the
            wrong type, bad base64, a bound exceeded (``attestation.evidence.malformed``).
    """
    if len(payload) > max_bytes:
        raise _malformed(message=f"the evidence is over {max_bytes} bytes")
    try:
        body = _DECODER.decode(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _malformed(message="the evidence is not UTF-8 JSON") from exc
    if not isinstance(body, dict):
        raise _malformed(message="the evidence is not a JSON object")
    if not body.keys() <= _KEYS:
        raise _malformed(message="the evidence has unknown keys")
    challenge_id = body.get("id")
    if not isinstance(challenge_id, str) or not 0 < len(challenge_id) <= max_string_chars:
        raise _malformed(message="'id' must be a non-empty string")
    return Evidence(
        challenge_id=challenge_id,
        quote=_b64(body, "quote", max_quote_bytes),
        signature=_b64(body, "signature", max_signature_bytes),
        eventlog=parse_eventlog(
            body.get("eventlog"),
            max_entries=max_eventlog_entries,
            max_string_chars=max_string_chars,
        ),
        release=_optional_text(body, "release", max_string_chars),
        slot=_optional_text(body, "slot", max_string_chars),
    )
