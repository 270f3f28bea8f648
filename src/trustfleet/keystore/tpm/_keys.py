"""EK, AK and credential activation on an open ESAPI context (imports tpm2-pytss).

The EK is re-created from the TCG EK template that matches the certificate in NV (the same key
every time); the AK is an ECC P-256 restricted signing key, a child of the EK in the
endorsement hierarchy (as ``tpm2_createak`` makes it), persistent at a handle so that the agent
and tpm2-tools find it after a restart. Using the EK needs a policy session with
PolicySecret(endorsement hierarchy), the EK templates' authPolicy.
"""

from __future__ import annotations

from typing import Any

from tpm2_pytss.constants import ESYS_TR, TPM2_HT
from tpm2_pytss.types import TPM2B_ENCRYPTED_SECRET, TPM2B_ID_OBJECT
from tpm2_pytss.utils import create_ek_template

from trustfleet.errors import Conflict, NotFound, VerificationFailed
from trustfleet.keystore.tpm import _objects
from trustfleet.keystore.tpm._tss import TSS2_Exception, is_tpm_failure, refused_input
from trustfleet.keystore.tpm._types import AkInfo, EkType

__all__ = [
    "EK_TEMPLATES",
    "activate",
    "create_ak",
    "create_ek",
    "ek_certificate",
    "open_ak",
    "read_ak",
]

EK_TEMPLATES: dict[str, tuple[str, int]] = {
    "rsa2048": ("EK-RSA2048", 0x01C00002),
    "ecc256": ("EK-ECC256", 0x01C0000A),
}
"""EK type → (tpm2-pytss template name, NV index of its certificate)."""


def create_ek(esapi: Any, ek_type: EkType) -> tuple[Any, Any]:
    """Create the EK (primary, endorsement hierarchy); returns (handle, TPM2B_PUBLIC)."""
    kind, _index = EK_TEMPLATES[ek_type]
    defined = _objects.handles(esapi, int(TPM2_HT.NV_INDEX))
    _cert, template = create_ek_template(
        kind, lambda index: _objects.nv_read(esapi, index, defined=defined)
    )
    handle, public, *_ = esapi.create_primary(None, template, ESYS_TR.ENDORSEMENT)
    return handle, public


def ek_certificate(esapi: Any, ek_type: EkType) -> bytes:
    """The EK certificate (DER) in NV; NotFound ``tpm.ek.no_certificate`` if absent."""
    kind, index = EK_TEMPLATES[ek_type]
    defined = _objects.handles(esapi, int(TPM2_HT.NV_INDEX))
    if index not in defined:
        raise NotFound(
            f"the TPM has no {kind} certificate at NV index 0x{index:08x}",
            hint="use the EK type the TPM manufacturer certified",
            code="tpm.ek.no_certificate",
        )
    return _objects.nv_read(esapi, index, defined=defined)


def _ek_session(esapi: Any, session: Any) -> Any:
    esapi.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
    return session


def _persistent(esapi: Any, handle: int) -> bool:
    return handle in _objects.handles(esapi, int(TPM2_HT.PERSISTENT))


def create_ak(esapi: Any, *, ek_type: EkType, handle: int, replace: bool) -> None:
    """Create the AK under the EK and make it persistent at ``handle``."""
    exists = _persistent(esapi, handle)
    if exists and not replace:
        raise Conflict(
            f"an AK already exists at 0x{handle:08x}",
            hint="use the existing AK or pass replace=True",
            code="tpm.ak.exists",
        )
    ek, _public = create_ek(esapi, ek_type)
    try:
        with _objects.policy_session(esapi) as session:
            private, public, *_ = esapi.create(
                ek, None, _objects.ak_template(), session1=_ek_session(esapi, session)
            )
        with _objects.policy_session(esapi) as session:
            transient = esapi.load(ek, private, public, session1=_ek_session(esapi, session))
    finally:
        esapi.flush_context(ek)
    try:
        if exists:
            old = esapi.tr_from_tpmpublic(handle)
            esapi.evict_control(ESYS_TR.OWNER, old, handle)
            esapi.tr_close(old)  # ESYS keeps the evicted object's record otherwise
        esapi.tr_close(esapi.evict_control(ESYS_TR.OWNER, transient, handle))
    finally:
        esapi.flush_context(transient)


def open_ak(esapi: Any, handle: int) -> Any:
    """An ESYS handle for the persistent AK (close it with ``tr_close``); NotFound if none."""
    if not _persistent(esapi, handle):
        raise NotFound(
            f"no AK at persistent handle 0x{handle:08x}",
            hint="create it with create_ak()",
            code="tpm.ak.missing",
        )
    return esapi.tr_from_tpmpublic(handle)


def read_ak(esapi: Any, handle: int) -> AkInfo:
    """The persistent AK's public area, names and PEM; NotFound ``tpm.ak.missing``."""
    tr = open_ak(esapi, handle)
    try:
        public, name, qualified = esapi.read_public(tr)
    finally:
        esapi.tr_close(tr)
    return AkInfo(
        public=bytes(public.marshal()),
        name=bytes(name),
        public_pem=_objects.public_pem(public),
        qualified_name=bytes(qualified),
        handle=handle,
    )


def activate(esapi: Any, *, ek_type: EkType, ak_handle: int, blob: bytes, seed: bytes) -> bytes:
    """TPM2_ActivateCredential with the AK and the EK; VerificationFailed if not for them."""
    ak = open_ak(esapi, ak_handle)
    ek, _public = create_ek(esapi, ek_type)
    try:
        with _objects.policy_session(esapi) as session:
            secret = esapi.activate_credential(
                ak,
                ek,
                TPM2B_ID_OBJECT(credential=blob),
                TPM2B_ENCRYPTED_SECRET(secret=seed),
                session1=ESYS_TR.PASSWORD,
                session2=_ek_session(esapi, session),
            )
    except TSS2_Exception as exc:
        # libtpms answers TPM_RC_FAILURE when the seed does not decrypt with its EK, and
        # stays operational: that is a refused credential too, not a broken TPM.
        if refused_input(exc) or (is_tpm_failure(exc) and _responsive(esapi)):
            raise VerificationFailed(
                "the credential was not made for this TPM's EK and AK",
                hint="make it with this device's EK public area and AK name",
                code="tpm.credential",
            ) from exc
        raise
    finally:
        esapi.flush_context(ek)
        esapi.tr_close(ak)
    return bytes(secret)


def _responsive(esapi: Any) -> bool:
    """Whether the TPM still executes commands (it is not in failure mode)."""
    try:
        esapi.read_clock()
    except TSS2_Exception:
        return False
    return True
