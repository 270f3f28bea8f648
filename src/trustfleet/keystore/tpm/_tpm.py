"""``Tpm``: the device's TPM 2.0 through tpm2-pytss ESAPI (swtpm or /dev/tpmrm0).

Keys (see ``_keys``): the EK from the TCG template matching its certificate; the AK, an ECC
P-256 restricted signing key under the EK, persistent at ``ak_handle``. Sealed storage (see
``_seal``): objects under an SRK, released by a PolicyPCR session. Hierarchy authorizations
are empty (a device's provisioning may set them; not handled here). Every tpm2-pytss error is
translated once, in :meth:`Tpm._call`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from tpm2_pytss import ESAPI
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_HT
from tpm2_pytss.types import (
    TPML_DIGEST_VALUES,
    TPML_PCR_SELECTION,
    TPMT_HA,
    TPMT_SIG_SCHEME,
    TPMU_HA,
)

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.keystore.tpm import _keys, _objects, _seal
from trustfleet.keystore.tpm._policy import SHA256_BYTES, pcr_selection_bytes
from trustfleet.keystore.tpm._tss import TSS2_Exception, translate
from trustfleet.keystore.tpm._types import (
    DEFAULT_AK_HANDLE,
    MAX_CREDENTIAL_BLOB_BYTES,
    MAX_ENCRYPTED_SECRET_BYTES,
    MAX_NONCE_BYTES,
    AkInfo,
    EkType,
    TpmClock,
)

__all__ = ["Tpm"]

_T = TypeVar("_T")


class Tpm:
    """A connection to one TPM 2.0.

    Args:
        tcti: A tpm2-tools style TCTI string, e.g. ``swtpm:path=/dev/…/swtpm.sock`` or
            ``device:/dev/tpmrm0``.
        ak_handle: The persistent handle of the attestation key.
        ek_type: The EK to use: ``rsa2048`` (template L-1, certificate at 0x01c00002) or
            ``ecc256`` (template L-2, certificate at 0x01c0000a).

    Raises:
        Unavailable: The TPM cannot be reached (code ``tpm.unreachable``).

    A ``Tpm`` is a context manager; calls are serialised with a lock.
    """

    def __init__(
        self, *, tcti: str, ak_handle: int = DEFAULT_AK_HANDLE, ek_type: EkType = "rsa2048"
    ) -> None:
        if ek_type not in _keys.EK_TEMPLATES:
            raise InvalidInput(f"unknown EK type {ek_type!r}", code="tpm.ek.type")
        if ak_handle >> 24 != int(TPM2_HT.PERSISTENT):
            raise InvalidInput(
                f"0x{ak_handle:08x} is not a persistent handle", code="tpm.ak.handle"
            )
        self._ak_handle = ak_handle
        self._ek_type = ek_type
        self._lock = threading.Lock()
        try:
            self._esapi: Any = ESAPI(tcti)
        except TSS2_Exception as exc:
            raise translate(exc, action="connecting", code="tpm.connect") from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._esapi.is_closed():
                self._esapi.close()

    def __enter__(self) -> Tpm:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, action: str, code: str, fn: Callable[[Any], _T]) -> _T:
        with self._lock:
            if self._esapi.is_closed():
                raise InvalidInput("the TPM connection is closed", code="tpm.closed")
            try:
                return fn(self._esapi)
            except TSS2_Exception as exc:
                raise translate(exc, action=action, code=code) from exc

    # -- keys ----------------------------------------------------------------------------

    def ek_public(self) -> bytes:
        """The EK's public area (marshalled ``TPM2B_PUBLIC``), the input of MakeCredential.

        Raises:
            Unavailable: The TPM refused or cannot be reached.
        """

        def run(esapi: Any) -> bytes:
            handle, public = _keys.create_ek(esapi, self._ek_type)
            esapi.flush_context(handle)
            return bytes(public.marshal())

        return self._call("creating the EK", "tpm.ek", run)

    def ek_certificate(self) -> bytes:
        """The EK certificate (DER) the TPM manufacturer stored in NV.

        Raises:
            NotFound: The TPM holds no certificate for this EK type (``tpm.ek.no_certificate``).
            Unavailable: The TPM refused or cannot be reached.
        """
        return self._call(
            "reading the EK certificate",
            "tpm.ek.certificate",
            lambda esapi: _keys.ek_certificate(esapi, self._ek_type),
        )

    def create_ak(self, *, replace: bool = False) -> AkInfo:
        """Create the AK under the EK and make it persistent at ``ak_handle``.

        Args:
            replace: Evict an existing key at ``ak_handle`` first (else refuse).

        Returns:
            The new AK's public area, names, PEM and handle.

        Raises:
            Conflict: A key already lives at ``ak_handle`` and ``replace`` is false.
            Unavailable: The TPM refused or cannot be reached.
        """
        self._call(
            "creating the AK",
            "tpm.ak.create",
            lambda esapi: _keys.create_ak(
                esapi, ek_type=self._ek_type, handle=self._ak_handle, replace=replace
            ),
        )
        return self.ak()

    def ak(self) -> AkInfo:
        """The persistent AK.

        Raises:
            NotFound: No key lives at ``ak_handle`` (code ``tpm.ak.missing``).
            Unavailable: The TPM refused or cannot be reached.
        """
        return self._call(
            "reading the AK", "tpm.ak.read", lambda esapi: _keys.read_ak(esapi, self._ak_handle)
        )

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """Recover the secret the service bound to this TPM's EK and the AK (ActivateCredential).

        Args:
            credential_blob: The ``TPM2B_ID_OBJECT`` contents (integrity HMAC ‖ encrypted
                credential) from ``make_credential``.
            encrypted_secret: The ``TPM2B_ENCRYPTED_SECRET`` contents (the seed encrypted to
                the EK).

        Returns:
            The secret.

        Raises:
            InvalidInput: An input is empty or too large (``tpm.credential.size``).
            VerificationFailed: The blob was not made for this EK and AK (``tpm.credential``).
            NotFound: There is no AK.
            Unavailable: The TPM refused or cannot be reached.
        """
        for value, limit, what in (
            (credential_blob, MAX_CREDENTIAL_BLOB_BYTES, "credential blob"),
            (encrypted_secret, MAX_ENCRYPTED_SECRET_BYTES, "encrypted secret"),
        ):
            if not value or len(value) > limit:
                raise InvalidInput(
                    f"the {what} must be 1 to {limit} bytes", code="tpm.credential.size"
                )
        return self._call(
            "activating a credential",
            "tpm.credential",
            lambda esapi: _keys.activate(
                esapi,
                ek_type=self._ek_type,
                ak_handle=self._ak_handle,
                blob=credential_blob,
                seed=encrypted_secret,
            ),
        )

    # -- PCRs, quotes, clock -------------------------------------------------------------

    def pcr_read(self, pcrs: Sequence[int]) -> dict[int, bytes]:
        """Read SHA-256 PCRs.

        Args:
            pcrs: PCR indices (0..23).

        Returns:
            PCR index → 32-byte value.

        Raises:
            InvalidInput: An index is out of range or none is given.
            Unavailable: The TPM refused or cannot be reached.
        """
        wanted = sorted(set(pcrs))
        pcr_selection_bytes(wanted)  # validates

        return self._call(
            "reading PCRs", "tpm.pcr.read", lambda esapi: _objects.read_pcrs(esapi, wanted)
        )

    def pcr_extend(self, pcr: int, digest: bytes) -> None:
        """Extend a SHA-256 PCR: ``PCR := SHA-256(PCR ‖ digest)``.

        Raises:
            InvalidInput: The index is out of range or the digest is not 32 bytes.
            Unavailable: The TPM refused or cannot be reached.
        """
        pcr_selection_bytes([pcr])  # validates the index
        if not isinstance(digest, bytes) or len(digest) != SHA256_BYTES:
            raise InvalidInput("a PCR extend takes a 32-byte SHA-256 digest", code="tpm.pcr.digest")
        values = TPML_DIGEST_VALUES(
            digests=[TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=TPMU_HA(sha256=digest))]
        )
        self._call(
            "extending a PCR",
            "tpm.pcr.extend",
            lambda esapi: esapi.pcr_extend(ESYS_TR(pcr), values),
        )

    def quote(self, nonce: bytes, pcrs: Sequence[int]) -> tuple[bytes, bytes]:
        """Sign the SHA-256 PCRs ``pcrs`` and ``nonce`` with the AK (TPM2_Quote).

        Args:
            nonce: The verifier's challenge; the quote's ``extraData`` (1..64 bytes).
            pcrs: PCR indices to cover.

        Returns:
            The marshalled ``TPMS_ATTEST`` and ``TPMT_SIGNATURE`` (ECDSA P-256/SHA-256 over
            the attest bytes).

        Raises:
            InvalidInput: The nonce or the PCR selection is malformed.
            NotFound: There is no AK.
            Unavailable: The TPM refused or cannot be reached.
        """
        if not nonce or len(nonce) > MAX_NONCE_BYTES:
            raise InvalidInput(
                f"the nonce must be 1 to {MAX_NONCE_BYTES} bytes", code="tpm.quote.nonce"
            )
        selection, _rest = TPML_PCR_SELECTION.unmarshal(pcr_selection_bytes(pcrs))

        def run(esapi: Any) -> tuple[bytes, bytes]:
            ak = _keys.open_ak(esapi, self._ak_handle)
            try:
                attest, signature = esapi.quote(
                    ak, selection, nonce, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
                )
            finally:
                esapi.tr_close(ak)
            return bytes(attest), bytes(signature.marshal())

        return self._call("quoting", "tpm.quote", run)

    def clock(self) -> TpmClock:
        """The TPM's clock and reset/restart counters.

        Raises:
            Unavailable: The TPM cannot be reached.
        """
        info = self._call("reading the clock", "tpm.clock", lambda esapi: esapi.read_clock())
        clock = info.clockInfo
        return TpmClock(
            clock_ms=int(clock.clock),
            reset_count=int(clock.resetCount),
            restart_count=int(clock.restartCount),
            safe=bool(clock.safe),
            time_ms=int(info.time),
        )

    # -- sealed storage ------------------------------------------------------------------

    def seal(self, secret: bytes, *, pcr_values: Mapping[int, bytes]) -> bytes:
        """Seal ``secret`` under the SRK so that only ``pcr_values`` can unseal it.

        The policy digest is computed in software (:func:`pcr_policy_digest`), so the values
        may be those of a future boot.

        Args:
            secret: 1..128 bytes.
            pcr_values: PCR index → the SHA-256 value it must hold at unseal time.

        Returns:
            An opaque blob for :meth:`unseal` (bound to this TPM).

        Raises:
            InvalidInput: The secret or the PCR values are malformed.
            Unavailable: The TPM refused or cannot be reached.
        """
        blob_parts = _seal.seal_inputs(secret, pcr_values)
        return self._call("sealing", "tpm.seal", lambda esapi: _seal.seal(esapi, *blob_parts))

    def unseal(self, blob: bytes) -> bytes:
        """Unseal a blob from :meth:`seal` if the PCRs hold the values it was sealed to.

        Raises:
            InvalidInput: The blob is malformed or too large (``tpm.unseal.blob``).
            VerificationFailed: The PCRs do not match (code ``tpm.unseal.policy``), or the
                blob belongs to another TPM.
            Unavailable: The TPM refused or cannot be reached.
        """
        parts = _seal.parse_blob(blob)
        return self._call(
            "unsealing", "tpm.unseal.policy", lambda esapi: _seal.unseal(esapi, parts)
        )

    # -- wipe (decommission) ---------------------------------------------------------------

    def evict_ak(self) -> AkInfo | None:
        """Remove the persistent AK (TPM2_EvictControl); what it was, or None if absent.

        Raises:
            Unavailable: The TPM refused or cannot be reached.
        """
        try:
            info = self.ak()
        except NotFound:
            return None

        def run(esapi: Any) -> None:
            tr = _keys.open_ak(esapi, self._ak_handle)
            esapi.evict_control(ESYS_TR.OWNER, tr, self._ak_handle)
            esapi.tr_close(tr)

        self._call("evicting the AK", "tpm.ak.evict", run)
        return info

    def flush_transient(self) -> int:
        """Flush every loaded transient object (TPM2_FlushContext); how many.

        Raises:
            Unavailable: The TPM refused or cannot be reached.
        """

        def run(esapi: Any) -> int:
            found = _objects.handles(esapi, int(TPM2_HT.TRANSIENT))
            for handle in found:
                tr = esapi.tr_from_tpmpublic(handle)
                esapi.flush_context(tr)
            return len(found)

        return self._call("flushing transient objects", "tpm.flush", run)

    def clear(self) -> None:
        """TPM2_Clear with the lockout hierarchy (empty authorization): a new storage primary
        seed (every blob sealed under the SRK is undecryptable), owner and endorsement
        persistent objects flushed, owner authorizations reset. The EPS (so the EK and its
        certificate) is kept.

        Raises:
            Unavailable: The TPM refused (lockout authorization set, or ``disableClear``;
                code ``tpm.clear``) or cannot be reached.
        """
        self._call("clearing the TPM", "tpm.clear", lambda esapi: esapi.clear(ESYS_TR.LOCKOUT))
