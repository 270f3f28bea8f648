from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa, x25519
from cryptography.x509.oid import NameOID
from pki_hierarchy import DEVICE_ID

from trustfleet import pki
from trustfleet.errors import InvalidInput

POLICY = pki.CsrPolicy()
URI = f"urn:trustfleet:device:{DEVICE_ID}"
CN = NameOID.COMMON_NAME


def _csr(
    key: object = None,
    *,
    names: list[tuple[x509.ObjectIdentifier, str]] | None = None,
    uris: list[str] | None = None,
) -> x509.CertificateSigningRequest:
    private_key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [
        x509.NameAttribute(oid, value)
        for oid, value in (names if names is not None else [(CN, DEVICE_ID)])
    ]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if uris is not None:
        general = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private_key, algorithm)  # type: ignore[arg-type]


@functools.cache
def _rsa3072() -> rsa.RSAPrivateKey:
    """An RSA-3072 key, generated once (generation is the slow part of this file)."""
    return rsa.generate_private_key(65537, 3072)


def _tampered() -> x509.CertificateSigningRequest:
    der = bytearray(_csr().public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature value
    return x509.load_der_x509_csr(bytes(der))


def _other_key_signature() -> x509.CertificateSigningRequest:
    """A CSR carrying one public key but signed by another: no proof of possession."""
    from asn1crypto import csr as asn1_csr
    from asn1crypto import keys as asn1_keys

    request = asn1_csr.CertificationRequest.load(_csr().public_bytes(serialization.Encoding.DER))
    victim = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = victim.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = request["certification_request_info"]
    info["subject_pk_info"] = asn1_keys.PublicKeyInfo.load(spki)
    return x509.load_der_x509_csr(request.dump(force=True))


def _rsa_with_exponent(exponent: int) -> x509.CertificateSigningRequest:
    """A CSR whose RSA-3072 public key has ``exponent`` (signed by another key: the key check
    comes first, and no private key exists for most exponents)."""
    from asn1crypto import csr as asn1_csr
    from asn1crypto import keys as asn1_keys

    modulus = _rsa3072().public_key().public_numbers().n
    request = asn1_csr.CertificationRequest.load(_csr().public_bytes(serialization.Encoding.DER))
    info = request["certification_request_info"]
    rsa_key = asn1_keys.RSAPublicKey({"modulus": modulus, "public_exponent": exponent})
    info["subject_pk_info"] = asn1_keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "rsa", "parameters": None}, "public_key": rsa_key}
    )
    return x509.load_der_x509_csr(request.dump(force=True))


