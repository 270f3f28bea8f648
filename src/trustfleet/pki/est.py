"""EST (RFC 7030) message handling: CSR bodies in, certs-only CMS out. No I/O.

RFC 7030 §4.2.1 sends a PKCS#10 CSR as base64 of DER (``Content-Transfer-Encoding: base64``,
line breaks allowed); a PEM CSR is accepted too, as a convenience for curl users. The reply
(§4.1.3, §4.2.3) is base64 of a DER certs-only CMS SignedData.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from trustfleet.errors import InvalidInput

__all__ = [
    "CONTENT_TYPE_CERTS_ONLY",
    "CONTENT_TYPE_CSR",
    "CONTENT_TYPE_PKCS7",
    "DEFAULT_MAX_CERTS_ONLY_BYTES",
    "certs_only",
    "parse_certs_only",
    "parse_csr_body",
]

CONTENT_TYPE_CSR = "application/pkcs10"
"""Content type of a simpleenroll/simplereenroll request body."""

CONTENT_TYPE_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
"""Content type of an enrollment reply (RFC 7030 §4.2.3)."""

CONTENT_TYPE_PKCS7 = "application/pkcs7-mime"
"""Content type of a /cacerts reply (RFC 7030 §4.1.3)."""

DEFAULT_MAX_CERTS_ONLY_BYTES = 1024 * 1024
"""The default bound on a certs-only body a client accepts."""

_PEM_MARKER = b"-----BEGIN"


def parse_csr_body(body: bytes, *, max_bytes: int) -> x509.CertificateSigningRequest:
    """Parse an EST enrollment body into a CSR.

    Args:
        body: The HTTP request body: base64 of DER (whitespace allowed), or PEM.
        max_bytes: The largest body accepted.

    Returns:
        The parsed CSR (its signature and contents are not checked here; see ``check_csr``).

    Raises:
        InvalidInput: ``est.body.too_large``, ``est.body.not_base64`` or ``est.body.not_csr``.
    """
    if len(body) > max_bytes:
        raise InvalidInput(
            f"The request body is larger than {max_bytes} bytes.", code="est.body.too_large"
        )
    text = body.strip()
    try:
        if text.startswith(_PEM_MARKER):
            return x509.load_pem_x509_csr(text)
        der = _b64decode(text, code="est.body.not_base64")
        return x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise InvalidInput(
            "The request body is not a PKCS#10 certificate signing request.",
            hint="Send base64 of the DER-encoded CSR with Content-Type application/pkcs10.",
            code="est.body.not_csr",
        ) from exc


def certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """Encode certificates as an EST certs-only reply body.

    Args:
        certs: The certificates, e.g. the issued certificate, or the CA certificates. CMS
            holds them in a DER ``SET OF``, so their order is not kept; a client finds its own
            certificate by its public key.

    Returns:
        Base64 (76-character lines) of a DER certs-only CMS SignedData.

    Raises:
        InvalidInput: No certificate is given.
    """
    if not certs:
        raise InvalidInput(
            "A certs-only reply needs at least one certificate.", code="est.certs.empty"
        )
    der = pkcs7.serialize_certificates(list(certs), serialization.Encoding.DER)
    return base64.encodebytes(der)


def parse_certs_only(
    body: bytes, *, max_bytes: int = DEFAULT_MAX_CERTS_ONLY_BYTES
) -> list[x509.Certificate]:
    """Decode an EST certs-only reply body (the client side of :func:`certs_only`).

    Args:
        body: Base64 of a DER certs-only CMS SignedData (whitespace allowed).
        max_bytes: The largest body accepted.

    Returns:
        The certificates, in encoded order (not necessarily the sender's order).

    Raises:
        InvalidInput: ``est.body.too_large``, ``est.body.not_base64`` or ``est.body.not_certs``.
    """
    if len(body) > max_bytes:
        raise InvalidInput(
            f"The certs-only body is larger than {max_bytes} bytes.", code="est.body.too_large"
        )
    der = _b64decode(body, code="est.body.not_base64")
    try:
        return pkcs7.load_der_pkcs7_certificates(der)
    except ValueError as exc:
        raise InvalidInput(
            "The body is not a certs-only CMS SignedData.", code="est.body.not_certs"
        ) from exc


def _b64decode(text: bytes, *, code: str) -> bytes:
    compact = b"".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("The body is not valid base64.", code=code) from exc
