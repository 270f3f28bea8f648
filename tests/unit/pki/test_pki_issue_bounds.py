"""Issuance rules, exactly: validity bounds and clamping, serials, subjects, extensions, refusals.

One P-256 hierarchy per module (software keys, no RSA or DSA generation), so the file is fast
enough to run once per mutant of ``trustfleet.pki.issue``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import datetime, timedelta, tzinfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
)
from pki_hierarchy import DEVICE_ID, NOW, ORG, Hierarchy, build_hierarchy

from trustfleet import pki
from trustfleet.errors import Config, InvalidInput

_YEAR = timedelta(days=365)
_SKI, _AKI = ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER
_BC, _KU, _EKU = (
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
)
_SAN, _CRL_DP = ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.CRL_DISTRIBUTION_POINTS
_AIA = ExtensionOID.AUTHORITY_INFORMATION_ACCESS
_DIGITAL_SIGNATURE_ONLY = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return build_hierarchy(ec.SECP256R1())


def _key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def _criticality(cert: x509.Certificate) -> dict[x509.ObjectIdentifier, bool]:
    """Every extension of the certificate and whether it is critical."""
    return {ext.oid: ext.critical for ext in cert.extensions}


def _value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_oid(oid).value


def _name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def _ldevid(h: Hierarchy, **kwargs: object) -> x509.Certificate:
    arguments: dict[str, object] = {
        "issuer": h.device_ca, "public_key": h.device_key.public_key(), "device_id": DEVICE_ID,
        "profile": pki.LDEVID, "organization": ORG, "now": NOW,
    }  # fmt: skip
    arguments.update(kwargs)
    return pki.issue_device_certificate(**arguments)  # type: ignore[arg-type]


def _server(h: Hierarchy, **kwargs: object) -> x509.Certificate:
    arguments: dict[str, object] = {
        "issuer": h.device_ca, "public_key": _key(), "common_name": "api.example.com",
        "dns_names": ["api.example.com"], "ip_addresses": [], "now": NOW,
    }  # fmt: skip
    arguments.update(kwargs)
    return pki.issue_server_certificate(**arguments)  # type: ignore[arg-type]


def _service(h: Hierarchy, **kwargs: object) -> x509.Certificate:
    arguments: dict[str, object] = {
        "issuer": h.device_ca, "public_key": _key(), "identity": "svc.ingest",
        "organization": ORG, "now": NOW,
    }  # fmt: skip
    arguments.update(kwargs)
    return pki.issue_service_certificate(**arguments)  # type: ignore[arg-type]


def _refusal(call: object, code: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        call()  # type: ignore[operator]
    assert info.value.code == code
    return info.value


class _NoOffset(tzinfo):
    """A tzinfo that does not know its offset: the time is not usable as UTC."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None


# --- the root ------------------------------------------------------------------------------


def test_root_ca_is_self_signed_with_exact_subject_validity_and_extensions() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    root = pki.make_root_ca(key=key, organization=ORG, now=NOW)
    subject = _name((NameOID.ORGANIZATION_NAME, ORG), (NameOID.COMMON_NAME, f"{ORG} Root CA"))
    assert root.subject == subject
    assert root.issuer == subject
    assert root.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert root.not_valid_after_utc == NOW - timedelta(minutes=5) + 20 * _YEAR
    assert root.serial_number.bit_length() == 129
    assert _criticality(root) == {_SKI: False, _BC: True, _KU: True}
    assert _value(root, _BC) == x509.BasicConstraints(ca=True, path_length=1)
    assert _value(root, _KU) == pki.ROOT_CA.key_usage
    assert _value(root, _SKI) == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    root.verify_directly_issued_by(root)


def test_root_ca_explicit_validity_of_one_second() -> None:
    root = pki.make_root_ca(
        key=ec.generate_private_key(ec.SECP256R1()), organization=ORG, now=NOW,
        validity=timedelta(seconds=1),
    )  # fmt: skip
    assert root.not_valid_before_utc == NOW - pki.BACKDATE
    assert root.not_valid_after_utc == NOW - pki.BACKDATE + timedelta(seconds=1)


@pytest.mark.parametrize(
    "validity", [timedelta(0), timedelta(seconds=-1)], ids=["zero", "negative"]
)
def test_root_ca_refuses_a_non_positive_validity(validity: timedelta) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _refusal(
        lambda: pki.make_root_ca(key=key, organization=ORG, now=NOW, validity=validity),
        "pki.validity.invalid",
    )