BAD_CASES: dict[str, tuple[Callable[[], x509.CertificateSigningRequest], str]] = {
    "tampered-signature": (_tampered, "est.csr.signature"),
    "signature-by-other-key": (_other_key_signature, "est.csr.signature"),
    "p521": (lambda: _csr(ec.generate_private_key(ec.SECP521R1())), "est.csr.key_type"),
    "secp256k1": (lambda: _csr(ec.generate_private_key(ec.SECP256K1())), "est.csr.key_type"),
    "rsa2048": (lambda: _csr(rsa.generate_private_key(65537, 2048)), "est.csr.key_type"),
    # Finding 9.4 (RSA exponent): only e = 65537 is accepted.
    "rsa3072-e3": (lambda: _rsa_with_exponent(3), "est.csr.key_type"),
    "rsa3072-e17": (lambda: _rsa_with_exponent(17), "est.csr.key_type"),
    "rsa3072-e1": (lambda: _rsa_with_exponent(1), "est.csr.key_type"),
    "rsa3072-e-even": (lambda: _rsa_with_exponent(65536), "est.csr.key_type"),
    "rsa3072-e-huge": (lambda: _rsa_with_exponent((1 << 255) + 1), "est.csr.key_type"),
    "ed25519": (lambda: _csr(ed25519.Ed25519PrivateKey.generate()), "est.csr.key_type"),
    # 1024 bits: generated in milliseconds (2048 takes a second); any DSA key is refused.
    "dsa": (lambda: _csr(dsa.generate_private_key(1024)), "est.csr.key_type"),  # noqa: S505
    "missing-cn": (
        lambda: _csr(names=[(NameOID.ORGANIZATION_NAME, "Acme")]),
        "est.csr.subject_missing",
    ),
    "empty-subject": (lambda: _csr(names=[]), "est.csr.subject_missing"),
    "cn-mismatch": (lambda: _csr(names=[(CN, "dev-someoneelse1")]), "est.csr.subject_mismatch"),
    "cn-case-differs": (lambda: _csr(names=[(CN, DEVICE_ID.upper())]), "est.csr.subject_mismatch"),
    "two-cns": (lambda: _csr(names=[(CN, DEVICE_ID), (CN, DEVICE_ID)]), "est.csr.subject_mismatch"),
    "san-uri-mismatch": (
        lambda: _csr(uris=["urn:trustfleet:device:dev-someoneelse1"]),
        "est.csr.subject_mismatch",
    ),
    "san-extra-uri": (
        lambda: _csr(uris=[URI, "https://evil.example/"]),
        "est.csr.subject_mismatch",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_csrs_are_refused(case: str) -> None:
    make, code = BAD_CASES[case]
    csr = make()
    with pytest.raises(InvalidInput) as info:
        pki.check_csr(csr, expected_device_id=DEVICE_ID, policy=POLICY)
    assert info.value.code == code
    assert info.value.message  # readable reason


GOOD_KEYS: dict[str, Callable[[], object]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa3072": _rsa3072,
}


@pytest.mark.parametrize("name", list(GOOD_KEYS), ids=list(GOOD_KEYS))
def test_good_csrs_pass(name: str) -> None:
    key = GOOD_KEYS[name]()
    pki.check_csr(_csr(key), expected_device_id=DEVICE_ID, policy=POLICY)
    pki.check_csr(_csr(key, uris=[URI]), expected_device_id=DEVICE_ID, policy=POLICY)


def test_policy_size_bound() -> None:
    with pytest.raises(InvalidInput) as info:
        pki.check_csr(_csr(), expected_device_id=DEVICE_ID, policy=pki.CsrPolicy(max_bytes=10))
    assert info.value.code == "est.csr.too_large"


def test_policy_can_narrow_the_curves() -> None:
    policy = pki.CsrPolicy(allowed_curves=("secp384r1",))
    with pytest.raises(InvalidInput):
        pki.check_csr(_csr(), expected_device_id=DEVICE_ID, policy=policy)


# --- CSRs assembled byte by byte: a field cryptography's builder will not write, re-signed so
# --- that the signature verifies and the refusal comes from the field itself.

_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_P256_OID = bytes.fromhex("06082a8648ce3d030107")
_EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")


def _der(tag: int, content: bytes) -> bytes:
    """One DER TLV with a definite length."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _replaced(info: bytes, old: bytes, new: bytes) -> bytes:
    """The request info ``info`` (a DER SEQUENCE) with the bytes ``old`` inside it replaced."""
    header = 2 + (info[1] & 0x7F if info[1] & 0x80 else 0)
    content = info[header:]
    assert content.count(old) == 1
    return _der(0x30, content.replace(old, new))


def _signed(info: bytes, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    """The CSR of the DER CertificationRequestInfo ``info``, signed by ``key`` (ECDSA-SHA256)."""
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    body = info + _ECDSA_WITH_SHA256 + _der(0x03, b"\x00" + signature)
    return x509.load_der_x509_csr(_der(0x30, body))


def _edited(
    old: bytes, new: bytes, *, uris: list[str] | None = None
) -> x509.CertificateSigningRequest:
    """A good P-256 CSR with the bytes ``old`` of its request info replaced, then re-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _signed(_replaced(_csr(key, uris=uris).tbs_certrequest_bytes, old, new), key)


def _spki_edited(edit: Callable[[bytes], bytes]) -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _signed(_replaced(_csr(key).tbs_certrequest_bytes, spki, edit(spki)), key)


def _x25519_spki(_: bytes) -> bytes:
    return (
        x25519.X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _point_off_curve(spki: bytes) -> bytes:
    return spki[:-1] + bytes([spki[-1] ^ 0x01])


def _refusal(csr: x509.CertificateSigningRequest, device_id: str = DEVICE_ID) -> str:
    with pytest.raises(InvalidInput) as info:
        pki.check_csr(csr, expected_device_id=device_id, policy=POLICY)
    return str(info.value.code)


def test_resigned_csr_verifies_and_passes() -> None:
    csr = _edited(_P256_OID, _P256_OID)
    assert csr.is_signature_valid
    pki.check_csr(csr, expected_device_id=DEVICE_ID, policy=POLICY)


UNLOADABLE_KEYS: dict[str, Callable[[bytes], bytes]] = {
    # cryptography raises UnsupportedAlgorithm for these two ...
    "unknown-curve": lambda spki: spki.replace(_P256_OID, _P256_OID[:-1] + b"\x55"),
    "unknown-key-algorithm": lambda spki: spki.replace(
        _EC_PUBLIC_KEY_OID, _EC_PUBLIC_KEY_OID[:-1] + b"\x55"
    ),
    # ... and ValueError for a point that is not on P-256.
    "point-off-curve": _point_off_curve,
}


@pytest.mark.parametrize("case", list(UNLOADABLE_KEYS), ids=list(UNLOADABLE_KEYS))
def test_csr_key_that_cannot_be_loaded_is_key_type(case: str) -> None:
    csr = _spki_edited(UNLOADABLE_KEYS[case])
    assert _refusal(csr) == "est.csr.key_type"


def test_csr_x25519_key_is_key_type() -> None:
    csr = _spki_edited(_x25519_spki)
    assert isinstance(csr.public_key(), x25519.X25519PublicKey)
    assert _refusal(csr) == "est.csr.key_type"


def test_csr_signature_algorithm_unknown_is_signature() -> None:
    """An unknown signature algorithm makes cryptography answer "not valid" (it never raises
    once the key loads), and the CSR is refused for want of proof of possession."""
    key = ec.generate_private_key(ec.SECP256R1())
    info = _csr(key).tbs_certrequest_bytes
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    unknown = _ECDSA_WITH_SHA256[:-1] + b"\x55"
    csr = x509.load_der_x509_csr(_der(0x30, info + unknown + _der(0x03, b"\x00" + signature)))
    assert csr.is_signature_valid is False
    assert _refusal(csr) == "est.csr.signature"


def test_csr_subject_with_invalid_utf8_is_malformed() -> None:
    cn = DEVICE_ID.encode()
    csr = _edited(cn, cn[:-1] + b"\xff")
    assert csr.is_signature_valid
    assert _refusal(csr) == "est.csr.malformed"


def test_csr_subject_value_of_wrong_type_is_malformed() -> None:
    cn = _der(0x0C, DEVICE_ID.encode())  # UTF8String
    csr = _edited(cn, b"\x02" + cn[1:])  # the same bytes as an INTEGER
    assert _refusal(csr) == "est.csr.malformed"


def test_csr_san_that_cannot_be_parsed_is_malformed() -> None:
    uri = _der(0x86, URI.encode())  # [6] uniformResourceIdentifier
    csr = _edited(uri, b"\x99" + uri[1:], uris=[URI])
    assert csr.is_signature_valid
    assert _refusal(csr) == "est.csr.malformed"


_PADDING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")


def _csr_of_size(size: int) -> x509.CertificateSigningRequest:
    """A good CSR whose DER is exactly ``size`` bytes (padded by a non-critical extension;
    ECDSA signatures vary by a byte or two, so sign until the length is right)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(CN, DEVICE_ID)])
    padding = size - 300
    for _ in range(50):
        extension = x509.UnrecognizedExtension(_PADDING_OID, b"\x00" * padding)
        builder = x509.CertificateSigningRequestBuilder().subject_name(name)
        csr = builder.add_extension(extension, critical=False).sign(key, hashes.SHA256())
        actual = len(csr.public_bytes(serialization.Encoding.DER))
        if actual == size:
            return csr
        padding += size - actual
    raise AssertionError(f"no CSR of {size} bytes")


def test_default_size_bound_is_64_kib_inclusive() -> None:
    assert POLICY.max_bytes == 64 * 1024
    pki.check_csr(_csr_of_size(64 * 1024), expected_device_id=DEVICE_ID, policy=POLICY)


def test_csr_one_byte_over_the_default_bound_is_too_large() -> None:
    assert _refusal(_csr_of_size(64 * 1024 + 1)) == "est.csr.too_large"


def test_csr_exactly_at_a_custom_bound_passes_and_one_over_is_too_large() -> None:
    csr = _csr_of_size(600)
    pki.check_csr(csr, expected_device_id=DEVICE_ID, policy=pki.CsrPolicy(max_bytes=600))
    with pytest.raises(InvalidInput) as info:
        pki.check_csr(csr, expected_device_id=DEVICE_ID, policy=pki.CsrPolicy(max_bytes=599))
    assert info.value.code == "est.csr.too_large"


@pytest.mark.parametrize("device_id", ["dev-123", "Dev-12345678", "dev_12345678", ""])
def test_invalid_expected_device_id_is_refused(device_id: str) -> None:
    """The id is checked even when the CSR names it exactly (no other check would catch it)."""
    csr = _csr(names=[(CN, device_id)]) if device_id else _csr()
    assert _refusal(csr, device_id) == "pki.device_id.invalid"


def test_shortest_expected_device_id_is_accepted() -> None:
    device_id = "dev-1234"  # 8 characters, the minimum
    pki.check_csr(_csr(names=[(CN, device_id)]), expected_device_id=device_id, policy=POLICY)


def test_csr_policy_is_immutable() -> None:
    policy = pki.CsrPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_bytes = 1 << 30  # type: ignore[misc]
    assert policy.max_bytes == 64 * 1024
