"""The certificate profiles hold exactly the extension values of the TrustFleet hierarchy."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from trustfleet import pki
from trustfleet.pki.profiles import CertificateProfile, ProfileKind


def _key_usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    """A keyUsage with only digitalSignature and/or keyCertSign + cRLSign set."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


CA_SIGNS_ONLY_CERTS_AND_CRLS = _key_usage(digital_signature=False, cert_sign=True)
CA_ALSO_SIGNS_OCSP = _key_usage(digital_signature=True, cert_sign=True)
END_ENTITY_SIGNS = _key_usage(digital_signature=True, cert_sign=False)
CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)
SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)

# name, kind, validity, keyUsage, EKUs, pathLenConstraint, is_ca
_Expected = tuple[
    str, ProfileKind, timedelta, x509.KeyUsage, tuple[x509.ObjectIdentifier, ...], int | None, bool
]
EXPECTED: dict[str, _Expected] = {
    "ROOT_CA": (
        "root-ca", ProfileKind.ROOT, timedelta(days=7300), CA_SIGNS_ONLY_CERTS_AND_CRLS, (), 1, True
    ),
    "MANUFACTURING_CA": (
        "manufacturing-ca", ProfileKind.INTERMEDIATE, timedelta(days=3650), CA_ALSO_SIGNS_OCSP,
        (), 0, True,
    ),
    "DEVICE_CA": (
        "device-ca", ProfileKind.INTERMEDIATE, timedelta(days=3650), CA_ALSO_SIGNS_OCSP, (), 0,
        True,
    ),
    "IDEVID": (
        "idevid", ProfileKind.DEVICE, timedelta(days=7300), END_ENTITY_SIGNS, CLIENT, None, False
    ),
    "LDEVID": (
        "ldevid", ProfileKind.DEVICE, timedelta(days=30), END_ENTITY_SIGNS, CLIENT, None, False
    ),
    "TLS_SERVER": (
        "tls-server", ProfileKind.SERVER, timedelta(days=90), END_ENTITY_SIGNS, SERVER, None,
        False,
    ),
}  # fmt: skip


@pytest.mark.parametrize("constant", list(EXPECTED), ids=list(EXPECTED))
def test_profile_has_exact_values(constant: str) -> None:
    profile = getattr(pki, constant)
    name, kind, validity, key_usage, ekus, path_length, is_ca = EXPECTED[constant]
    assert isinstance(profile, CertificateProfile)
    assert profile.name == name
    assert profile.kind is kind
    assert profile.validity == validity
    assert profile.key_usage == key_usage
    assert profile.extended_key_usages == ekus
    assert profile.path_length == path_length
    assert profile.is_ca is is_ca


def test_only_ca_profiles_may_sign_certificates_and_crls() -> None:
    for constant in EXPECTED:
        profile: CertificateProfile = getattr(pki, constant)
        assert profile.key_usage.key_cert_sign is profile.is_ca
        assert profile.key_usage.crl_sign is profile.is_ca
        assert (profile.path_length is not None) is profile.is_ca
        assert (profile.extended_key_usages == ()) is profile.is_ca


def test_profile_kind_values() -> None:
    assert {kind.name: kind.value for kind in ProfileKind} == {
        "ROOT": "root",
        "INTERMEDIATE": "intermediate",
        "DEVICE": "device",
        "SERVER": "server",
    }


def test_profile_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        pki.LDEVID.validity = timedelta(days=3650)  # type: ignore[misc]
    assert pki.LDEVID.validity == timedelta(days=30)
