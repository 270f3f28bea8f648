"""What the verifier is given besides the evidence: the policy and the device's state."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.attestation.reference import DEFAULT_PCRS
from trustfleet.attestation.tpmstructs import ClockInfo
from trustfleet.errors import InvalidInput

__all__ = ["AttestationPolicy", "DeviceAttestationState", "load_ak_public_key"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationPolicy:
    """Bounds and rules of verification (the ``[attestation]`` settings).

    Attributes:
        max_evidence_bytes: Bound on the evidence payload.
        max_quote_bytes: Bound on the decoded ``TPMS_ATTEST``.
        max_signature_bytes: Bound on the decoded ``TPMT_SIGNATURE``.
        max_eventlog_entries: Bound on the event log's entries.
        max_string_chars: Bound on every string in the evidence.
        max_age_s: How long after it was issued a challenge may be answered.
        required_pcrs: SHA-256 PCRs every quote must cover (besides the challenge's).
        required_components: Boot components that must each be measured.
        announced_reboot_is_warning: A reset the device announced (e.g. an update) is a
            warning, not an error.
    """

    max_evidence_bytes: int = 64 * 1024
    max_quote_bytes: int = 1024
    max_signature_bytes: int = 256
    max_eventlog_entries: int = 64
    max_string_chars: int = 256
    max_age_s: float = 60.0
    required_pcrs: tuple[int, ...] = DEFAULT_PCRS
    required_components: tuple[str, ...] = ("rom", "bootloader", "image", "agent")
    announced_reboot_is_warning: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceAttestationState:
    """What the service knows about a device when it checks its evidence.

    Attributes:
        device_id: The device.
        model: Its hardware model (selects the reference values).
        ak_public_key: Its attestation key: a loaded key (fast), PEM or DER SPKI bytes
            (loaded on every call), or ``None`` when no AK is bound.
        ak_qualified_name: The AK's qualified name, when recorded; a quote naming another
            signer is reported as ``attestation.ak.unknown``.
        last_clock: The clock info of the last verified quote, if any.
        allowed_releases: The releases the device may run; ``None`` allows every published
            release of its model.
        reboot_announced: The device announced a reboot since the last verified quote.
    """

    device_id: str
    model: str
    ak_public_key: ec.EllipticCurvePublicKey | bytes | None
    ak_qualified_name: bytes | None = None
    last_clock: ClockInfo | None = None
    allowed_releases: frozenset[str] | None = None
    reboot_announced: bool = False


def load_ak_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """Load an AK public key (PEM or DER SubjectPublicKeyInfo); it must be EC P-256.

    Args:
        data: The encoded key.

    Returns:
        The key, ready for :class:`DeviceAttestationState` (load it once, reuse it).

    Raises:
        InvalidInput: Not an SPKI, or not a P-256 key (``attestation.ak.invalid``).
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            "the attestation key is not a PEM or DER public key",
            hint="store the AK as the TPM's public key in SubjectPublicKeyInfo form",
            code="attestation.ak.invalid",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidInput(
            "the attestation key is not an EC P-256 key",
            hint="create the AK as an ECC NIST P-256 signing key",
            code="attestation.ak.invalid",
        )
    return key
