"""Test certificates built by hand, for the cases the product's issuers must never produce.

Each test adds only the extensions its case is about to :func:`cert_builder`'s common part.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["cert_builder", "common_name"]


def common_name(cn: str) -> x509.Name:
    """The name ``CN=<cn>``."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert_builder(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer_cn: str | None = None,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    """A builder for a certificate of ``key`` named ``CN=<cn>`` with a random serial.

    Args:
        cn: The subject's common name.
        key: The subject's key (its public half goes into the certificate).
        issuer_cn: The issuer's common name; the subject's (self-issued) when None.
        not_before: Start of the validity period.
        not_after: End of the validity period.
    """
    return (
        x509.CertificateBuilder()
        .subject_name(common_name(cn))
        .issuer_name(common_name(cn if issuer_cn is None else issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
