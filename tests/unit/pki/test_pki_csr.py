from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
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

    modulus = rsa.generate_private_key(65537, 3072).public_key().public_numbers().n
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
    "rsa3072-e3": (lambda: _csr(rsa.generate_private_key(3, 3072)), "est.csr.key_type"),
    "rsa3072-e17": (lambda: _rsa_with_exponent(17), "est.csr.key_type"),
    "rsa3072-e1": (lambda: _rsa_with_exponent(1), "est.csr.key_type"),
    "rsa3072-e-even": (lambda: _rsa_with_exponent(65536), "est.csr.key_type"),
    "rsa3072-e-huge": (lambda: _rsa_with_exponent((1 << 255) + 1), "est.csr.key_type"),
    "ed25519": (lambda: _csr(ed25519.Ed25519PrivateKey.generate()), "est.csr.key_type"),
    "dsa": (lambda: _csr(dsa.generate_private_key(2048)), "est.csr.key_type"),
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
    "rsa3072": lambda: rsa.generate_private_key(65537, 3072),
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
