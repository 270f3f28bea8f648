"""EK certificates: does this EK belong to a genuine TPM of a trusted manufacturer?

An EK certificate follows the TCG EK Credential Profile, not the Web PKI: its subject is often
empty, its subjectAltName is critical and holds a directoryName of TCG attributes (TPM
manufacturer, model, version), and its key may be RSA with a decrypt-only key usage.
``cryptography``'s X.509 verifier applies the CA/B Forum profile and refuses such
certificates, so the path is built here: issuer names matched, every signature checked with
``verify_directly_issued_by``, validity, CA flags, ``keyCertSign`` and path lengths checked, up
to a self-signed root among the manufacturer CA certificates. Revocation is not checked
(TPM vendors rarely publish CRLs for EK CAs).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from trustfleet.attestation.credential import parse_public, public_key
from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = ["MAX_EK_CERT_BYTES", "MAX_EK_CHAIN_DEPTH", "check_ek_certificate"]

MAX_EK_CERT_BYTES = 4096
"""The largest EK certificate accepted (DER)."""
MAX_EK_CHAIN_DEPTH = 4
"""The most CA certificates between an EK certificate and its root, root included."""

_UNDERSTOOD_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,  # TCG: critical when the subject is empty
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES,
    }
)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _fail(message: str, code: str, hint: str | None = None) -> VerificationFailed:
    return VerificationFailed(message, hint=hint, code=f"attestation.ek.{code}")


def check_ek_certificate(
    cert_der: bytes,
    *,
    ek_public: bytes,
    manufacturer_cas: Sequence[x509.Certificate],
    now: datetime,
) -> None:
    """Check that an EK certificate certifies ``ek_public`` and chains to a manufacturer root.

    Args:
        cert_der: The EK certificate (DER), as read from the TPM's NV.
        ek_public: The EK's marshalled ``TPM2B_PUBLIC`` (the key MakeCredential will use).
        manufacturer_cas: The TPM manufacturers' root and intermediate CA certificates; a
            path must end at a self-signed one of them.
        now: The time at which every certificate must be valid (timezone-aware).

    Raises:
        InvalidInput: No manufacturer CA is given, or ``ek_public`` is malformed.
        VerificationFailed: The certificate is malformed (``attestation.ek.malformed``), for
            another key (``attestation.ek.key_mismatch``), outside its validity
            (``attestation.ek.expired``), has an unknown critical extension
            (``attestation.ek.critical_extension``), or does not chain to a manufacturer root
            (``attestation.ek.chain``).
    """
    if not manufacturer_cas:
        raise InvalidInput(
            "no TPM manufacturer CA certificate is configured",
            hint="add the TPM vendors' EK root and intermediate CA certificates",
            code="attestation.ek.no_cas",
        )
    if not isinstance(cert_der, bytes) or not 0 < len(cert_der) <= MAX_EK_CERT_BYTES:
        raise _fail(f"an EK certificate must be 1 to {MAX_EK_CERT_BYTES} bytes", "malformed")
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        extensions = list(cert.extensions)
        cert_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _fail("the EK certificate is not valid DER X.509", "malformed") from exc
    expected = public_key(parse_public(ek_public)).public_bytes(*_SPKI)
    if cert_key.public_bytes(*_SPKI) != expected:
        raise _fail(
            "the EK certificate is for another key than this EK",
            "key_mismatch",
            hint="read the certificate that matches the EK type (RSA 0x01c00002, ECC 0x01c0000a)",
        )
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD_CRITICAL:
            raise _fail(
                f"the EK certificate has an unknown critical extension {ext.oid.dotted_string}",
                "critical_extension",
            )
    _check_validity(cert, now, "the EK certificate")
    _build_path(cert, manufacturer_cas, now)


def _check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _fail(
            f"{what} ({cert.subject.rfc4514_string() or 'no subject'}) is not valid at "
            f"{now.isoformat()}",
            "expired",
        )


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _usable_ca(ca: x509.Certificate, below: int, now: datetime) -> bool:
    """Whether ``ca`` may issue a path with ``below`` CA certificates under it."""
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    if constraints.path_length is not None and below > constraints.path_length:
        return False
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        return False
    return ca.not_valid_before_utc <= now <= ca.not_valid_after_utc


def _build_path(
    leaf: x509.Certificate, cas: Sequence[x509.Certificate], now: datetime
) -> list[x509.Certificate]:
    """Depth-first search for a path from ``leaf`` to a self-signed CA in ``cas``."""

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        below = len(path) - 1  # CA certificates already under the next issuer
        for ca in cas:
            if ca in path or ca.subject != current.issuer or not _usable_ca(ca, below, now):
                continue
            if not _issued_by(current, ca):
                continue
            if ca.subject == ca.issuer and _issued_by(ca, ca):
                return [*path, ca]
            if len(path) < MAX_EK_CHAIN_DEPTH:
                found = extend([*path, ca])
                if found is not None:
                    return found
        return None

    path = extend([leaf])
    if path is None:
        raise _fail(
            f"the EK certificate (issuer {leaf.issuer.rfc4514_string()}) does not chain to a "
            "trusted TPM manufacturer root",
            "chain",
            hint="add the vendor's root and intermediate CA certificates, or refuse this TPM",
        )
    return path
