"""What the verifier reports: findings with stable codes, and the verdict around them.

A :class:`Verdict` is data (keylime's lesson): the service stores it, the dashboard shows it,
quarantine acts on it. ``error`` findings fail the verdict; ``warning`` findings do not.
Messages and contexts never carry nonces or keys; digests and counters are fine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from trustfleet.attestation.eventlog import EventLogEntry
from trustfleet.attestation.tpmstructs import ClockInfo

__all__ = [
    "AK_UNKNOWN",
    "ALL_CODES",
    "CLOCK_REGRESSED",
    "EVENTLOG_REPLAY_MISMATCH",
    "EVIDENCE_MALFORMED",
    "MEASUREMENT_MISSING",
    "MEASUREMENT_UNKNOWN",
    "NONCE_MISMATCH",
    "NONCE_REUSED",
    "NONCE_STALE",
    "PCR_SELECTION",
    "QUOTE_SIGNATURE",
    "QUOTE_TYPE",
    "RELEASE_CLAIM_MISMATCH",
    "RESET_UNEXPECTED",
    "AttestationFacts",
    "Finding",
    "Severity",
    "Verdict",
]

Severity = Literal["error", "warning"]

EVIDENCE_MALFORMED: Final = "attestation.evidence.malformed"
"""The payload is not JSON per the contract, a field is not valid base64, a TPM structure
does not parse, or a size bound is exceeded."""
QUOTE_SIGNATURE: Final = "attestation.quote.signature"
"""The quote's signature does not verify with the device's AK."""
QUOTE_TYPE: Final = "attestation.quote.type"
"""The signed structure is not a TPM-generated quote."""
AK_UNKNOWN: Final = "attestation.ak.unknown"
"""No AK on record, or the quote names another signer than the AK on record."""
NONCE_MISMATCH: Final = "attestation.nonce.mismatch"
"""The quote's extraData (or the evidence's challenge id) is not the challenge's."""
NONCE_STALE: Final = "attestation.nonce.stale"
"""The challenge is older than the policy allows."""
NONCE_REUSED: Final = "attestation.nonce.reused"
"""The challenge was already answered."""
PCR_SELECTION: Final = "attestation.pcr.selection"
"""The quote does not cover the required PCRs in the SHA-256 bank."""
EVENTLOG_REPLAY_MISMATCH: Final = "attestation.eventlog.replay_mismatch"
"""Replaying the event log does not give the quoted PCR digest."""
MEASUREMENT_UNKNOWN: Final = "attestation.measurement.unknown"
"""An event-log digest is no reference value of its component for this device."""
MEASUREMENT_MISSING: Final = "attestation.measurement.missing"
"""A boot component the policy requires was not measured at all."""
RESET_UNEXPECTED: Final = "attestation.reset.unexpected"
"""The TPM was reset or restarted since the last verified quote."""
CLOCK_REGRESSED: Final = "attestation.clock.regressed"
"""The TPM's clock or counters went back since the last verified quote."""
RELEASE_CLAIM_MISMATCH: Final = "attestation.release.claim_mismatch"
"""The release the device names is not the release it measured (warning)."""

ALL_CODES: Final = frozenset(
    {
        EVIDENCE_MALFORMED,
        QUOTE_SIGNATURE,
        QUOTE_TYPE,
        AK_UNKNOWN,
        NONCE_MISMATCH,
        NONCE_STALE,
        NONCE_REUSED,
        PCR_SELECTION,
        EVENTLOG_REPLAY_MISMATCH,
        MEASUREMENT_UNKNOWN,
        MEASUREMENT_MISSING,
        RESET_UNEXPECTED,
        CLOCK_REGRESSED,
        RELEASE_CLAIM_MISMATCH,
    }
)
"""Every code the verifier can report."""

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem found in evidence.

    Attributes:
        code: A stable dotted code (one of :data:`ALL_CODES`).
        severity: ``error`` fails the verdict, ``warning`` does not.
        message: One sentence for people.
        context: Facts behind it (PCRs, digests, counters); JSON-serialisable, never secrets.
    """

    code: str
    severity: Severity
    message: str
    context: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationFacts:
    """What the evidence says about the device, for the service to store.

    Only trust these when the verdict is ``ok``.

    Attributes:
        release: The release whose image was measured (``None`` when it matched none).
        claimed_release: The release the device says it runs.
        slot: The slot the device says it booted.
        measurements: The event log (authenticated by the quote when the verdict is ok).
        clock_info: The quote's clock and counters: the next "last seen" value.
        firmware_version: The TPM firmware version.
    """

    release: str | None = None
    claimed_release: str | None = None
    slot: str | None = None
    measurements: tuple[EventLogEntry, ...] = ()
    clock_info: ClockInfo | None = None
    firmware_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The result of verifying one piece of evidence.

    Attributes:
        ok: No ``error`` finding.
        device_id: The device the evidence was checked for.
        challenge_id: The challenge it was checked against.
        findings: Every problem found, in the order checked.
        facts: What the evidence says (see :class:`AttestationFacts`).
    """

    ok: bool
    device_id: str
    challenge_id: str
    findings: tuple[Finding, ...]
    facts: AttestationFacts

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of the findings, in order."""
        return tuple(f.code for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings that fail the verdict."""
        return tuple(f for f in self.findings if f.severity == "error")
