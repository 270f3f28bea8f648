"""A fleet service's MQTT client certificate: clientAuth, CN = service identity, lints clean."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki_hierarchy import NOW, ORG, Hierarchy

from support.pkilint import lint_certificate
from trustfleet import pki
from trustfleet.errors import InvalidInput


def _issue(h: Hierarchy, identity: str = "svc.ingest") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return pki.issue_service_certificate(
        issuer=h.device_ca, public_key=key.public_key(), identity=identity, organization=ORG,
        now=NOW,
    )  # fmt: skip


def test_service_certificate_lints_clean(hierarchy: Hierarchy) -> None:
    cert = _issue(hierarchy)
    assert lint_certificate(cert.public_bytes(serialization.Encoding.DER)) == []


def test_service_certificate_is_a_tls_client_of_the_device_ca(hierarchy: Hierarchy) -> None:
    cert = _issue(hierarchy)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "svc.ingest"
    assert cert.issuer == hierarchy.device_ca.cert.subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = hierarchy.device_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.value.digest
    cert.verify_directly_issued_by(hierarchy.device_ca.cert)


@pytest.mark.parametrize(
    "identity",
    ["device-0001", "abcdefgh", "", "svc ingest", "x" * 65],
    ids=["device-id", "device-id-short", "empty", "space", "too-long"],
)
def test_device_shaped_or_malformed_identity_is_refused(
    hierarchy: Hierarchy, identity: str
) -> None:
    with pytest.raises(InvalidInput):
        _issue(hierarchy, identity)
