from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki_hierarchy import NOW, Hierarchy, build_hierarchy

from support.certs import cert_builder
from trustfleet import pki
from trustfleet.errors import InvalidInput, VerificationFailed


def test_device_certificates_verify_as_clients(hierarchy: Hierarchy) -> None:
    roots = [hierarchy.root.cert]
    pki.verify_chain(
        hierarchy.ldevid, intermediates=[hierarchy.device_ca.cert], roots=roots, now=NOW,
        purpose="client",
    )  # fmt: skip
    pki.verify_chain(
        hierarchy.idevid,
        intermediates=[hierarchy.manufacturing.cert, hierarchy.device_ca.cert],
        roots=roots, now=NOW + timedelta(days=365), purpose="client",
    )  # fmt: skip


def test_server_certificate_verifies(hierarchy: Hierarchy) -> None:
    for name in (None, "api.example.com", "mqtt.example.com"):
        pki.verify_chain(
            hierarchy.server, intermediates=[hierarchy.device_ca.cert],
            roots=[hierarchy.root.cert], now=NOW, purpose="server", server_name=name,
        )  # fmt: skip


@pytest.fixture(scope="module")
def other() -> Hierarchy:
    return build_hierarchy(ec.SECP256R1())


_Case = tuple[
    x509.Certificate, list[x509.Certificate], list[x509.Certificate], datetime, str, str | None
]


def _case(h: Hierarchy, **changes: object) -> _Case:
    """The good LDevID client case, with some of its parts changed."""
    parts: dict[str, object] = {
        "leaf": h.ldevid, "intermediates": [h.device_ca.cert], "roots": [h.root.cert],
        "now": NOW, "purpose": "client", "name": None,
    }  # fmt: skip
    parts.update(changes)
    return tuple(parts.values())  # type: ignore[return-value]


LATER = NOW + timedelta(days=31)
EARLIER = NOW - timedelta(hours=1)
NEGATIVE: dict[str, Callable[[Hierarchy, Hierarchy], _Case]] = {
    "wrong-root": lambda h, o: _case(h, roots=[o.root.cert]),
    "wrong-intermediate": lambda h, o: _case(h, intermediates=[o.device_ca.cert]),
    "missing-intermediate": lambda h, o: _case(h, intermediates=[]),
    "expired": lambda h, o: _case(h, now=LATER),
    "not-yet-valid": lambda h, o: _case(h, now=EARLIER),
    "server-cert-as-client": lambda h, o: _case(h, leaf=h.server),
    "device-cert-as-server": lambda h, o: _case(h, purpose="server", name="api.example.com"),
    "wrong-server-name": lambda h, o: _case(
        h, leaf=h.server, purpose="server", name="evil.example.com"
    ),
    "intermediate-as-leaf": lambda h, o: _case(h, leaf=h.device_ca.cert, intermediates=[]),
}


@pytest.mark.parametrize("case", list(NEGATIVE), ids=list(NEGATIVE))
def test_chain_refusals(hierarchy: Hierarchy, other: Hierarchy, case: str) -> None:
    leaf, intermediates, roots, now, purpose, name = NEGATIVE[case](hierarchy, other)
    with pytest.raises(VerificationFailed) as info:
        pki.verify_chain(
            leaf, intermediates=intermediates, roots=roots, now=now, purpose=purpose,  # type: ignore[arg-type]
            server_name=name,
        )  # fmt: skip
    assert info.value.code == "pki.chain.invalid"
    assert "does not verify" in info.value.message


def test_no_roots(hierarchy: Hierarchy) -> None:
    with pytest.raises(InvalidInput):
        pki.verify_chain(hierarchy.ldevid, intermediates=[], roots=[], now=NOW, purpose="client")


def test_no_roots_is_invalid_input_no_roots(hierarchy: Hierarchy) -> None:
    with pytest.raises(InvalidInput) as info:
        pki.verify_chain(hierarchy.ldevid, intermediates=[], roots=[], now=NOW, purpose="client")
    assert info.value.code == "pki.chain.no_roots"


def _server_certificate(h: Hierarchy, *, dns_names: list[str]) -> x509.Certificate:
    return pki.issue_server_certificate(
        issuer=h.device_ca, public_key=ec.generate_private_key(h.curve).public_key(),
        common_name="api.example.com", dns_names=dns_names,
        ip_addresses=[ipaddress.ip_address("127.0.0.1")], now=NOW,
    )  # fmt: skip


def _verify_server(h: Hierarchy, leaf: x509.Certificate) -> None:
    pki.verify_chain(
        leaf, intermediates=[h.device_ca.cert], roots=[h.root.cert], now=NOW, purpose="server"
    )


def test_server_without_name_checks_its_only_dns_name(hierarchy: Hierarchy) -> None:
    _verify_server(hierarchy, _server_certificate(hierarchy, dns_names=["api.example.com"]))


def test_server_without_name_or_dns_san_is_chain_invalid(hierarchy: Hierarchy) -> None:
    leaf = _server_certificate(hierarchy, dns_names=[])  # an IP address SAN only
    with pytest.raises(VerificationFailed) as info:
        _verify_server(hierarchy, leaf)
    assert info.value.code == "pki.chain.invalid"


def test_server_without_name_or_san_extension_is_chain_invalid(hierarchy: Hierarchy) -> None:
    issuer = hierarchy.device_ca
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")]))
        .issuer_name(issuer.cert.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    with pytest.raises(VerificationFailed) as info:
        _verify_server(hierarchy, leaf)
    assert info.value.code == "pki.chain.invalid"


# --- Path length: a chain of plain CAs (no pathLenConstraint) with n intermediates.


def _with_key_ids(
    builder: x509.CertificateBuilder,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.CertificateBuilder:
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    return builder.add_extension(ski, critical=False).add_extension(aki, critical=False)


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey],
    *, ca: bool,
) -> x509.Certificate:  # fmt: skip
    issuer_name, issuer_key = issuer
    day = timedelta(days=1)
    builder = (
        cert_builder(name, key, issuer_cn=issuer_name, not_before=NOW - day, not_after=NOW + day)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    builder = _with_key_ids(builder, key, issuer_key)
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        ).add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:example:leaf")]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _chain_with(
    intermediates: int,
) -> tuple[x509.Certificate, list[x509.Certificate], x509.Certificate]:
    """A leaf, ``intermediates`` CA certificates (leaf's issuer first) and the root."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(intermediates + 2)]
    names = ["root"] + [f"ca-{i}" for i in range(intermediates)] + ["leaf"]
    certs = [_cert("root", keys[0], ("root", keys[0]), ca=True)]
    for i in range(1, len(keys)):
        last = i == len(keys) - 1
        certs.append(_cert(names[i], keys[i], (names[i - 1], keys[i - 1]), ca=not last))
    return certs[-1], certs[-2:0:-1], certs[0]


def test_path_with_three_intermediates_verifies() -> None:
    leaf, intermediates, root = _chain_with(3)
    pki.verify_chain(leaf, intermediates=intermediates, roots=[root], now=NOW, purpose="client")


def test_path_with_four_intermediates_is_chain_invalid() -> None:
    leaf, intermediates, root = _chain_with(4)
    with pytest.raises(VerificationFailed) as info:
        pki.verify_chain(leaf, intermediates=intermediates, roots=[root], now=NOW, purpose="client")
    assert info.value.code == "pki.chain.invalid"
