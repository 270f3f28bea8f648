"""TPM object templates and small ESAPI helpers shared by the adapter (imports tpm2-pytss)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_ECC,
    TPM2_SE,
    TPMA_OBJECT,
)
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
    TPML_PCR_SELECTION,
    TPMS_ECC_PARMS,
    TPMT_ECC_SCHEME,
    TPMT_KDF_SCHEME,
    TPMT_PUBLIC,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
    TPMU_ASYM_SCHEME,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.utils import NoSuchIndex

from trustfleet.errors import Unavailable

__all__ = [
    "ak_template",
    "handles",
    "nv_read",
    "policy_session",
    "public_pem",
    "read_pcrs",
    "sealed_template",
    "srk_template",
]

_HANDLE_RANGE_SHIFT = 24
_MAX_HANDLES = 256
NV_CHUNK_BYTES = 512
"""Bytes per TPM2_NV_Read (below every TPM's NV buffer limit)."""
PCRS_PER_READ = 8
"""TPM2_PCR_Read returns at most 8 digests."""
MAX_NV_BYTES = 4096
"""The largest NV index (an EK certificate) we read."""


_RESTRICTED_KEY = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.RESTRICTED
)
"""What the AK and the SRK share: TPM-made, bound to the TPM and parent, noDA, restricted."""


def ak_template() -> Any:
    """ECC P-256 restricted signing key, ECDSA/SHA-256 (``tpm2_createak -G ecc256``).

    Unlike tpm2_createak's default it sets noDA: its authorization is empty, so dictionary
    attack protection guards nothing, and a DA-protected key counts every unclean power loss
    as a failed try (three locks the AK out on swtpm's defaults).
    """
    scheme = TPMT_ECC_SCHEME(scheme=TPM2_ALG.ECDSA)
    scheme.details.ecdsa.hashAlg = TPM2_ALG.SHA256
    return _restricted_p256(
        TPMA_OBJECT.SIGN_ENCRYPT,
        symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
        scheme=scheme,
    )


def srk_template() -> Any:
    """The TCG storage root key: ECC P-256, AES-128-CFB, restricted decrypt, noDA."""
    return _restricted_p256(
        TPMA_OBJECT.DECRYPT,
        symmetric=TPMT_SYM_DEF_OBJECT(
            algorithm=TPM2_ALG.AES,
            keyBits=TPMU_SYM_KEY_BITS(aes=128),
            mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
        ),
        scheme=TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL, details=TPMU_ASYM_SCHEME()),
    )


def _restricted_p256(use: TPMA_OBJECT, *, symmetric: Any, scheme: Any) -> Any:
    """A restricted ECC P-256 key with a SHA-256 name, for signing or decrypting (``use``)."""
    parms = TPMS_ECC_PARMS(
        symmetric=symmetric,
        scheme=scheme,
        curveID=TPM2_ECC.NIST_P256,
        kdf=TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL),
    )
    return TPM2B_PUBLIC(
        publicArea=TPMT_PUBLIC(
            type=TPM2_ALG.ECC,
            nameAlg=TPM2_ALG.SHA256,
            objectAttributes=_RESTRICTED_KEY | use,
            parameters=TPMU_PUBLIC_PARMS(eccDetail=parms),
        )
    )


def sealed_template(policy_digest: bytes) -> Any:
    """A sealed-data object usable only through ``policy_digest`` (no password use)."""
    public = TPMT_PUBLIC(
        type=TPM2_ALG.KEYEDHASH,
        nameAlg=TPM2_ALG.SHA256,
        objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT,
        authPolicy=policy_digest,
    )
    public.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG.NULL
    return TPM2B_PUBLIC(publicArea=public)


def handles(esapi: Any, handle_type: int) -> set[int]:
    """The handles of one type (``TPM2_HT``) the TPM holds, e.g. NV indices or persistent."""
    first = handle_type << _HANDLE_RANGE_SHIFT
    found: set[int] = set()
    more = True
    while more:
        more, data = esapi.get_capability(TPM2_CAP.HANDLES, first, _MAX_HANDLES)
        batch = [int(h) for h in data.data.handles]
        found.update(h for h in batch if h >> _HANDLE_RANGE_SHIFT == handle_type)
        if not batch:
            break
        first = max(batch) + 1
    return found


def nv_read(esapi: Any, index: int, *, defined: set[int]) -> bytes:
    """Read a whole NV index in chunks (owner-readable with its own empty auth).

    Raises:
        NoSuchIndex: The index is not in ``defined`` (what ``create_ek_template`` expects).
        ValueError: The index is larger than :data:`MAX_NV_BYTES`.
    """
    if int(index) not in defined:
        raise NoSuchIndex(int(index))
    handle = esapi.tr_from_tpmpublic(int(index))
    try:
        public, _name = esapi.nv_read_public(handle)
        size = int(public.nvPublic.dataSize)
        if size > MAX_NV_BYTES:
            raise ValueError(f"NV index 0x{int(index):08x} holds {size} bytes")
        data = b""
        while len(data) < size:
            step = min(NV_CHUNK_BYTES, size - len(data))
            data += bytes(esapi.nv_read(handle, step, len(data), auth_handle=handle))
        return data
    finally:
        esapi.tr_close(handle)


def read_pcrs(esapi: Any, wanted: list[int]) -> dict[int, bytes]:
    """Read SHA-256 PCRs, at most :data:`PCRS_PER_READ` per TPM2_PCR_Read."""
    values: dict[int, bytes] = {}
    for start in range(0, len(wanted), PCRS_PER_READ):
        chunk = wanted[start : start + PCRS_PER_READ]
        selection = TPML_PCR_SELECTION.parse("sha256:" + ",".join(map(str, chunk)))
        _counter, _out, digests = esapi.pcr_read(selection)
        got = [bytes(d) for d in digests]
        if len(got) != len(chunk):
            raise Unavailable(
                "the TPM did not return every PCR asked for",
                hint="activate the SHA-256 PCR bank",
                code="tpm.pcr.bank",
            )
        values.update(zip(chunk, got, strict=True))
    return values


@contextmanager
def policy_session(esapi: Any) -> Iterator[Any]:
    """A policy session (SHA-256), flushed afterwards."""
    session = esapi.start_auth_session(
        ESYS_TR.NONE,
        ESYS_TR.NONE,
        TPM2_SE.POLICY,
        TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
        TPM2_ALG.SHA256,
    )
    try:
        yield session
    finally:
        esapi.flush_context(session)


def public_pem(public: Any) -> str:
    """The SPKI PEM of a ``TPM2B_PUBLIC`` (ECC P-256 or RSA)."""
    area = public.publicArea
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    if area.type == TPM2_ALG.ECC:
        x = int.from_bytes(bytes(area.unique.ecc.x), "big")
        y = int.from_bytes(bytes(area.unique.ecc.y), "big")
        key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    else:
        exponent = int(area.parameters.rsaDetail.exponent) or 65537
        modulus = int.from_bytes(bytes(area.unique.rsa), "big")
        key = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
