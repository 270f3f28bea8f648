"""cryptography's four builders sign with a key that never leaves the SoftHSM2 token."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from trustfleet.keystore import Pkcs11EcPrivateKey, TokenSession

pytestmark = pytest.mark.integration

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TrustFleet Test CA")])


@pytest.fixture(params=["P-256", "P-384"])
def ca_key(request: pytest.FixtureRequest, token: TokenSession) -> Pkcs11EcPrivateKey:
    return token.generate_ec_key("ca", curve=request.param)


def _hash_for(key: Pkcs11EcPrivateKey) -> hashes.HashAlgorithm:
    return hashes.SHA384() if key.key_size == 384 else hashes.SHA256()


def _ca_certificate(key: Pkcs11EcPrivateKey) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(CA_NAME)
        .issuer_name(CA_NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, _hash_for(key))
    )


def test_certificate_builder(ca_key: Pkcs11EcPrivateKey) -> None:
    certificate = _ca_certificate(ca_key)
    certificate.verify_directly_issued_by(certificate)
    assert certificate.signature_hash_algorithm is not None
    ca_key.public_key().verify(
        certificate.signature,
        certificate.tbs_certificate_bytes,
        ec.ECDSA(certificate.signature_hash_algorithm),
    )


def test_csr_builder(ca_key: Pkcs11EcPrivateKey) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-0001")]))
        .sign(ca_key, _hash_for(ca_key))
    )
    assert csr.is_signature_valid
    assert csr.public_key() == ca_key.public_key()


def test_crl_builder(ca_key: Pkcs11EcPrivateKey) -> None:
    revoked = x509.RevokedCertificateBuilder().serial_number(1234).revocation_date(NOW).build()
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(CA_NAME)
        .last_update(NOW)
        .next_update(NOW + datetime.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .sign(ca_key, _hash_for(ca_key))
    )
    assert crl.is_signature_valid(ca_key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(1234) is not None


def test_ocsp_response_builder(ca_key: Pkcs11EcPrivateKey) -> None:
    issuer = _ca_certificate(ca_key)
    device_key = ec.generate_private_key(ec.SECP256R1())
    subject = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-0001")]))
        .issuer_name(CA_NAME)
        .public_key(device_key.public_key())
        .serial_number(77)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .sign(ca_key, _hash_for(ca_key))
    )
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=subject,
            issuer=issuer,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + datetime.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        .sign(ca_key, _hash_for(ca_key))
    )
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.signature_hash_algorithm is not None
    ca_key.public_key().verify(
        response.signature,
        response.tbs_response_bytes,
        ec.ECDSA(response.signature_hash_algorithm),
    )