@pytest.mark.parametrize(
    "now", [NOW.replace(tzinfo=None), NOW.replace(tzinfo=_NoOffset())], ids=["naive", "no-offset"]
)
def test_root_ca_refuses_a_time_without_utc_offset(now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _refusal(lambda: pki.make_root_ca(key=key, organization=ORG, now=now), "pki.time.naive")


def test_root_name_is_at_most_64_characters() -> None:
    # "<organization> Root CA" adds 8 characters: a 56-character organization is the longest.
    key = ec.generate_private_key(ec.SECP256R1())
    root = pki.make_root_ca(key=key, organization="o" * 56, now=NOW)
    assert (
        root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "o" * 56 + " Root CA"
    )
    error = _refusal(
        lambda: pki.make_root_ca(key=key, organization="o" * 57, now=NOW), "pki.name.invalid"
    )
    assert error.message.startswith("The root name must be 1 to 64 printable")


def test_root_organization_is_checked() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    error = _refusal(
        lambda: pki.make_root_ca(key=key, organization="o" * 65, now=NOW), "pki.name.invalid"
    )
    assert error.message.startswith("The organization must be 1 to 64 printable")


# --- intermediates -------------------------------------------------------------------------


def test_intermediate_has_exact_subject_validity_and_extensions(h: Hierarchy) -> None:
    key = _key()
    ca = pki.issue_ca(
        issuer=h.root, public_key=key, common_name="Acme Device CA", organization=ORG,
        profile=pki.DEVICE_CA, now=NOW,
    )  # fmt: skip
    assert ca.subject == _name(
        (NameOID.ORGANIZATION_NAME, ORG), (NameOID.COMMON_NAME, "Acme Device CA")
    )
    assert ca.issuer == h.root.cert.subject
    assert ca.not_valid_before_utc == NOW - pki.BACKDATE
    assert ca.not_valid_after_utc == NOW + 10 * _YEAR
    assert ca.serial_number.bit_length() == 129
    # The root publishes a CRL but no OCSP responder.
    assert _criticality(ca) == {_SKI: False, _BC: True, _KU: True, _AKI: False, _CRL_DP: False}
    assert _value(ca, _BC) == x509.BasicConstraints(ca=True, path_length=0)
    assert _value(ca, _KU) == pki.DEVICE_CA.key_usage
    assert _value(ca, _SKI) == x509.SubjectKeyIdentifier.from_public_key(key)
    root_ski = h.root.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert _value(ca, _AKI) == x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        root_ski
    )
    assert _value(ca, _CRL_DP) == x509.CRLDistributionPoints(
        [x509.DistributionPoint(
            [x509.UniformResourceIdentifier("http://pki.example.com/root.crl")], None, None, None
        )]
    )  # fmt: skip
    ca.verify_directly_issued_by(h.root.cert)


def test_intermediate_refusals(h: Hierarchy) -> None:
    def issue(**kwargs: object) -> x509.Certificate:
        arguments: dict[str, object] = {
            "issuer": h.root, "public_key": _key(), "common_name": "Acme CA",
            "organization": ORG, "profile": pki.MANUFACTURING_CA, "now": NOW,
        }  # fmt: skip
        arguments.update(kwargs)
        return pki.issue_ca(**arguments)  # type: ignore[arg-type]

    _refusal(lambda: issue(profile=pki.LDEVID), "pki.profile.wrong")
    _refusal(lambda: issue(profile=pki.ROOT_CA), "pki.profile.wrong")
    edwards = ed25519.Ed25519PrivateKey.generate().public_key()
    _refusal(lambda: issue(public_key=edwards), "pki.key_type")
    error = _refusal(lambda: issue(common_name=""), "pki.name.invalid")
    assert error.message.startswith("The common name must be 1 to 64 printable")


# --- device certificates -------------------------------------------------------------------


