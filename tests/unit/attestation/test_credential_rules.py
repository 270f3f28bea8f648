"""Public-area parsing, AK rules and MakeCredential, deterministically and at every bound.

The public areas are marshalled here by hand (TPM 2.0 Part 2, TPMT_PUBLIC), so the fields a
TSS never writes (an ECDAA scheme, a KDF, exponent 0, a long authPolicy) can be set. Credentials
are opened with a software TPM2_ActivateCredential that uses tpm2-pytss's KDFs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from soft_activate import software_activate
from tpm2_pytss.internal import crypto as pytss_crypto

from trustfleet.attestation.credential import (
    MAX_PUBLIC_BYTES,
    TpmPublic,
    _kdfe,
    ak_name_matches,
    kdfa,
    make_credential,
    parse_public,
    public_key,
    tpm_name,
)
from trustfleet.errors import InvalidInput, VerificationFailed

RSA, SHA1, AES, SHA256, SHA384, SHA512, NULL = 0x1, 0x4, 0x6, 0xB, 0xC, 0xD, 0x10
ECDSA, ECDAA, ECC, CFB_MODE, OFB_MODE, KDF1_56A = 0x18, 0x1A, 0x23, 0x43, 0x41, 0x20
P256, P384, P521 = 0x3, 0x4, 0x5
FIXED_TPM, FIXED_PARENT, ORIGIN, USER_AUTH, ADMIN_POLICY = 0x2, 0x10, 0x20, 0x40, 0x80
RESTRICTED, DECRYPT, SIGN = 0x10000, 0x20000, 0x40000
EK_ATTRS = FIXED_TPM | FIXED_PARENT | ORIGIN | ADMIN_POLICY | RESTRICTED | DECRYPT
AK_ATTRS = FIXED_TPM | FIXED_PARENT | ORIGIN | USER_AUTH | RESTRICTED | SIGN
HASHES = {
    SHA1: hashlib.sha1,
    SHA256: hashlib.sha256,
    SHA384: hashlib.sha384,
    SHA512: hashlib.sha512,
}
CURVES = {P256: ec.SECP256R1, P384: ec.SECP384R1, P521: ec.SECP521R1}

EC_KEYS = {curve: ec.generate_private_key(cls()) for curve, cls in CURVES.items()}
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SECRET = bytes(range(32))
AK_NAME = b"\x00\x0b" + bytes(range(100, 132))


def u16(value: int) -> bytes:
    return struct.pack(">H", value)


def b2(data: bytes) -> bytes:
    return u16(len(data)) + data


def area(
    *,
    kind: int = ECC,
    name_alg: int = SHA256,
    attributes: int = EK_ATTRS,
    policy: bytes = bytes(32),
    symmetric: bytes = u16(AES) + u16(128) + u16(CFB_MODE),
    scheme: bytes = u16(NULL),
    curve: int = P256,
    kdf: bytes = u16(NULL),
    x: bytes | None = None,
    y: bytes | None = None,
    rsa_exponent: int = 0,
) -> bytes:
    """A marshalled TPMT_PUBLIC (an ECC EK by default) of the keys above."""
    head = u16(kind) + u16(name_alg) + struct.pack(">I", attributes) + b2(policy)
    head += symmetric + scheme
    if kind == RSA:
        modulus = RSA_KEY.public_key().public_numbers().n.to_bytes(256, "big")
        return head + struct.pack(">HI", 2048, rsa_exponent) + b2(modulus)
    if kind != ECC:
        return head
    numbers = EC_KEYS[curve].public_key().public_numbers() if curve in EC_KEYS else None
    size = (CURVES[curve].key_size + 7) // 8 if curve in CURVES else 32
    x = x if x is not None else numbers.x.to_bytes(size, "big") if numbers else bytes(size)
    y = y if y is not None else numbers.y.to_bytes(size, "big") if numbers else bytes(size)
    return head + u16(curve) + kdf + b2(x) + b2(y)


def ak_area(**changes: object) -> bytes:
    args: dict[str, object] = {
        "attributes": AK_ATTRS,
        "policy": b"",
        "symmetric": u16(NULL),
        "scheme": u16(ECDSA) + u16(SHA256),
    }
    args.update(changes)
    return area(**args)  # type: ignore[arg-type]


def tpm2b(inner: bytes) -> bytes:
    return b2(inner)


def invalid(data: object, code: str = "attestation.tpm.public") -> None:
    with pytest.raises(InvalidInput) as info:
        public_key(parse_public(data))  # type: ignore[arg-type]
    assert info.value.code == code


# --- parse_public ------------------------------------------------------------------------------


def test_an_ecc_ek_parses_field_by_field() -> None:
    inner = area()
    numbers = EC_KEYS[P256].public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    assert parse_public(tpm2b(inner)) == TpmPublic(
        area=inner, type=ECC, name_alg=SHA256, attributes=EK_ATTRS, symmetric=(AES, 128, CFB_MODE),
        scheme=(NULL, NULL), curve=P256, rsa_bits=0, rsa_exponent=0, unique=x + y, ecc_x=x,
        ecc_y=y,
    )  # fmt: skip


def test_an_ak_parses_with_null_symmetric_and_its_scheme() -> None:
    parsed = parse_public(tpm2b(ak_area()))
    assert (parsed.symmetric, parsed.scheme) == ((NULL, 0, 0), (ECDSA, SHA256))


def test_an_rsa_public_area_parses_and_exponent_zero_means_65537() -> None:
    inner = area(kind=RSA)
    modulus = RSA_KEY.public_key().public_numbers().n.to_bytes(256, "big")
    assert parse_public(tpm2b(inner)) == TpmPublic(
        area=inner, type=RSA, name_alg=SHA256, attributes=EK_ATTRS, symmetric=(AES, 128, CFB_MODE),
        scheme=(NULL, NULL), curve=0, rsa_bits=2048, rsa_exponent=65537, unique=modulus,
    )  # fmt: skip
    assert parse_public(tpm2b(area(kind=RSA, rsa_exponent=3))).rsa_exponent == 3


def test_an_ecdaa_scheme_carries_a_count_and_a_kdf_its_hash() -> None:
    parsed = parse_public(tpm2b(ak_area(scheme=u16(ECDAA) + u16(SHA256) + u16(1))))
    assert parsed.scheme == (ECDAA, SHA256)
    parsed = parse_public(tpm2b(area(kdf=u16(KDF1_56A) + u16(SHA256))))
    assert parsed.ecc_x == EC_KEYS[P256].public_key().public_numbers().x.to_bytes(32, "big")


def test_the_size_bound_is_inclusive() -> None:
    def padded(total: int) -> bytes:
        plain = tpm2b(area(kind=RSA, policy=b""))
        return tpm2b(area(kind=RSA, policy=bytes(total - len(plain))))

    assert MAX_PUBLIC_BYTES == 1024
    assert len(padded(1024)) == 1024
    assert parse_public(padded(1024)).rsa_bits == 2048
    invalid(padded(1025))


@pytest.mark.parametrize(
    "data",
    [
        b"", b"\x00", b"\x00\x00", b"\x00\x01\x00", tpm2b(area()) + b"\x00",
        tpm2b(area())[:-1], tpm2b(area() + b"\x00"), tpm2b(area(kind=0x0008)),
        tpm2b(area(kind=0x0025)), tpm2b(ak_area(scheme=u16(ECDAA) + u16(SHA256))),
        tpm2b(area(kdf=u16(KDF1_56A))),
    ],
    ids=[
        "empty", "one-byte", "empty-area", "one-byte-area", "trailing-outer", "truncated",
        "trailing-inner", "keyedhash", "symcipher", "ecdaa-without-count", "kdf-without-hash",
    ],
)  # fmt: skip
def test_malformed_public_areas_are_refused(data: bytes) -> None:
    invalid(data)


@pytest.mark.parametrize("kind", [0x0008, 0x0025, 0x0000])
def test_a_key_of_another_type_with_an_ecc_body_is_refused(kind: int) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_public(tpm2b(u16(kind) + area()[2:]))
    assert info.value.code == "attestation.tpm.public"


def test_only_bytes_are_parsed() -> None:
    invalid(tpm2b(area()).hex())
    invalid(bytearray(tpm2b(area())))


def test_a_parsed_public_area_is_immutable_and_ecc_fields_default_empty() -> None:
    parsed = parse_public(tpm2b(area(kind=RSA)))
    assert (parsed.ecc_x, parsed.ecc_y) == (b"", b"")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.attributes = 0  # type: ignore[misc]
    bare = TpmPublic(b"", RSA, SHA256, 0, (NULL, 0, 0), (NULL, NULL), 0, 2048, 3, b"\x01")
    assert (bare.ecc_x, bare.ecc_y) == (b"", b"")


# --- names and keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("name_alg", [SHA1, SHA256, SHA384, SHA512])
def test_the_tpm_name_uses_the_name_algorithm(name_alg: int) -> None:
    inner = area(name_alg=name_alg)
    digest = HASHES[name_alg](inner).digest()
    assert tpm_name(parse_public(tpm2b(inner))) == u16(name_alg) + digest


def test_an_unknown_name_algorithm_has_no_name() -> None:
    with pytest.raises(InvalidInput) as info:
        tpm_name(parse_public(tpm2b(area(name_alg=0x0012))))
    assert info.value.code == "attestation.tpm.hash"


@pytest.mark.parametrize("curve", [P256, P384, P521])
def test_ecc_public_keys_on_each_supported_curve(curve: int) -> None:
    key = public_key(parse_public(tpm2b(area(curve=curve))))
    assert key == EC_KEYS[curve].public_key()


def test_an_rsa_public_key() -> None:
    assert public_key(parse_public(tpm2b(area(kind=RSA)))) == RSA_KEY.public_key()


def test_an_unsupported_curve_or_a_point_off_the_curve_is_refused() -> None:
    invalid(tpm2b(area(curve=0x0010)))  # BN P-256
    invalid(tpm2b(area(y=(1).to_bytes(32, "big"))))


def test_short_coordinates_are_numbers_not_strings() -> None:
    numbers = EC_KEYS[P256].public_key().public_numbers()
    x = numbers.x.to_bytes(32, "big")
    padded = parse_public(tpm2b(area(x=b"\x00" + x)))
    assert public_key(padded) == EC_KEYS[P256].public_key()


# --- AKs --------------------------------------------------------------------------------------


def test_a_proper_ak_has_its_name_and_no_other() -> None:
    ak = tpm2b(ak_area())
    name = u16(SHA256) + hashlib.sha256(ak_area()).digest()
    assert ak_name_matches(ak, name) is True
    assert ak_name_matches(ak, name[:-1] + bytes([name[-1] ^ 1])) is False


@pytest.mark.parametrize(
    "attributes",
    [
        AK_ATTRS & ~FIXED_TPM, AK_ATTRS & ~FIXED_PARENT, AK_ATTRS & ~RESTRICTED, AK_ATTRS & ~SIGN,
        AK_ATTRS | DECRYPT, EK_ATTRS, 0,
    ],
    ids=["no-fixed-tpm", "no-fixed-parent", "not-restricted", "no-sign", "decrypt", "ek", "none"],
)  # fmt: skip
def test_an_ak_must_be_a_restricted_signing_key_bound_to_its_tpm(attributes: int) -> None:
    with pytest.raises(VerificationFailed) as info:
        ak_name_matches(tpm2b(ak_area(attributes=attributes)), AK_NAME)
    assert info.value.code == "attestation.ak.attributes"


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": RSA},
        {"curve": P384},
        {"scheme": u16(ECDSA) + u16(SHA384)},
        {"scheme": u16(ECDAA) + u16(SHA256) + u16(0)},
        {"name_alg": SHA384},
    ],
    ids=["rsa", "p384", "ecdsa-sha384", "ecdaa", "name-sha384"],
)
def test_an_ak_must_be_p256_ecdsa_sha256(changes: dict[str, object]) -> None:
    with pytest.raises(VerificationFailed) as info:
        ak_name_matches(tpm2b(ak_area(**changes)), AK_NAME)
    assert info.value.code == "attestation.ak.algorithm"


# --- KDFs -------------------------------------------------------------------------------------

KDF_CASES = [(SHA256, 8), (SHA256, 128), (SHA256, 256), (SHA256, 264), (SHA1, 168), (SHA384, 520)]


@pytest.mark.parametrize(("alg", "bits"), KDF_CASES)
def test_kdfa_known_answers(alg: int, bits: int) -> None:
    ours = kdfa(alg, b"key", label=b"STORAGE", context_u=b"u" * 34, context_v=b"v", bits=bits)
    assert len(ours) == bits // 8
    assert ours == pytss_crypto._kdfa(alg, b"key", b"STORAGE", b"u" * 34, b"v", bits)


@pytest.mark.parametrize(("alg", "bits"), KDF_CASES)
def test_kdfe_known_answers(alg: int, bits: int) -> None:
    ours = _kdfe(alg, b"z" * 32, label=b"IDENTITY", party_u=b"u" * 32, party_v=b"v" * 32, bits=bits)
    assert len(ours) == bits // 8
    assert ours == pytss_crypto.kdfe(alg, b"z" * 32, b"IDENTITY\x00", b"u" * 32, b"v" * 32, bits)


# --- MakeCredential ---------------------------------------------------------------------------


def aes(bits: int) -> bytes:
    return u16(AES) + u16(bits) + u16(CFB_MODE)


CREDENTIAL_CASES = {
    "ecc-p256-sha256-aes128": ({}, EC_KEYS[P256]),
    "ecc-p384-sha384-aes192": (
        {"curve": P384, "name_alg": SHA384, "symmetric": aes(192)},
        EC_KEYS[P384],
    ),
    "ecc-p521-sha512-aes256": (
        {"curve": P521, "name_alg": SHA512, "symmetric": aes(256)},
        EC_KEYS[P521],
    ),
    "rsa2048-sha256-aes128": ({"kind": RSA}, RSA_KEY),
    "rsa2048-sha384-aes256": ({"kind": RSA, "name_alg": SHA384, "symmetric": aes(256)}, RSA_KEY),
}


@pytest.mark.parametrize("case", CREDENTIAL_CASES, ids=list(CREDENTIAL_CASES))
def test_make_credential_opens_with_the_ek_for_that_name_only(case: str) -> None:
    changes, key = CREDENTIAL_CASES[case]
    ek = tpm2b(area(**changes))  # type: ignore[arg-type]
    digest_size = HASHES[parse_public(ek).name_alg]().digest_size
    for secret in (b"\x07", bytes(range(digest_size))):
        blob, seed = make_credential(ek_public=ek, ak_name=AK_NAME, secret=secret)
        assert len(blob) == 2 + digest_size + 2 + len(secret)
        assert software_activate(key, ek, blob, seed, AK_NAME) == secret
        with pytest.raises(ValueError, match="integrity"):
            software_activate(key, ek, blob, seed, AK_NAME[:-1] + b"\x00")


@pytest.mark.parametrize("name_alg", [SHA1, SHA384, SHA512])
def test_ak_names_of_every_supported_hash_are_accepted(name_alg: int) -> None:
    name = u16(name_alg) + bytes(HASHES[name_alg]().digest_size)
    ek = tpm2b(area())
    blob, seed = make_credential(ek_public=ek, ak_name=name, secret=SECRET)
    assert software_activate(EC_KEYS[P256], ek, blob, seed, name) == SECRET


def test_an_ek_x_marshalled_without_leading_zeros_is_padded_for_the_kdf() -> None:
    while True:
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        if numbers.x < 2**248:
            break
    x = numbers.x.to_bytes(31, "big")
    inner = area(x=x, y=numbers.y.to_bytes(32, "big"))
    blob, seed = make_credential(ek_public=tpm2b(inner), ak_name=AK_NAME, secret=SECRET)
    assert software_activate(key, tpm2b(inner), blob, seed, AK_NAME) == SECRET


def _refused(error: type[Exception], code: str, **changes: bytes) -> None:
    args = {"ek_public": tpm2b(area()), "ak_name": AK_NAME, "secret": SECRET, **changes}
    with pytest.raises(error) as info:
        make_credential(**args)
    assert getattr(info.value, "code", None) == code


@pytest.mark.parametrize(
    "attributes",
    [EK_ATTRS & ~RESTRICTED, EK_ATTRS & ~DECRYPT, EK_ATTRS | SIGN, AK_ATTRS, 0],
    ids=["not-restricted", "not-decrypt", "sign-too", "an-ak", "none"],
)
def test_the_ek_must_be_a_restricted_decryption_key(attributes: int) -> None:
    ek = tpm2b(area(attributes=attributes))
    _refused(VerificationFailed, "attestation.ek.attributes", ek_public=ek)


@pytest.mark.parametrize(
    "symmetric",
    [
        u16(NULL),
        u16(AES) + u16(128) + u16(OFB_MODE),
        aes(64),
        aes(129),
        u16(0x0025) + u16(128) + u16(CFB_MODE),
    ],
    ids=["null", "aes-ofb", "aes-64", "aes-129", "camellia-cfb"],
)
def test_the_ek_symmetric_must_be_aes_cfb(symmetric: bytes) -> None:
    ek = tpm2b(area(symmetric=symmetric))
    _refused(InvalidInput, "attestation.tpm.public", ek_public=ek)


def test_the_secret_is_one_byte_to_the_name_digest_size() -> None:
    _refused(InvalidInput, "attestation.credential.secret", secret=b"")
    _refused(InvalidInput, "attestation.credential.secret", secret=bytes(33))
    ek384 = tpm2b(area(curve=P384, name_alg=SHA384))
    make_credential(ek_public=ek384, ak_name=AK_NAME, secret=bytes(48))
    _refused(InvalidInput, "attestation.credential.secret", ek_public=ek384, secret=bytes(49))


@pytest.mark.parametrize(
    "name",
    [
        b"", b"\x00", b"\x0b", b"\x00\x0b", b"\x00\x0b" + bytes(31), b"\x00\x0b" + bytes(33),
        b"\x00\x0c" + bytes(32), b"\x99\x99" + bytes(32), b"\x00\x10" + bytes(32),
        b"\x00\x00\x0b" + bytes(32),
    ],
    ids=[
        "empty", "one-zero", "one-byte-sha256-id", "alg-only", "short-digest", "long-digest",
        "sha384-id-sha256-digest", "unknown-alg", "null-alg", "three-byte-id",
    ],
)  # fmt: skip
def test_the_ak_name_is_a_hash_algorithm_and_its_digest(name: bytes) -> None:
    _refused(InvalidInput, "attestation.credential.name", ak_name=name)


def test_a_malformed_or_unsupported_ek_is_invalid_input() -> None:
    _refused(InvalidInput, "attestation.tpm.public", ek_public=tpm2b(area())[:-1])
    _refused(InvalidInput, "attestation.tpm.hash", ek_public=tpm2b(area(name_alg=0x0012)))


def test_the_pem_of_a_parsed_key_is_the_keys() -> None:
    pem = public_key(parse_public(tpm2b(area()))).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pem == EC_KEYS[P256].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
