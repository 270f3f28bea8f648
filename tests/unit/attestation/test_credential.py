"""MakeCredential in software, checked against an independent inverse and tpm2-pytss's KDFs.

The end-to-end proof is tests/integration/tpm (a real swtpm activates what we make); here the
inverse of TPM2_ActivateCredential is done in software with the EK's private key, using
tpm2-pytss's own KDF implementations, so our KDFs and layout are checked against another
implementation without a TPM.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from soft_activate import software_activate
from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.internal import crypto as pytss_crypto
from tpm2_pytss.types import (
    TPM2B_PUBLIC,
    TPMT_ASYM_SCHEME,
    TPMT_PUBLIC,
    TPMT_SYM_DEF_OBJECT,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.utils import make_credential as pytss_make_credential

from trustfleet.attestation.credential import (
    MAX_PUBLIC_BYTES,
    ak_name_matches,
    kdfa,
    make_credential,
    parse_public,
    tpm_name,
)
from trustfleet.errors import InvalidInput, VerificationFailed

EK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.ADMINWITHPOLICY
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)
AK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)
SECRET = bytes(range(32))
AK_NAME = b"\x00\x0b" + bytes(range(100, 132))

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def software_ek(key: PrivateKey, *, name_alg: int = TPM2_ALG.SHA256, aes_bits: int = 128) -> bytes:
    """A TPM2B_PUBLIC of a software key with an EK's attributes and AES-CFB symmetric."""
    symmetric = TPMT_SYM_DEF_OBJECT(
        algorithm=TPM2_ALG.AES,
        keyBits=TPMU_SYM_KEY_BITS(aes=aes_bits),
        mode=TPMU_SYM_MODE(aes=TPM2_ALG.CFB),
    )
    public = TPMT_PUBLIC.from_pem(
        _pem(key), nameAlg=name_alg, objectAttributes=EK_ATTRIBUTES, symmetric=symmetric
    )
    return bytes(TPM2B_PUBLIC(publicArea=public).marshal())


