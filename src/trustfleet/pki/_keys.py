"""Key checks and signature-hash choice shared by issuance, CRLs, OCSP and CSR policy."""

from __future__ import annotations

from collections.abc import Collection

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from trustfleet.errors import InvalidInput

DEFAULT_CURVES: tuple[str, ...] = ("secp256r1", "secp384r1")
DEFAULT_MIN_RSA_BITS = 3072
DEFAULT_RSA_EXPONENTS: tuple[int, ...] = (65537,)
"""The only RSA public exponent accepted: F4 (small exponents such as 3 invite the attacks on
low-exponent RSA, and the device CA has no reason to accept anything but the universal one)."""

_HASH_FOR_CURVE: dict[str, type[hashes.SHA256] | type[hashes.SHA384]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
}


def signature_hash(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384:
    """The hash to sign with: SHA-256 for a P-256 signer, SHA-384 for P-384.

    Only ``key.public_key()`` is called, so a token-backed key works.
    """
    curve = key.public_key().curve.name
    try:
        return _HASH_FOR_CURVE[curve]()
    except KeyError:
        raise InvalidInput(
            f"The signing key is on {curve}; a CA key must be P-256 or P-384.",
            code="pki.signer.key_type",
        ) from None


def key_problem(
    public_key: CertificatePublicKeyTypes,
    *,
    curves: Collection[str] = DEFAULT_CURVES,
    min_rsa_bits: int = DEFAULT_MIN_RSA_BITS,
    rsa_exponents: Collection[int] = DEFAULT_RSA_EXPONENTS,
) -> str | None:
    """Why a subject public key is refused, or ``None`` if it is accepted."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name in curves:
            return None
        return f"the EC curve {public_key.curve.name} is not allowed ({', '.join(curves)} are)"
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < min_rsa_bits:
            return f"an RSA key of {bits} bits is too short (at least {min_rsa_bits})"
        exponent = public_key.public_numbers().e
        if exponent not in rsa_exponents:
            allowed = ", ".join(str(e) for e in rsa_exponents)
            return f"the RSA public exponent {exponent} is not allowed (only {allowed})"
        return None
    return f"the key type {type(public_key).__name__} is not allowed (use EC or RSA)"


def check_ca_key(public_key: CertificatePublicKeyTypes) -> None:
    """Refuse a CA key other than EC P-256 or P-384 (CA keys sign; see :func:`signature_hash`).

    Raises:
        InvalidInput: The key is of a refused type or curve.
    """
    problem = key_problem(public_key, min_rsa_bits=1 << 30)
    if problem is not None:
        raise InvalidInput(
            f"The CA key is refused: {problem}.",
            hint="CA keys must be EC P-256 or P-384.",
            code="pki.key_type",
        )


def check_subject_key(public_key: CertificatePublicKeyTypes) -> None:
    """Refuse a subject key other than EC P-256/P-384 or RSA (e = 65537) of 3072 bits or more.

    Raises:
        InvalidInput: The key is of a refused type or size.
    """
    problem = key_problem(public_key)
    if problem is not None:
        raise InvalidInput(
            f"The subject key is refused: {problem}.",
            hint="Use an EC P-256 or P-384 key.",
            code="pki.key_type",
        )


def authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI (keyIdentifier only) for things signed by ``issuer_cert``: its SKI."""
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(issuer_cert.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
