from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki_hierarchy import DEVICE_ID, NOW, ORG, Hierarchy

from support.pkilint import lint_certificate
from trustfleet import pki
from trustfleet.errors import Config, InvalidInput

KINDS = ["root", "manufacturing", "device_ca", "idevid", "ldevid", "server"]


def _cert(h: Hierarchy, kind: str) -> x509.Certificate:
    contexts = {"root": h.root, "manufacturing": h.manufacturing, "device_ca": h.device_ca}
    if kind in contexts:
        return contexts[kind].cert
    cert: x509.Certificate = getattr(h, kind)
    return cert


def _ext(
    cert: x509.Certificate, cls: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


@pytest.mark.parametrize("kind", KINDS)
def test_every_certificate_type_lints_clean(hierarchy: Hierarchy, kind: str) -> None:
    der = _cert(hierarchy, kind).public_bytes(serialization.Encoding.DER)
    assert lint_certificate(der) == []


@pytest.mark.parametrize("kind", KINDS)
def test_signature_hash_follows_the_signer_curve(hierarchy: Hierarchy, kind: str) -> None:
    cert = _cert(hierarchy, kind)
    expected = hashes.SHA256 if isinstance(hierarchy.curve, ec.SECP256R1) else hashes.SHA384
    assert isinstance(cert.signature_hash_algorithm, expected)


@pytest.mark.parametrize("kind", KINDS[1:])
def test_aki_is_the_issuer_ski(hierarchy: Hierarchy, kind: str) -> None:
    cert = _cert(hierarchy, kind)
    issuer = hierarchy.manufacturing if kind == "idevid" else hierarchy.device_ca
    if kind in ("manufacturing", "device_ca"):
        issuer = hierarchy.root
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    ski = _ext(issuer.cert, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.digest
    assert aki.authority_cert_issuer is None
    cert.verify_directly_issued_by(issuer.cert)
    crl_dp = _ext(cert, x509.CRLDistributionPoints).value
    assert isinstance(crl_dp, x509.CRLDistributionPoints)
    assert crl_dp[0].full_name == [x509.UniformResourceIdentifier(str(issuer.crl_url))]
    if issuer.ocsp_url is None:
        with pytest.raises(x509.ExtensionNotFound):
            _ext(cert, x509.AuthorityInformationAccess)
    else:
        aia = _ext(cert, x509.AuthorityInformationAccess).value
        assert isinstance(aia, x509.AuthorityInformationAccess)
        assert aia[0].access_location.value == issuer.ocsp_url


def test_profiles_shape_the_hierarchy(hierarchy: Hierarchy) -> None:
    root_bc = _ext(hierarchy.root.cert, x509.BasicConstraints)
    assert root_bc.critical
    assert root_bc.value == x509.BasicConstraints(ca=True, path_length=1)
    for ca in (hierarchy.manufacturing.cert, hierarchy.device_ca.cert):
        assert _ext(ca, x509.BasicConstraints).value == x509.BasicConstraints(
            ca=True, path_length=0
        )
        with pytest.raises(x509.ExtensionNotFound):
            _ext(ca, x509.ExtendedKeyUsage)
    for leaf, usage in [
        (hierarchy.idevid, ExtendedKeyUsageOID.CLIENT_AUTH),
        (hierarchy.ldevid, ExtendedKeyUsageOID.CLIENT_AUTH),
        (hierarchy.server, ExtendedKeyUsageOID.SERVER_AUTH),
    ]:
        assert _ext(leaf, x509.BasicConstraints).value == x509.BasicConstraints(
            ca=False, path_length=None
        )
        assert list(_ext(leaf, x509.ExtendedKeyUsage).value) == [usage]  # type: ignore[call-overload]  # EKU is iterable
        key_usage = _ext(leaf, x509.KeyUsage)
        assert key_usage.critical
        assert key_usage.value.digital_signature  # type: ignore[attr-defined]  # KeyUsage value


def test_device_certificate_subject_and_san(hierarchy: Hierarchy) -> None:
    for cert in (hierarchy.idevid, hierarchy.ldevid):
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == DEVICE_ID
        assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ORG
        san = _ext(cert, x509.SubjectAlternativeName).value
        assert isinstance(san, x509.SubjectAlternativeName)
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
            pki.device_uri(DEVICE_ID)
        ]
    idevid_serial = hierarchy.idevid.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    assert idevid_serial[0].value == DEVICE_ID
    model = hierarchy.idevid.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert model[0].value == "sensor-x1"


def test_validity_backdated_and_defaults(hierarchy: Hierarchy) -> None:
    ldevid = hierarchy.ldevid
    assert ldevid.not_valid_before_utc == NOW - pki.BACKDATE
    assert ldevid.not_valid_after_utc == NOW + timedelta(days=30)
    server = hierarchy.server
    assert server.not_valid_after_utc == NOW + timedelta(days=90)


def test_not_before_never_precedes_the_issuer(hierarchy: Hierarchy) -> None:
    # The root was made at NOW (backdated 5 min); issue one minute later.
    cert = pki.issue_device_certificate(
        issuer=hierarchy.device_ca, public_key=hierarchy.device_key.public_key(),
        device_id=DEVICE_ID, profile=pki.LDEVID, organization=ORG,
        now=hierarchy.device_ca.cert.not_valid_before_utc + timedelta(minutes=1),
    )  # fmt: skip
    assert cert.not_valid_before_utc == hierarchy.device_ca.cert.not_valid_before_utc


def test_not_after_is_clamped_to_the_issuer(hierarchy: Hierarchy) -> None:
    # The IDevID default (20 years) outlives the manufacturing CA (10 years).
    assert hierarchy.idevid.not_valid_after_utc == hierarchy.manufacturing.cert.not_valid_after_utc
    cert = pki.issue_device_certificate(
        issuer=hierarchy.device_ca, public_key=hierarchy.device_key.public_key(),
        device_id=DEVICE_ID, profile=pki.LDEVID, organization=ORG, now=NOW,
        validity=timedelta(days=365 * 50),
    )  # fmt: skip
    assert cert.not_valid_after_utc == hierarchy.device_ca.cert.not_valid_after_utc


def test_configurable_ldevid_validity(hierarchy: Hierarchy) -> None:
    cert = pki.issue_device_certificate(
        issuer=hierarchy.device_ca, public_key=hierarchy.device_key.public_key(),
        device_id=DEVICE_ID, profile=pki.LDEVID, organization=ORG, now=NOW,
        validity=timedelta(days=7),
    )  # fmt: skip
    assert cert.not_valid_after_utc == NOW + timedelta(days=7)


def test_serials_are_unique_positive_and_long() -> None:
    serials = [pki.new_serial() for _ in range(1000)]
    assert len(set(serials)) == 1000
    for serial in serials:
        assert serial > 0
        assert serial.bit_length() >= 120
        assert len(serial.to_bytes(21, "big").lstrip(b"\0")) + 1 <= 20  # DER with sign octet


def _accepted_keys() -> dict[str, object]:
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()).public_key(),
        "p384": ec.generate_private_key(ec.SECP384R1()).public_key(),
        "rsa3072": rsa.generate_private_key(65537, 3072).public_key(),
    }