def test_ldevid_has_exact_subject_validity_and_extensions(h: Hierarchy) -> None:
    cert = _ldevid(h)
    assert cert.subject == _name((NameOID.ORGANIZATION_NAME, ORG), (NameOID.COMMON_NAME, DEVICE_ID))
    assert cert.issuer == h.device_ca.cert.subject
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    assert cert.serial_number.bit_length() == 129
    assert _criticality(cert) == {
        _SKI: False, _BC: True, _KU: True, _EKU: False, _AKI: False, _SAN: False,
        _CRL_DP: False, _AIA: False,
    }  # fmt: skip
    assert _value(cert, _BC) == x509.BasicConstraints(ca=False, path_length=None)
    assert _value(cert, _KU) == _DIGITAL_SIGNATURE_ONLY
    assert _value(cert, _EKU) == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert _value(cert, _SAN) == x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(f"urn:trustfleet:device:{DEVICE_ID}")]
    )
    assert _value(cert, _CRL_DP) == x509.CRLDistributionPoints(
        [x509.DistributionPoint(
            [x509.UniformResourceIdentifier("http://pki.example.com/dev.crl")], None, None, None
        )]
    )  # fmt: skip
    assert _value(cert, _AIA) == x509.AuthorityInformationAccess(
        [x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier("http://pki.example.com/ocsp/dev"),
        )]
    )  # fmt: skip
    cert.verify_directly_issued_by(h.device_ca.cert)


def test_ldevid_with_model_has_an_ou_but_no_serial_number(h: Hierarchy) -> None:
    cert = _ldevid(h, model="sensor-x1")
    assert cert.subject == _name(
        (NameOID.ORGANIZATION_NAME, ORG), (NameOID.ORGANIZATIONAL_UNIT_NAME, "sensor-x1"),
        (NameOID.COMMON_NAME, DEVICE_ID),
    )  # fmt: skip


@pytest.mark.parametrize("model", [None, "sensor-x1"], ids=["no-model", "model"])
def test_idevid_subject_carries_the_device_id_as_serial_number(
    h: Hierarchy, model: str | None
) -> None:
    cert = pki.issue_device_certificate(
        issuer=h.manufacturing, public_key=h.device_key.public_key(), device_id=DEVICE_ID,
        profile=pki.IDEVID, organization=ORG, now=NOW, model=model,
    )  # fmt: skip
    ou = [] if model is None else [(NameOID.ORGANIZATIONAL_UNIT_NAME, model)]
    assert cert.subject == _name(
        (NameOID.ORGANIZATION_NAME, ORG), *ou, (NameOID.SERIAL_NUMBER, DEVICE_ID),
        (NameOID.COMMON_NAME, DEVICE_ID),
    )  # fmt: skip
    # The IDevID default (20 years) is clamped to the manufacturing CA's notAfter.
    assert cert.not_valid_after_utc == h.manufacturing.cert.not_valid_after_utc


def test_device_refusals(h: Hierarchy) -> None:
    _refusal(lambda: _ldevid(h, profile=pki.TLS_SERVER), "pki.profile.wrong")
    _refusal(lambda: _ldevid(h, profile=pki.DEVICE_CA), "pki.profile.wrong")
    # Checked first: an id that x509 itself would refuse, or next to a refused key or model.
    for bad_id in ("Dev-ABCDEFGH", "", "d" * 65):
        _refusal(lambda i=bad_id: _ldevid(h, device_id=i), "pki.device_id.invalid")  # type: ignore[misc]
    edwards = ed25519.Ed25519PrivateKey.generate().public_key()
    _refusal(lambda: _ldevid(h, device_id="x", public_key=edwards), "pki.device_id.invalid")
    _refusal(lambda: _ldevid(h, device_id="x", model=""), "pki.device_id.invalid")
    _refusal(lambda: _ldevid(h, public_key=edwards), "pki.key_type")
    error = _refusal(lambda: _ldevid(h, model=""), "pki.name.invalid")
    assert error.message.startswith("The model must be 1 to 64 printable")
    error = _refusal(lambda: _ldevid(h, organization="o" * 65), "pki.name.invalid")
    assert error.message.startswith("The organization must be 1 to 64 printable")


# --- TLS server and service client certificates --------------------------------------------


def test_server_certificate_has_exact_subject_san_and_extensions(h: Hierarchy) -> None:
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    cert = _server(h, dns_names=["api.example.com", "mqtt.example.com"], ip_addresses=ips)
    assert cert.subject == _name((NameOID.COMMON_NAME, "api.example.com"))
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    assert _value(cert, _SAN) == x509.SubjectAlternativeName(
        [x509.DNSName("api.example.com"), x509.DNSName("mqtt.example.com"),
         x509.IPAddress(ips[0]), x509.IPAddress(ips[1])]
    )  # fmt: skip
    assert _criticality(cert) == {
        _SKI: False, _BC: True, _KU: True, _EKU: False, _AKI: False, _SAN: False,
        _CRL_DP: False, _AIA: False,
    }  # fmt: skip
    assert _value(cert, _KU) == _DIGITAL_SIGNATURE_ONLY
    assert _value(cert, _EKU) == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    assert _value(cert, _BC) == x509.BasicConstraints(ca=False, path_length=None)


