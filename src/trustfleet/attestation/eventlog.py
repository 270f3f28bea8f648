"""The measured-boot event log (docs/attestation.md): parsing with bounds, and replay.

The log is a JSON array with one object per PCR extend, in order::

    {"pcr": 9, "type": "EV_IPL", "digest": "<hex sha256>", "component": "image",
     "detail": "slot a, release 2.0.0"}

Replaying it from all-zero PCRs (``PCR := SHA-256(PCR || digest)``) must give the PCR values the
TPM quoted; only then are its entries evidence of what ran.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from trustfleet.errors import InvalidInput

__all__ = [
    "DIGEST_BYTES",
    "MAX_PCR_INDEX",
    "ZERO_PCR",
    "EventLogEntry",
    "composite_digest",
    "eventlog_to_json",
    "extend",
    "parse_eventlog",
    "replay",
]

DIGEST_BYTES: Final = 32
"""SHA-256: the only bank the log describes."""
MAX_PCR_INDEX: Final = 23
"""A PC Client TPM has PCRs 0-23."""
ZERO_PCR: Final = bytes(DIGEST_BYTES)
"""A PCR's value after a TPM reset (locality 0)."""

_KEYS: Final = frozenset({"pcr", "type", "digest", "component", "detail"})
_MALFORMED: Final = "attestation.evidence.malformed"


class EventLogEntry(NamedTuple):
    """One extend of one PCR (a ``NamedTuple``: immutable, and cheap to make per verification).

    Attributes:
        pcr: The PCR index.
        type: The TCG event type, e.g. ``EV_IPL``.
        digest: The SHA-256 digest extended into the PCR.
        component: The boot component measured (``rom``, ``bootloader``, ``image``, ``agent``).
        detail: Free text for people (slot, release).
    """

    pcr: int
    type: str
    digest: bytes
    component: str
    detail: str = ""


def _malformed(index: int, message: str) -> InvalidInput:
    return InvalidInput(
        f"event log entry {index}: {message}",
        hint="send the event log as docs/attestation.md describes it",
        code=_MALFORMED,
    )


def _entries(values: list[Any], max_chars: int) -> tuple[EventLogEntry, ...]:
    out = []
    for index, raw in enumerate(values):
        # One inlined fast path for well-formed entries; _why_malformed explains the rest.
        if type(raw) is dict and len(raw) == 4 + ("detail" in raw):
            pcr, hexdigest = raw.get("pcr"), raw.get("digest")
            event_type, component = raw.get("type"), raw.get("component")
            detail = raw.get("detail", "")
            if (
                type(pcr) is int
                and 0 <= pcr <= MAX_PCR_INDEX
                and type(hexdigest) is str
                and len(hexdigest) == 2 * DIGEST_BYTES
                and type(event_type) is str
                and 0 < len(event_type) <= max_chars
                and type(component) is str
                and 0 < len(component) <= max_chars
                and type(detail) is str
                and len(detail) <= max_chars
            ):
                try:
                    digest = bytes.fromhex(hexdigest)  # skips whitespace: the length is checked
                except ValueError:
                    pass
                else:
                    if len(digest) == DIGEST_BYTES:
                        out.append(EventLogEntry(pcr, event_type, digest, component, detail))
                        continue
        raise _why_malformed(raw, index, max_chars)
    return tuple(out)


def _why_malformed(raw: object, index: int, max_chars: int) -> InvalidInput:
    """The error for an entry that failed the checks of :func:`_entries`: its message says why."""
    if not isinstance(raw, dict):
        return _malformed(index, message="not an object")
    if not raw.keys() <= _KEYS:
        return _malformed(index, message="unknown keys")
    if "digest" not in raw:
        return _malformed(index, message="'digest' is required")
    pcr = raw.get("pcr")
    if type(pcr) is not int or not 0 <= pcr <= MAX_PCR_INDEX:
        return _malformed(index, message=f"'pcr' must be an integer 0-{MAX_PCR_INDEX}")
    for key in ("type", "component", "detail"):
        value = raw.get(key, "")
        if type(value) is not str or len(value) > max_chars or (key != "detail" and not value):
            return _malformed(
                index, message=f"'{key}' must be a string of 1-{max_chars} characters"
            )
    return _malformed(index, message="'digest' must be 64 hex digits (SHA-256)")


def parse_eventlog(
    value: object, *, max_entries: int, max_string_chars: int
) -> tuple[EventLogEntry, ...]:
    """Check a decoded JSON event log against the contract and its bounds.

    Args:
        value: The decoded JSON value (it must be an array).
        max_entries: Bound on the number of entries.
        max_string_chars: Bound on every string of an entry.

    Returns:
        The entries, in order.

    Raises:
        InvalidInput: Not an array, too many entries, or an entry breaks the contract
            (``attestation.evidence.malformed``).
    """
    if not isinstance(value, list):
        raise InvalidInput("the event log is not a JSON array", code=_MALFORMED)
    if len(value) > max_entries:
        raise InvalidInput(
            f"the event log has {len(value)} entries, over {max_entries}", code=_MALFORMED
        )
    return _entries(value, max_string_chars)


def extend(pcr_value: bytes, digest: bytes) -> bytes:
    """One PCR extend: ``SHA-256(pcr_value || digest)``."""
    return hashlib.sha256(pcr_value + digest).digest()


def replay(entries: Iterable[EventLogEntry], *, pcrs: Iterable[int]) -> dict[int, bytes]:
    """The values of ``pcrs`` after replaying the log from a TPM reset.

    Args:
        entries: The event log.
        pcrs: The PCRs wanted (entries for other PCRs are skipped).

    Returns:
        PCR index to value; a PCR the log never extends stays all-zero.
    """
    values = dict.fromkeys(pcrs, ZERO_PCR)
    sha256 = hashlib.sha256
    for pcr, _, digest, _, _ in entries:
        current = values.get(pcr)
        if current is not None:
            values[pcr] = sha256(current + digest).digest()
    return values


def composite_digest(values: Mapping[int, bytes], order: Sequence[int]) -> bytes:
    """The quote's ``pcrDigest``: SHA-256 over the PCR values concatenated in selection order."""
    return hashlib.sha256(b"".join(values[pcr] for pcr in order)).digest()


def eventlog_to_json(entries: Iterable[EventLogEntry]) -> list[dict[str, Any]]:
    """The JSON form of a log (what the device sends)."""
    return [
        {
            "pcr": e.pcr,
            "type": e.type,
            "digest": e.digest.hex(),
            "component": e.component,
            "detail": e.detail,
        }
        for e in entries
    ]
