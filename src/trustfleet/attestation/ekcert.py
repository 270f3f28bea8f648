"""EK certificates: does this EK belong to a genuine TPM of a trusted manufacturer?

An EK certificate follows the TCG EK Credential Profile, not the Web PKI: its subject is often
empty, its subjectAltName is critical and holds a directoryName of TCG attributes (TPM
manufacturer, model, version), and its key may be RSA with a decrypt-only key usage.
``cryptography``'s X.509 verifier applies the CA/B Forum profile and refuses such
certificates, so the path is built here: issuer names matched and every signature checked
with ``verify_directly_issued_by``, validity, CA flags, ``keyCertSign`` and path lengths
checked, up to a self-signed root among the manufacturer CA certificates. Revocation is not checked
(TPM vendors rarely publish CRLs for EK CAs).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

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
if TYPE_CHECKING:
    _E = TypeVar("_E", bound=x509.ExtensionType)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _fail(code: str, *, message: str, hint: str | None = None) -> VerificationFailed:
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
    if not isinstance(cert_der, bytes) or len(cert_der) > MAX_EK_CERT_BYTES:
        raise _fail(
            "malformed",
            message=f"an EK certificate must be DER of at most {MAX_EK_CERT_BYTES} bytes",
        )
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        extensions = list(cert.extensions)
        cert_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _fail("malformed", message="the EK certificate is not valid DER X.509") from exc
    expected = public_key(parse_public(ek_public)).public_bytes(*_SPKI)
    if cert_key.public_bytes(*_SPKI) != expected:
        raise _fail(
            "key_mismatch",
            message="the EK certificate is for another key than this EK",
            hint="read the certificate that matches the EK type (RSA 0x01c00002, ECC 0x01c0000a)",
        )
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD_CRITICAL:
            raise _fail(
                "critical_extension",
                message="the EK certificate has an unknown critical extension "
                f"{ext.oid.dotted_string}",
            )
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise _fail(
            "expired",
            message=f"the EK certificate ({cert.subject.rfc4514_string() or 'no subject'}) is not "
            f"valid at {now.isoformat()}",
        )
    _check_path(cert, manufacturer_cas, now)


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s subject is ``child``'s issuer and its key signed ``child``."""
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    """The value of ``cert``'s extension of type ``kind``, or None when it has none."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _usable_ca(ca: x509.Certificate, below: int, now: datetime) -> bool:
    """Whether ``ca`` may issue a path with ``below`` CA certificates under it.

    It must be a CA (basicConstraints), within its path length, allowed to sign certificates
    when it has a key usage, and valid at ``now``.
    """
    constraints = _extension(ca, x509.BasicConstraints)
    usage = _extension(ca, x509.KeyUsage)
    return (
        constraints is not None
        and constraints.ca
        and (constraints.path_length is None or below <= constraints.path_length)
        and (usage is None or usage.key_cert_sign)
        and ca.not_valid_before_utc <= now <= ca.not_valid_after_utc
    )


def _check_path(leaf: x509.Certificate, cas: Sequence[x509.Certificate], now: datetime) -> None:
    """Depth-first search for a path from ``leaf`` to a self-signed CA in ``cas``.

    A path holds at most :data:`MAX_EK_CHAIN_DEPTH` CA certificates, which also ends any cycle
    of cross-signed CAs.
    """

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        below = len(path) - 1  # CA certificates already under the next issuer
        for ca in cas:
            if not _usable_ca(ca, below, now) or not _issued_by(path[-1], ca):
                continue
            if _issued_by(ca, ca):  # self-signed: a root
                return [*path, ca]
            if len(path) < MAX_EK_CHAIN_DEPTH:
                found = extend([*path, ca])
                if found is not None:
                    return found
        return None

    if extend([leaf]) is None:
        raise _fail(
            "chain",
            message=f"the EK certificate (issuer {leaf.issuer.rfc4514_string()}) does not chain "
            "to a trusted TPM manufacturer root",
            hint="add the vendor's root and intermediate CA certificates, or refuse this TPM",
        )
