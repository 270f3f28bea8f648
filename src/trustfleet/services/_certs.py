"""Recording issued certificates in the store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from trustfleet.errors import NotFound
from trustfleet.store import CertificateKind, Transaction
from trustfleet.store.lifecycle_records import CaRecord

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime

__all__ = ["fingerprint", "issuer_name", "record_certificate", "serial_hex"]


def serial_hex(serial: int) -> str:
    """A serial number as the store keeps it: lowercase hex, no leading zeros."""
    return format(serial, "x")


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint of a certificate, lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def record_certificate(
    tx: Transaction,
    cert: x509.Certificate,
    *,
    issuer: str,
    kind: CertificateKind,
    device_id: str | None,
    now: datetime,
) -> None:
    """Add an issued certificate to the store inside the caller's transaction."""
    tx.certificates.add(
        issuer=issuer,
        serial=serial_hex(cert.serial_number),
        kind=kind,
        device_id=device_id,
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=fingerprint(cert),
        der=cert.public_bytes(serialization.Encoding.DER),
        now=now,
    )


def issuer_name(rt: Runtime, cert: x509.Certificate, cas: Iterable[CaRecord]) -> str:
    """The name of the CA among ``cas`` that issued ``cert`` (by subject, then signature).

    Raises:
        NotFound: None of them did.
    """
    for ca in cas:
        ca_cert = rt.ca_certificate(ca.name)
        if ca_cert.subject == cert.issuer:
            cert.verify_directly_issued_by(ca_cert)
            return ca.name
    raise NotFound("the certificate's issuer is not a trusted CA of this home")