def software_ak(
    *, attributes: int = AK_ATTRIBUTES, curve: ec.EllipticCurve | None = None, scheme_hash: int = 0
) -> bytes:
    """A TPM2B_PUBLIC of a software EC key with the given AK attributes."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    scheme = TPMT_ASYM_SCHEME(scheme=TPM2_ALG.ECDSA)
    scheme.details.ecdsa.hashAlg = scheme_hash or TPM2_ALG.SHA256
    public = TPMT_PUBLIC.from_pem(
        _pem(key),
        objectAttributes=attributes,
        symmetric=TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
        scheme=scheme,
    )
    return bytes(TPM2B_PUBLIC(publicArea=public).marshal())


def _p256() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _p384() -> PrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _rsa2048() -> PrivateKey:
    return rsa.generate_private_key(65537, 2048)


EK_KEYS: dict[str, tuple[Callable[[], PrivateKey], int, int]] = {
    "rsa2048-sha256-aes128": (_rsa2048, TPM2_ALG.SHA256, 128),
    "ecc-p256-sha256-aes128": (_p256, TPM2_ALG.SHA256, 128),
    "ecc-p384-sha384-aes256": (_p384, TPM2_ALG.SHA384, 256),
}


@pytest.mark.parametrize("kind", EK_KEYS, ids=list(EK_KEYS))
def test_make_credential_inverts_in_software(kind: str) -> None:
    make_key, name_alg, aes_bits = EK_KEYS[kind]
    key = make_key()
    ek_public = software_ek(key, name_alg=name_alg, aes_bits=aes_bits)
    blob, seed = make_credential(ek_public=ek_public, ak_name=AK_NAME, secret=SECRET)
    assert software_activate(key, ek_public, blob, seed, AK_NAME) == SECRET
    other_name = AK_NAME[:-1] + b"\x00"
    with pytest.raises(ValueError, match="integrity"):
        software_activate(key, ek_public, blob, seed, other_name)


@pytest.mark.parametrize("kind", EK_KEYS, ids=list(EK_KEYS))
def test_the_software_inverse_opens_tpm2_pytss_credentials(kind: str) -> None:
    """The inverse used above also opens what tpm2-pytss makes (it is not only self-consistent)."""
    make_key, name_alg, aes_bits = EK_KEYS[kind]
    key = make_key()
    ek_public = software_ek(key, name_alg=name_alg, aes_bits=aes_bits)
    public, _ = TPM2B_PUBLIC.unmarshal(ek_public)
    blob, seed = pytss_make_credential(public, SECRET, AK_NAME)
    assert software_activate(key, ek_public, bytes(blob), bytes(seed), AK_NAME) == SECRET


@settings(max_examples=50, deadline=None)
@given(
    st.tuples(
        st.sampled_from([TPM2_ALG.SHA1, TPM2_ALG.SHA256, TPM2_ALG.SHA384]),
        st.binary(min_size=1, max_size=64),
        st.binary(max_size=16).filter(lambda b: b"\x00" not in b),
        st.binary(max_size=40),
        st.binary(max_size=40),
        st.integers(min_value=1, max_value=80),
    )
)
def test_kdfa_matches_tpm2_pytss(case: tuple[int, bytes, bytes, bytes, bytes, int]) -> None:
    alg, key, label, context_u, context_v, bytes_out = case
    ours = kdfa(alg, key, label=label, context_u=context_u, context_v=context_v, bits=bytes_out * 8)
    # cryptography's KBKDF (under tpm2-pytss) puts the zero between label and context itself
    theirs = pytss_crypto._kdfa(alg, key, label, context_u, context_v, bytes_out * 8)
    assert ours == theirs


def test_a_real_ak_public_area_has_its_name() -> None:
    ak = software_ak()
    name = tpm_name(parse_public(ak))
    assert ak_name_matches(ak, name)
    public, _ = TPM2B_PUBLIC.unmarshal(ak)
    assert bytes(public.get_name()) == name  # tpm2-pytss computes the same name
    assert not ak_name_matches(ak, name[:-1] + bytes([name[-1] ^ 1]))
    assert not ak_name_matches(ak, name[:-1])


def _without(flag: int) -> Callable[[], bytes]:
    return lambda: software_ak(attributes=AK_ATTRIBUTES & ~flag)


NOT_AN_AK: dict[str, tuple[Callable[[], bytes], str]] = {
    "not-restricted": (_without(TPMA_OBJECT.RESTRICTED), "attributes"),
    "not-fixed-tpm": (_without(TPMA_OBJECT.FIXEDTPM), "attributes"),
    "not-fixed-parent": (_without(TPMA_OBJECT.FIXEDPARENT), "attributes"),
    "decrypt-too": (lambda: _with_decrypt(software_ak()), "attributes"),
    "an-ek": (lambda: software_ek(_rsa2048()), "attributes"),
    "p384": (lambda: software_ak(curve=ec.SECP384R1(), scheme_hash=TPM2_ALG.SHA384), "algorithm"),
    "ecdsa-sha384": (lambda: software_ak(scheme_hash=TPM2_ALG.SHA384), "algorithm"),
}


def _with_decrypt(public: bytes) -> bytes:
    attributes = struct.unpack(">I", public[6:10])[0] | int(TPMA_OBJECT.DECRYPT)
    return public[:6] + struct.pack(">I", attributes) + public[10:]


@pytest.mark.parametrize("case", NOT_AN_AK, ids=list(NOT_AN_AK))
def test_keys_that_are_not_aks_are_refused(case: str) -> None:
    make, code = NOT_AN_AK[case]
    public = make()
    with pytest.raises(VerificationFailed) as err:
        ak_name_matches(public, tpm_name(parse_public(public)))
    assert err.value.code == f"attestation.ak.{code}"


def _sized(area: bytes) -> bytes:
    return struct.pack(">H", len(area)) + area


_AK = software_ak()
MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "size-only": b"\x00\x00",
    "too-large": _sized(bytes(MAX_PUBLIC_BYTES)),
    "truncated": _AK[:-3],
    "trailing": _AK + b"\x00",
    "inner-size-lies": struct.pack(">H", len(_AK)) + _AK[2:],
    "keyedhash": _sized(struct.pack(">HHI", 0x0008, 0x000B, 0) + b"\x00\x00" * 3),
    "unknown-type": _sized(b"\x12\x34" + _AK[4:]),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_public_areas_are_invalid_input(case: str) -> None:
    with pytest.raises(InvalidInput):
        parse_public(MALFORMED[case])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700))
def test_parse_public_raises_only_invalid_input(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_public(data)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=2, max_value=len(_AK) - 1), st.integers(min_value=1, max_value=255))
def test_flipped_ak_bytes_never_crash(position: int, flip: int) -> None:
    data = _AK[:position] + bytes([_AK[position] ^ flip]) + _AK[position + 1 :]
    with contextlib.suppress(InvalidInput, VerificationFailed):
        ak_name_matches(data, tpm_name(parse_public(_AK)))


_EK = software_ek(ec.generate_private_key(ec.SECP256R1()))
BAD_INPUTS: dict[str, tuple[dict[str, bytes], type[Exception], str]] = {
    "empty-secret": ({"secret": b""}, InvalidInput, "attestation.credential.secret"),
    "long-secret": ({"secret": bytes(33)}, InvalidInput, "attestation.credential.secret"),
    "short-name": ({"ak_name": b"\x00"}, InvalidInput, "attestation.credential.name"),
    "unknown-name-alg": (
        {"ak_name": b"\x99\x99" + bytes(32)}, InvalidInput, "attestation.credential.name"
    ),
    "name-length": ({"ak_name": AK_NAME + b"\x00"}, InvalidInput, "attestation.credential.name"),
    "ek-is-a-signing-key": ({"ek_public": _AK}, VerificationFailed, "attestation.ek.attributes"),
    "ek-malformed": ({"ek_public": _EK[:-1]}, InvalidInput, "attestation.tpm.public"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_make_credential_refuses_bad_input(case: str) -> None:
    changes, error, code = BAD_INPUTS[case]
    args = {"ek_public": _EK, "ak_name": AK_NAME, "secret": SECRET, **changes}
    with pytest.raises(error) as err:
        make_credential(**args)
    assert getattr(err.value, "code", None) == code
