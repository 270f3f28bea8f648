"""Measured boot and remote attestation: event logs, reference values, the quote verifier.

The contract is docs/attestation.md. :func:`verify_evidence` is pure (bytes, state, policy and
``now`` in, a :class:`Verdict` out); the service wires challenges, storage and quarantine around
it. The TPM side (credential activation, EK certificates) lives in the ``credential`` and
``ekcert`` modules of this package, imported by name where needed.
"""

from trustfleet.attestation.eventlog import (
    EventLogEntry,
    composite_digest,
    eventlog_to_json,
    extend,
    parse_eventlog,
    replay,
)
from trustfleet.attestation.evidence import (
    NONCE_BYTES,
    Challenge,
    Evidence,
    encode_challenge,
    encode_evidence,
    make_challenge,
    parse_evidence,
)
from trustfleet.attestation.findings import ALL_CODES, AttestationFacts, Finding, Verdict
from trustfleet.attestation.policy import (
    AttestationPolicy,
    DeviceAttestationState,
    load_ak_public_key,
)
from trustfleet.attestation.reference import (
    COMPONENT_PCR,
    DEFAULT_PCRS,
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    measure_identity,
    release_reference_from_manifest,
)
from trustfleet.attestation.tpmstructs import ClockInfo
from trustfleet.attestation.verify import verify_evidence

__all__ = [
    "ALL_CODES",
    "COMPONENT_PCR",
    "DEFAULT_PCRS",
    "NONCE_BYTES",
    "AttestationFacts",
    "AttestationPolicy",
    "Challenge",
    "ClockInfo",
    "DeviceAttestationState",
    "EventLogEntry",
    "Evidence",
    "Finding",
    "ModelReference",
    "ReferenceSet",
    "ReleaseReference",
    "Verdict",
    "composite_digest",
    "encode_challenge",
    "encode_evidence",
    "eventlog_to_json",
    "extend",
    "load_ak_public_key",
    "make_challenge",
    "measure_identity",
    "parse_eventlog",
    "parse_evidence",
    "release_reference_from_manifest",
    "replay",
    "verify_evidence",
]
