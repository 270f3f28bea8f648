"""The policy a certificate signing request must meet before the device CA signs it.

Each refusal is an :class:`~trustfleet.errors.InvalidInput` with a stable code:

* ``est.csr.too_large`` — the CSR exceeds the policy's size bound;
* ``est.csr.signature`` — the self-signature does not verify (no proof of possession);
* ``est.csr.key_type`` — the key type, curve, size or (RSA) public exponent is not allowed;
* ``est.csr.malformed`` — the subject or the extensions cannot be parsed;
* ``est.csr.subject_missing`` — there is no common name;
* ``est.csr.subject_mismatch`` — the common name (or a SAN URI) does not name the device,
  or there are several common names.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from trustfleet.errors import InvalidInput
from trustfleet.pki import _keys
from trustfleet.pki.names import device_uri, validate_device_id

__all__ = ["CsrPolicy", "check_csr"]


@dataclass(frozen=True)
class CsrPolicy:
    """What a CSR may contain.

    Attributes:
        allowed_curves: Names of the EC curves allowed (cryptography's ``curve.name``).
        min_rsa_bits: The smallest RSA modulus allowed.
        rsa_exponents: The RSA public exponents allowed (65537 only: docs/standards.md).
        max_bytes: The largest DER-encoded CSR accepted.
    """

    allowed_curves: tuple[str, ...] = _keys.DEFAULT_CURVES
    min_rsa_bits: int = _keys.DEFAULT_MIN_RSA_BITS
    rsa_exponents: tuple[int, ...] = _keys.DEFAULT_RSA_EXPONENTS
    max_bytes: int = 64 * 1024


def check_csr(
    csr: x509.CertificateSigningRequest, *, expected_device_id: str, policy: CsrPolicy
) -> None:
    """Check a CSR against the policy and the device it must name.

    Args:
        csr: The parsed CSR.
        expected_device_id: The device id the requester authenticated as.
        policy: The CSR policy.

    Raises:
        InvalidInput: The CSR breaks the policy (see the module docstring for the codes).
    """
    validate_device_id(expected_device_id)
    if len(csr.public_bytes(serialization.Encoding.DER)) > policy.max_bytes:
        raise _refuse("est.csr.too_large", f"The CSR is larger than {policy.max_bytes} bytes.")
    _check_key(csr, policy)
    _check_subject(csr, expected_device_id)
    _check_san(csr, expected_device_id)


def _check_key(csr: x509.CertificateSigningRequest, policy: CsrPolicy) -> None:
    try:
        public_key = csr.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise _refuse(
            "est.csr.key_type",
            "The CSR key is refused: its key type is not supported.",
            hint="Generate an EC P-256 or P-384 key.",
        ) from exc
    problem = _keys.key_problem(
        public_key,
        curves=policy.allowed_curves,
        min_rsa_bits=policy.min_rsa_bits,
        rsa_exponents=policy.rsa_exponents,
    )
    if problem is not None:
        raise _refuse(
            "est.csr.key_type",
            f"The CSR key is refused: {problem}.",
            hint="Generate an EC P-256 or P-384 key.",
        )
    # is_signature_valid raises only when the public key cannot be loaded, which was refused
    # above; an unknown or mismatched signature algorithm makes it False.
    if not csr.is_signature_valid:
        raise _refuse(
            "est.csr.signature",
            "The CSR signature does not verify, so it does not prove possession of the key.",
        )


def _check_subject(csr: x509.CertificateSigningRequest, device_id: str) -> None:
    try:
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as exc:
        raise _refuse("est.csr.malformed", "The CSR subject cannot be parsed.") from exc
    if not names:
        raise _refuse(
            "est.csr.subject_missing",
            "The CSR subject has no common name.",
            hint="Put the device id in the subject CN.",
        )
    if len(names) > 1:
        raise _refuse("est.csr.subject_mismatch", "The CSR subject has more than one common name.")
    if names[0].value != device_id:
        raise _refuse(
            "est.csr.subject_mismatch",
            "The CSR common name is not the id of the authenticated device.",
            hint="Put exactly the device id in the subject CN.",
        )


def _check_san(csr: x509.CertificateSigningRequest, device_id: str) -> None:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    except ValueError as exc:
        raise _refuse("est.csr.malformed", "The CSR extensions cannot be parsed.") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if any(uri != device_uri(device_id) for uri in uris):
        raise _refuse(
            "est.csr.subject_mismatch",
            "The CSR names a URI other than the authenticated device's.",
            hint=f"Omit the SAN or use {device_uri(device_id)}.",
        )


def _refuse(code: str, message: str, *, hint: str | None = None) -> InvalidInput:
    return InvalidInput(message, hint=hint, code=code)
