"""PCR arithmetic in software: extends, expected values, and the PolicyPCR digest.

Pure functions of bytes (no TPM), so the agent can compute the PCR values of a *future* boot
(the next slot's image) and seal a secret to them before it switches slots. Only the SHA-256
bank is used (docs/attestation.md).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping

from trustfleet.errors import InvalidInput

__all__ = [
    "MAX_PCR_INDEX",
    "MAX_REPLAY_EVENTS",
    "SHA256_BYTES",
    "expected_pcrs",
    "extend",
    "pcr_composite_digest",
    "pcr_policy_digest",
    "pcr_selection_bytes",
]

SHA256_BYTES = 32
MAX_PCR_INDEX = 23
"""PCRs 0..23 (a PC Client TPM has 24)."""
MAX_REPLAY_EVENTS = 1024
"""The most events :func:`expected_pcrs` replays (the event log itself is bounded to 64)."""

_TPM_ALG_SHA256 = 0x000B
_TPM_CC_POLICY_PCR = 0x0000017F
_SIZEOF_SELECT = 3  # PCR_SELECT_MIN: 24 PCRs, 3 bytes of bitmap


def _check_pcr(pcr: int) -> None:
    if isinstance(pcr, bool) or not isinstance(pcr, int) or not 0 <= pcr <= MAX_PCR_INDEX:
        raise InvalidInput(
            f"PCR index {pcr!r} is out of range",
            hint=f"use 0..{MAX_PCR_INDEX}",
            code="tpm.pcr.index",
        )


def _check_digest(digest: bytes, what: str) -> None:
    if not isinstance(digest, bytes) or len(digest) != SHA256_BYTES:
        raise InvalidInput(
            f"{what} must be a {SHA256_BYTES}-byte SHA-256 digest",
            hint="pass raw bytes (bytes.fromhex for hex)",
            code="tpm.pcr.digest",
        )


def extend(value: bytes, digest: bytes) -> bytes:
    """One PCR extend: ``SHA-256(value ‖ digest)``.

    Args:
        value: The PCR's current value (32 bytes).
        digest: The measurement (32 bytes).

    Returns:
        The new PCR value.

    Raises:
        InvalidInput: A value is not 32 bytes.
    """
    _check_digest(value, "a PCR value")
    _check_digest(digest, "a measurement")
    return hashlib.sha256(value + digest).digest()


def expected_pcrs(events: Iterable[tuple[int, bytes]]) -> dict[int, bytes]:
    """Replay ``(pcr, digest)`` extends from all-zero PCRs.

    Args:
        events: The extends in order (at most :data:`MAX_REPLAY_EVENTS`).

    Returns:
        The value of every PCR that was extended at least once.

    Raises:
        InvalidInput: A PCR index or digest is malformed, or there are too many events.
    """
    values: dict[int, bytes] = {}
    for count, (pcr, digest) in enumerate(events, start=1):
        if count > MAX_REPLAY_EVENTS:
            raise InvalidInput(
                f"more than {MAX_REPLAY_EVENTS} events to replay", code="tpm.pcr.events"
            )
        _check_pcr(pcr)
        values[pcr] = extend(values.get(pcr, bytes(SHA256_BYTES)), digest)
    return values


def pcr_selection_bytes(pcrs: Iterable[int]) -> bytes:
    """The marshalled ``TPML_PCR_SELECTION`` of one SHA-256 bank selecting ``pcrs``.

    Raises:
        InvalidInput: A PCR index is out of range or the selection is empty.
    """
    bitmap = bytearray(_SIZEOF_SELECT)
    chosen = False
    for pcr in pcrs:
        _check_pcr(pcr)
        bitmap[pcr // 8] |= 1 << (pcr % 8)
        chosen = True
    if not chosen:
        raise InvalidInput("select at least one PCR", code="tpm.pcr.empty")
    return struct.pack(">IHB", 1, _TPM_ALG_SHA256, _SIZEOF_SELECT) + bytes(bitmap)


def pcr_composite_digest(pcr_values: Mapping[int, bytes]) -> bytes:
    """SHA-256 over the PCR values concatenated in ascending PCR order (TPM2_PolicyPCR).

    Raises:
        InvalidInput: A PCR index or value is malformed, or the mapping is empty.
    """
    if not pcr_values:
        raise InvalidInput("give the value of at least one PCR", code="tpm.pcr.empty")
    hasher = hashlib.sha256()
    for pcr in sorted(pcr_values):
        _check_pcr(pcr)
        _check_digest(pcr_values[pcr], f"the value of PCR {pcr}")
        hasher.update(pcr_values[pcr])
    return hasher.digest()


def pcr_policy_digest(pcr_values: Mapping[int, bytes]) -> bytes:
    """The policy digest of a trial ``TPM2_PolicyPCR`` over the SHA-256 bank (TPM 2.0 Part 3).

    ``policyDigest = SHA-256(0³² ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ pcrDigest)``, where
    ``pcrDigest`` is :func:`pcr_composite_digest`. A sealed object whose ``authPolicy`` is this
    digest unseals only while the PCRs hold exactly these values.

    Args:
        pcr_values: PCR index → the 32-byte value it must have.

    Returns:
        The 32-byte policy digest.

    Raises:
        InvalidInput: A PCR index or value is malformed, or the mapping is empty.
    """
    composite = pcr_composite_digest(pcr_values)
    selection = pcr_selection_bytes(pcr_values)
    return hashlib.sha256(
        bytes(SHA256_BYTES) + struct.pack(">I", _TPM_CC_POLICY_PCR) + selection + composite
    ).digest()
