"""Sealed storage: a secret under the SRK, released only by a PolicyPCR session.

Blob format (ours, version 1)::

    b"TFSEAL\\x00\\x01" ‖ TPML_PCR_SELECTION ‖ TPM2B_PRIVATE ‖ TPM2B_PUBLIC

The selection says which PCRs the policy covers; the TPM2B_PUBLIC carries the policy digest
as ``authPolicy`` and the TPM checks it, so altering the blob cannot widen the policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tpm2_pytss.constants import ESYS_TR
from tpm2_pytss.types import (
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPML_PCR_SELECTION,
    TPMS_SENSITIVE_CREATE,
)

from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.keystore.tpm import _objects
from trustfleet.keystore.tpm._policy import pcr_policy_digest, pcr_selection_bytes
from trustfleet.keystore.tpm._tss import TSS2_Exception, is_policy_failure

__all__ = ["MAX_SEALED_BLOB_BYTES", "MAX_SECRET_BYTES", "SealedParts", "parse_blob"]

MAX_SECRET_BYTES = 128
"""The most a sealed-data object holds (MAX_SYM_DATA)."""
MAX_SEALED_BLOB_BYTES = 2048
"""The largest blob :func:`parse_blob` accepts."""
_MAGIC = b"TFSEAL\x00\x01"


@dataclass(frozen=True)
class SealedParts:
    """A parsed sealed blob (tpm2-pytss objects)."""

    selection: Any
    private: Any
    public: Any


def seal_inputs(secret: bytes, pcr_values: Mapping[int, bytes]) -> tuple[bytes, bytes, bytes]:
    """Check the inputs; return the secret, the policy digest and the PCR selection bytes."""
    if not isinstance(secret, bytes) or not 1 <= len(secret) <= MAX_SECRET_BYTES:
        raise InvalidInput(
            f"a sealed secret must be 1 to {MAX_SECRET_BYTES} bytes", code="tpm.seal.size"
        )
    return secret, pcr_policy_digest(pcr_values), pcr_selection_bytes(pcr_values)


def _srk(esapi: Any) -> Any:
    handle, *_ = esapi.create_primary(None, _objects.srk_template(), ESYS_TR.OWNER)
    return handle


def seal(esapi: Any, secret: bytes, policy: bytes, selection: bytes) -> bytes:
    """Create the sealed-data object under a fresh SRK and return the blob."""
    sensitive = TPM2B_SENSITIVE_CREATE(sensitive=TPMS_SENSITIVE_CREATE(data=secret))
    srk = _srk(esapi)
    try:
        private, public, *_ = esapi.create(srk, sensitive, _objects.sealed_template(policy))
    finally:
        esapi.flush_context(srk)
    return _MAGIC + selection + bytes(private.marshal()) + bytes(public.marshal())


def parse_blob(blob: bytes) -> SealedParts:
    """Parse a blob from :func:`seal`.

    Raises:
        InvalidInput: The blob is malformed or too large (code ``tpm.unseal.blob``).
    """
    if not isinstance(blob, bytes) or len(blob) > MAX_SEALED_BLOB_BYTES:
        raise InvalidInput(
            f"a sealed blob is at most {MAX_SEALED_BLOB_BYTES} bytes", code="tpm.unseal.blob"
        )
    if not blob.startswith(_MAGIC):
        raise InvalidInput("not a TrustFleet sealed blob", code="tpm.unseal.blob")
    try:
        offset = len(_MAGIC)
        selection, used = TPML_PCR_SELECTION.unmarshal(blob[offset:])
        offset += used
        private, used = TPM2B_PRIVATE.unmarshal(blob[offset:])
        offset += used
        public, used = TPM2B_PUBLIC.unmarshal(blob[offset:])
        offset += used
    except (TSS2_Exception, ValueError, TypeError) as exc:
        raise InvalidInput(
            "the sealed blob is truncated or malformed", code="tpm.unseal.blob"
        ) from exc
    if offset != len(blob):
        raise InvalidInput("the sealed blob has trailing bytes", code="tpm.unseal.blob")
    return SealedParts(selection=selection, private=private, public=public)


def unseal(esapi: Any, parts: SealedParts) -> bytes:
    """Load the object under a fresh SRK and unseal it in a PolicyPCR session.

    Raises:
        VerificationFailed: The PCRs do not hold the sealed-to values (``tpm.unseal.policy``).
    """
    srk = _srk(esapi)
    try:
        item = esapi.load(srk, parts.private, parts.public)
    finally:
        esapi.flush_context(srk)
    try:
        with _objects.policy_session(esapi) as session:
            esapi.policy_pcr(session, b"", parts.selection)
            try:
                return bytes(esapi.unseal(item, session1=session))
            except TSS2_Exception as exc:
                if is_policy_failure(exc):
                    raise VerificationFailed(
                        "the PCRs do not hold the values this secret was sealed to",
                        hint="seal it again to the current (or the next boot's) PCR values",
                        code="tpm.unseal.policy",
                    ) from exc
                raise
    finally:
        esapi.flush_context(item)
