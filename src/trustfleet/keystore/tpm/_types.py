"""Value types and limits of the TPM adapter (pure: no tpm2-pytss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_AK_HANDLE",
    "MAX_CREDENTIAL_BLOB_BYTES",
    "MAX_ENCRYPTED_SECRET_BYTES",
    "MAX_NONCE_BYTES",
    "AkInfo",
    "EkType",
    "TpmClock",
]

DEFAULT_AK_HANDLE = 0x81010002
"""Where the AK is persisted (the TCG-recommended range for endorsement-hierarchy keys)."""
MAX_NONCE_BYTES = 64
"""The largest qualifying data (nonce) a quote can carry (sizeof TPMT_HA)."""
MAX_CREDENTIAL_BLOB_BYTES = 256
"""The largest credential blob accepted for ActivateCredential."""
MAX_ENCRYPTED_SECRET_BYTES = 512
"""The largest encrypted seed accepted for ActivateCredential (RSA 4096)."""

EkType = Literal["rsa2048", "ecc256"]
"""``rsa2048``: TCG template L-1, certificate at 0x01c00002; ``ecc256``: L-2, 0x01c0000a."""


@dataclass(frozen=True)
class AkInfo:
    """The attestation key as the service stores it.

    Attributes:
        public: The marshalled ``TPM2B_PUBLIC`` (what ``ak_name_matches`` checks).
        name: The TPM name: ``0x000B ‖ SHA-256(TPMT_PUBLIC)``.
        public_pem: The public key as SPKI PEM (verifies quote signatures).
        qualified_name: Its qualified name (a quote's ``qualifiedSigner``; the AK is a child
            of the EK, so this depends on the EK too).
        handle: The persistent handle it lives at.
    """

    public: bytes
    name: bytes
    public_pem: str
    qualified_name: bytes
    handle: int


@dataclass(frozen=True)
class TpmClock:
    """The TPM's clock (``TPMS_CLOCK_INFO``) and time since start-up.

    Attributes:
        clock_ms: Milliseconds the TPM has been powered, ever (advances, never goes back).
        reset_count: TPM resets (reboots) so far.
        restart_count: Restarts / resumes since the last reset.
        safe: Whether the clock value is known not to have been reported lower before.
        time_ms: Milliseconds since the last TPM reset or restart.
    """

    clock_ms: int
    reset_count: int
    restart_count: int
    safe: bool
    time_ms: int