def test_server_certificate_with_only_dns_or_only_ip(h: Hierarchy) -> None:
    only_dns = _server(h, dns_names=["mqtt.example.com"], ip_addresses=[])
    assert _value(only_dns, _SAN) == x509.SubjectAlternativeName([x509.DNSName("mqtt.example.com")])
    ip = ipaddress.ip_address("10.0.0.1")
    only_ip = _server(h, dns_names=[], ip_addresses=[ip])
    assert _value(only_ip, _SAN) == x509.SubjectAlternativeName([x509.IPAddress(ip)])


def test_server_dns_name_length_bound_is_253(h: Hierarchy) -> None:
    label = "a" * 63
    longest = ".".join([label, label, label, "a" * 61])  # 63 * 3 + 61 + 3 dots = 253
    assert len(longest) == 253
    cert = _server(h, dns_names=[longest])
    assert _value(cert, _SAN) == x509.SubjectAlternativeName([x509.DNSName(longest)])
    _refusal(lambda: _server(h, dns_names=[longest + "a"]), "pki.dns_name.invalid")


def test_server_refusals(h: Hierarchy) -> None:
    _refusal(lambda: _server(h, dns_names=[], ip_addresses=[]), "pki.san.empty")
    _refusal(lambda: _server(h, dns_names=["Api.example.com"]), "pki.dns_name.invalid")
    # A bad DNS name is refused even next to a good one and an IP address.
    _refusal(
        lambda: _server(
            h, dns_names=["api.example.com", "-x.example.com"],
            ip_addresses=[ipaddress.ip_address("10.0.0.1")],
        ),
        "pki.dns_name.invalid",
    )  # fmt: skip
    edwards = ed25519.Ed25519PrivateKey.generate().public_key()
    _refusal(lambda: _server(h, public_key=edwards), "pki.key_type")
    error = _refusal(lambda: _server(h, common_name=" api"), "pki.name.invalid")
    assert error.message.startswith("The common name must be 1 to 64 printable")


def test_service_certificate_has_exact_subject_validity_and_extensions(h: Hierarchy) -> None:
    cert = _service(h)
    assert cert.subject == _name(
        (NameOID.ORGANIZATION_NAME, ORG), (NameOID.COMMON_NAME, "svc.ingest")
    )
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=397)
    assert _criticality(cert) == {
        _SKI: False, _BC: True, _KU: True, _EKU: False, _AKI: False, _CRL_DP: False,
        _AIA: False,
    }  # fmt: skip
    assert _value(cert, _KU) == _DIGITAL_SIGNATURE_ONLY
    assert _value(cert, _EKU) == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert _value(cert, _BC) == x509.BasicConstraints(ca=False, path_length=None)
    explicit = _service(h, validity=timedelta(days=1))
    assert explicit.not_valid_after_utc == NOW + timedelta(days=1)


def test_service_identity_bounds(h: Hierarchy) -> None:
    longest = "svc." + "x" * 60
    cert = _service(h, identity=longest)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == longest
    for identity in (longest + "x", "", "svc ingest", "device-0001"):
        _refusal(lambda i=identity: _service(h, identity=i), "pki.service_identity.invalid")  # type: ignore[misc]
    edwards = ed25519.Ed25519PrivateKey.generate().public_key()
    _refusal(lambda: _service(h, public_key=edwards), "pki.key_type")


# --- validity: defaults, clamping to the issuer, boundaries --------------------------------


def test_issuer_without_urls_adds_no_crl_dp_and_no_aia(h: Hierarchy) -> None:
    bare = pki.IssuerContext(h.device_ca.cert, h.device_ca.key)
    assert bare.crl_url is None
    assert bare.ocsp_url is None
    cert = _ldevid(h, issuer=bare)
    assert _CRL_DP not in _criticality(cert)
    assert _AIA not in _criticality(cert)


def test_issuance_at_the_issuer_not_before_clamps_not_before(h: Hierarchy) -> None:
    start = h.device_ca.cert.not_valid_before_utc
    at_start = _ldevid(h, now=start)
    assert at_start.not_valid_before_utc == start
    assert at_start.not_valid_after_utc == start + timedelta(days=30)
    later = _ldevid(h, now=start + pki.BACKDATE + timedelta(seconds=1))
    assert later.not_valid_before_utc == start + timedelta(seconds=1)
    _refusal(lambda: _ldevid(h, now=start - timedelta(seconds=1)), "pki.issuer.not_valid")


