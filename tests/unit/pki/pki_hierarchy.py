"""Builds a whole TrustFleet CA hierarchy with software keys (helper for the pki tests)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet import pki

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
REVOKED_AT = NOW - timedelta(days=1)
ORG = "Acme IoT"
DEVICE_ID = "dev-abcdefgh23456723"


@dataclass(frozen=True)
class Hierarchy:
    """Root, both intermediates and one certificate of every end-entity profile."""

    curve: ec.EllipticCurve
    root: pki.IssuerContext
    manufacturing: pki.IssuerContext
    device_ca: pki.IssuerContext
    device_key: ec.EllipticCurvePrivateKey
    idevid: x509.Certificate
    ldevid: x509.Certificate
    server: x509.Certificate


def build_hierarchy(curve: ec.EllipticCurve) -> Hierarchy:
    root_key = ec.generate_private_key(curve)
    root_cert = pki.make_root_ca(key=root_key, organization=ORG, now=NOW)
    root = pki.IssuerContext(root_cert, root_key, "http://pki.example.com/root.crl", None)
    manufacturing = _intermediate(root, curve, pki.MANUFACTURING_CA, "mfg")
    device_ca = _intermediate(root, curve, pki.DEVICE_CA, "dev")
    device_key = ec.generate_private_key(curve)
    idevid = pki.issue_device_certificate(
        issuer=manufacturing, public_key=device_key.public_key(), device_id=DEVICE_ID,
        profile=pki.IDEVID, organization=ORG, now=NOW, model="sensor-x1",
    )  # fmt: skip
    ldevid = pki.issue_device_certificate(
        issuer=device_ca, public_key=device_key.public_key(), device_id=DEVICE_ID,
        profile=pki.LDEVID, organization=ORG, now=NOW,
    )  # fmt: skip
    server = pki.issue_server_certificate(
        issuer=device_ca,
        public_key=ec.generate_private_key(curve).public_key(),
        common_name="api.example.com",
        dns_names=["api.example.com", "mqtt.example.com"],
        ip_addresses=[ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        now=NOW,
    )
    return Hierarchy(curve, root, manufacturing, device_ca, device_key, idevid, ldevid, server)


def _intermediate(
    root: pki.IssuerContext, curve: ec.EllipticCurve, profile: pki.CertificateProfile, tag: str
) -> pki.IssuerContext:
    key = ec.generate_private_key(curve)
    cert = pki.issue_ca(
        issuer=root,
        public_key=key.public_key(),
        common_name=f"Acme {profile.name}",
        organization=ORG,
        profile=profile,
        now=NOW,
    )
    return pki.IssuerContext(
        cert, key, f"http://pki.example.com/{tag}.crl", f"http://pki.example.com/ocsp/{tag}"
    )


def ocsp_answers(h: Hierarchy) -> dict[int, pki.CertStatusAnswer]:
    """What the status lookup knows: the LDevID is good, the server certificate was revoked
    (key compromise) at :data:`REVOKED_AT`; any other serial is unknown."""
    return {
        h.ldevid.serial_number: pki.CertStatusAnswer.good(),
        h.server.serial_number: pki.CertStatusAnswer.revoked(
            REVOKED_AT, x509.ReasonFlags.key_compromise
        ),
    }