@pytest.mark.parametrize("name", ["p256", "p384", "rsa3072"])
def test_accepted_subject_keys(hierarchy: Hierarchy, name: str) -> None:
    public_key = _accepted_keys()[name]
    cert = pki.issue_device_certificate(
        issuer=hierarchy.device_ca, public_key=public_key, device_id=DEVICE_ID,  # type: ignore[arg-type]
        profile=pki.LDEVID, organization=ORG, now=NOW,
    )  # fmt: skip
    assert lint_certificate(cert.public_bytes(serialization.Encoding.DER)) == []


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP521R1()).public_key(),
        lambda: ec.generate_private_key(ec.SECP256K1()).public_key(),
        lambda: rsa.generate_private_key(65537, 2048).public_key(),
        lambda: ed25519.Ed25519PrivateKey.generate().public_key(),
        lambda: dsa.generate_private_key(2048).public_key(),
    ],
    ids=["p521", "secp256k1", "rsa2048", "ed25519", "dsa"],
)
def test_refused_subject_keys(hierarchy: Hierarchy, make_key: object) -> None:
    with pytest.raises(InvalidInput) as info:
        pki.issue_server_certificate(
            issuer=hierarchy.device_ca, public_key=make_key(),  # type: ignore[operator]
            common_name="x", dns_names=["x.example.com"], ip_addresses=[], now=NOW,
        )  # fmt: skip
    assert info.value.code == "pki.key_type"