def test_issuance_just_before_the_issuer_expires_clamps_not_after(h: Hierarchy) -> None:
    end = h.device_ca.cert.not_valid_after_utc
    last = _ldevid(h, now=end - timedelta(seconds=1))
    assert last.not_valid_before_utc == end - timedelta(seconds=1) - pki.BACKDATE
    assert last.not_valid_after_utc == end
    _refusal(lambda: _ldevid(h, now=end), "pki.issuer.not_valid")


def test_validity_reaching_exactly_the_issuer_end_is_kept(h: Hierarchy) -> None:
    end = h.device_ca.cert.not_valid_after_utc
    now = end - timedelta(days=30)
    exact = _ldevid(h, now=now, validity=timedelta(days=30))
    assert exact.not_valid_after_utc == end
    shorter = _ldevid(h, now=now, validity=timedelta(days=30) - timedelta(seconds=1))
    assert shorter.not_valid_after_utc == end - timedelta(seconds=1)


def test_validity_of_one_second_is_accepted_and_zero_is_not(h: Hierarchy) -> None:
    cert = _ldevid(h, validity=timedelta(seconds=1))
    assert cert.not_valid_after_utc == NOW + timedelta(seconds=1)
    _refusal(lambda: _ldevid(h, validity=timedelta(0)), "pki.validity.invalid")
    _refusal(lambda: _ldevid(h, validity=timedelta(seconds=-1)), "pki.validity.invalid")


@pytest.mark.parametrize(
    "now", [NOW.replace(tzinfo=None), NOW.replace(tzinfo=_NoOffset())], ids=["naive", "no-offset"]
)
def test_issuance_refuses_a_time_without_utc_offset(h: Hierarchy, now: datetime) -> None:
    _refusal(lambda: _ldevid(h, now=now), "pki.time.naive")


def test_fractions_of_a_second_are_dropped(h: Hierarchy) -> None:
    now = NOW + timedelta(microseconds=999_999)
    cert = _ldevid(h, now=now, validity=timedelta(days=1))
    assert cert.not_valid_before_utc == NOW - pki.BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=1)


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "organization",
    ["", "o" * 65, "Acme\x00IoT", " Acme", "Acme "],
    ids=["empty", "65-chars", "unprintable", "leading-space", "trailing-space"],
)
def test_organization_refusals(h: Hierarchy, organization: str) -> None:
    error = _refusal(lambda: _ldevid(h, organization=organization), "pki.name.invalid")
    assert error.message.startswith("The organization must be 1 to 64 printable")


def test_organization_of_64_characters_is_accepted(h: Hierarchy) -> None:
    cert = _ldevid(h, organization="o" * 64)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "o" * 64


# --- serials and the issuer context --------------------------------------------------------


def test_serials_are_129_bits_and_unique() -> None:
    serials = [pki.new_serial() for _ in range(2000)]
    assert len(set(serials)) == len(serials)
    assert {serial.bit_length() for serial in serials} == {129}
    assert any(serial & 1 for serial in serials)  # the low bits are random, not fixed


def test_two_certificates_get_different_serials(h: Hierarchy) -> None:
    assert _ldevid(h).serial_number != _ldevid(h).serial_number


def test_issuer_context_refuses_a_key_of_another_certificate(h: Hierarchy) -> None:
    with pytest.raises(Config) as info:
        pki.IssuerContext(h.root.cert, h.device_ca.key)
    assert info.value.code == "pki.issuer.key_mismatch"


def test_issuer_context_refuses_an_end_entity_certificate(h: Hierarchy) -> None:
    with pytest.raises(Config) as info:
        pki.IssuerContext(h.ldevid, h.device_key)
    assert info.value.code == "pki.issuer.not_ca"


def test_issuer_context_refuses_a_certificate_without_basic_constraints() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name((NameOID.COMMON_NAME, "no constraints"))
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    with pytest.raises(Config) as info:
        pki.IssuerContext(cert, key)
    assert info.value.code == "pki.issuer.not_ca"


def test_issuer_context_is_immutable(h: Hierarchy) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.device_ca.crl_url = "http://evil.example.com/dev.crl"  # type: ignore[misc]
