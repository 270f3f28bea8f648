from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pki_hierarchy import DEVICE_ID, NOW, ORG, Hierarchy

from trustfleet import pki
from trustfleet.errors import InvalidInput, VerificationFailed


@pytest.mark.parametrize(
    "device_id",
    ["short", "UPPERCASE-id-123", "dev_underscore", "a" * 65, "dev id space", "dév-accentué1", ""],
    ids=["too-short", "uppercase", "underscore", "too-long", "space", "non-ascii", "empty"],
)
def test_bad_device_ids_are_refused(device_id: str) -> None:
    with pytest.raises(InvalidInput) as info:
        pki.validate_device_id(device_id)
    assert info.value.code == "pki.device_id.invalid"


def test_good_device_id_and_uri() -> None:
    assert pki.validate_device_id("a" * 64) == "a" * 64
    assert pki.device_uri(DEVICE_ID) == f"urn:trustfleet:device:{DEVICE_ID}"


def test_new_device_ids_are_random_and_valid() -> None:
    ids = {pki.new_device_id() for _ in range(1000)}
    assert len(ids) == 1000
    for device_id in ids:
        assert pki.DEVICE_ID_PATTERN.fullmatch(device_id)
        assert device_id.startswith("dev-")
        assert len(device_id) == 20
    assert pki.new_device_id("sim").startswith("sim-")


def test_device_id_from_issued_certificates(hierarchy: Hierarchy) -> None:
    assert pki.device_id_from_certificate(hierarchy.idevid) == DEVICE_ID
    assert pki.device_id_from_certificate(hierarchy.ldevid) == DEVICE_ID


def _self_signed(names: list[x509.NameAttribute[str]], uris: list[str] | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(x509.Name(names))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW)
    )
    if uris is not None:
        general = [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(key, hashes.SHA256())


CN = NameOID.COMMON_NAME
URI = f"urn:trustfleet:device:{DEVICE_ID}"


@pytest.mark.parametrize(
    ("names", "uris"),
    [
        ([x509.NameAttribute(CN, DEVICE_ID)], None),
        ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)], [URI]),
        ([x509.NameAttribute(CN, "dev-someoneelse99")], [URI]),
        ([x509.NameAttribute(CN, DEVICE_ID)], ["https://example.com/"]),
        ([x509.NameAttribute(CN, DEVICE_ID)], [URI, "urn:trustfleet:device:dev-other12345"]),
        ([x509.NameAttribute(CN, DEVICE_ID), x509.NameAttribute(CN, DEVICE_ID)], [URI]),
        ([x509.NameAttribute(CN, "Not A Device")], ["urn:trustfleet:device:Not A Device"]),
    ],
    ids=["no-san", "no-cn", "cn-mismatch", "no-device-uri", "two-uris", "two-cns", "bad-cn"],
)
def test_device_id_from_bad_certificates(
    names: list[x509.NameAttribute[str]], uris: list[str] | None
) -> None:
    with pytest.raises(VerificationFailed):
        pki.device_id_from_certificate(_self_signed(names, uris))