def test_ca_key_must_be_ec(hierarchy: Hierarchy) -> None:
    with pytest.raises(InvalidInput):
        pki.issue_ca(
            issuer=hierarchy.root, public_key=rsa.generate_private_key(65537, 3072).public_key(),
            common_name="RSA CA", organization=ORG, profile=pki.DEVICE_CA, now=NOW,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"profile": pki.TLS_SERVER}, "pki.profile.wrong"),
        ({"profile": pki.DEVICE_CA}, "pki.profile.wrong"),
        ({"device_id": "BAD ID"}, "pki.device_id.invalid"),
        ({"organization": ""}, "pki.name.invalid"),
        ({"organization": "x" * 65}, "pki.name.invalid"),
        ({"now": NOW.replace(tzinfo=None)}, "pki.time.naive"),
        ({"now": NOW + timedelta(days=365 * 11)}, "pki.issuer.not_valid"),
        ({"now": NOW - timedelta(days=1)}, "pki.issuer.not_valid"),
        ({"validity": timedelta(0)}, "pki.validity.invalid"),
    ],
    ids=["server-profile", "ca-profile", "bad-id", "empty-org", "long-org", "naive-now",
         "issuer-expired", "issuer-not-yet-valid", "zero-validity"],
)  # fmt: skip
def test_device_issuance_refusals(
    hierarchy: Hierarchy, kwargs: dict[str, object], code: str
) -> None:
    arguments: dict[str, object] = {
        "issuer": hierarchy.device_ca, "public_key": hierarchy.device_key.public_key(),
        "device_id": DEVICE_ID, "profile": pki.LDEVID, "organization": ORG, "now": NOW,
    }  # fmt: skip
    arguments.update(kwargs)
    with pytest.raises(InvalidInput) as info:
        pki.issue_device_certificate(**arguments)  # type: ignore[arg-type]
    assert info.value.code == code


@pytest.mark.parametrize(
    ("dns_names", "ips"),
    [([], []), (["Upper.Example.com"], []), (["-bad.example.com"], []), (["a..b"], []),
     (["under_score.example.com"], [])],
    ids=["no-names", "uppercase", "leading-hyphen", "empty-label", "underscore"],
)  # fmt: skip
def test_server_name_refusals(hierarchy: Hierarchy, dns_names: list[str], ips: list[str]) -> None:
    with pytest.raises(InvalidInput):
        pki.issue_server_certificate(
            issuer=hierarchy.device_ca, public_key=hierarchy.device_key.public_key(),
            common_name="api", dns_names=dns_names,
            ip_addresses=[ipaddress.ip_address(i) for i in ips], now=NOW,
        )  # fmt: skip


def test_issuer_context_checks_key_and_ca(hierarchy: Hierarchy) -> None:
    other_key = ec.generate_private_key(hierarchy.curve)
    with pytest.raises(Config):
        pki.IssuerContext(hierarchy.root.cert, other_key, None, None)
    with pytest.raises(Config):
        pki.IssuerContext(hierarchy.ldevid, hierarchy.device_key, None, None)


def test_signer_on_p521_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        pki.make_root_ca(key=ec.generate_private_key(ec.SECP521R1()), organization=ORG, now=NOW)
    assert info.value.code == "pki.signer.key_type"


class _TokenKey(ec.EllipticCurvePrivateKey):
    """A stand-in for a PKCS#11 key: only sign and public_key work."""

    def __init__(self, inner: ec.EllipticCurvePrivateKey) -> None:
        self._inner = inner

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        return self._inner.sign(data, signature_algorithm)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("only sign and public_key may be called on a token key")

    exchange = private_numbers = private_bytes = __copy__ = __deepcopy__ = _refuse  # type: ignore[assignment]

    @property
    def curve(self) -> ec.EllipticCurve:
        raise AssertionError("only sign and public_key may be called on a token key")

    @property
    def key_size(self) -> int:
        raise AssertionError("only sign and public_key may be called on a token key")


def test_token_backed_key_signs_a_whole_hierarchy() -> None:
    from pki_hierarchy import build_hierarchy  # noqa: F401  (same shapes as the fixture)

    root_key = _TokenKey(ec.generate_private_key(ec.SECP384R1()))
    root = pki.make_root_ca(key=root_key, organization=ORG, now=NOW)
    context = pki.IssuerContext(root, root_key, None, None)
    ca = pki.issue_ca(
        issuer=context, public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        common_name="Token CA", organization=ORG, profile=pki.DEVICE_CA, now=NOW,
    )  # fmt: skip
    ca.verify_directly_issued_by(root)
    crl = pki.build_crl(
        issuer=context, revoked=[], crl_number=1, now=NOW, next_update=NOW + timedelta(days=1)
    )
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
