"""An OCSP responder (RFC 6960) as a pure function of the request bytes. No I/O.

Each CA signs its own responses (RFC 6960 §4.2.2.2, the CA as responder), identified by key
hash; :func:`requested_issuer` tells which of several CAs a request is about. Requests are
matched against the CA by issuerNameHash and issuerKeyHash, with SHA-1 or SHA-256 CertIDs; the
response echoes the request's CertID hash algorithm and nonce. A nonce must be 1 to
``max_nonce_bytes`` (32) octets: RFC 8954 §2.1 has the responder refuse any other length with
``malformedRequest``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from trustfleet.errors import InvalidInput
from trustfleet.pki import _keys
from trustfleet.pki.issue import IssuerContext

__all__ = ["MAX_NONCE_BYTES", "CertStatusAnswer", "ocsp_request_for", "requested_issuer", "respond"]

_CERT_ID_HASHES = (hashes.SHA1, hashes.SHA256)
MAX_NONCE_BYTES = 32
"""RFC 8954's largest nonce (RFC 9654 later allows up to 128; the bound is a parameter)."""


@dataclass(frozen=True)
class CertStatusAnswer:
    """What the CA knows about one serial.

    Build it with :meth:`good`, :meth:`revoked` or :meth:`unknown`.

    Attributes:
        status: GOOD, REVOKED or UNKNOWN.
        revoked_at: When it was revoked (REVOKED only).
        reason: Why it was revoked, or ``None`` (REVOKED only).
    """

    status: ocsp.OCSPCertStatus
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        is_revoked = self.status is ocsp.OCSPCertStatus.REVOKED
        if is_revoked != (self.revoked_at is not None) or (self.reason and not is_revoked):
            raise InvalidInput(
                "A revocation time (and reason) belongs to a revoked status only.",
                code="pki.ocsp.status",
            )

    @classmethod
    def good(cls) -> CertStatusAnswer:
        """The certificate was issued by this CA and is not revoked."""
        return cls(ocsp.OCSPCertStatus.GOOD)

    @classmethod
    def revoked(cls, at: datetime, reason: x509.ReasonFlags | None = None) -> CertStatusAnswer:
        """The certificate was revoked ``at``, for ``reason``."""
        return cls(ocsp.OCSPCertStatus.REVOKED, revoked_at=at, reason=reason)

    @classmethod
    def unknown(cls) -> CertStatusAnswer:
        """This CA does not know the serial."""
        return cls(ocsp.OCSPCertStatus.UNKNOWN)


def respond(
    request_der: bytes,
    *,
    issuer: IssuerContext,
    lookup: Callable[[int], CertStatusAnswer],
    now: datetime,
    validity: timedelta,
    max_bytes: int = 8192,
    max_nonce_bytes: int = MAX_NONCE_BYTES,
) -> bytes:
    """Answer a DER OCSP request.

    Args:
        request_der: The OCSPRequest, DER-encoded.
        issuer: The CA this responder answers for.
        lookup: Maps a serial number to what the CA knows about it.
        now: The thisUpdate time.
        validity: How long the answer stays fresh (nextUpdate = now + validity).
        max_bytes: The largest request accepted.
        max_nonce_bytes: The longest nonce accepted (RFC 8954: 32).

    Returns:
        A DER OCSPResponse: ``malformedRequest`` for a request that cannot be parsed or whose
        nonce is empty or longer than ``max_nonce_bytes``, ``unauthorized`` for a certificate
        of another CA, otherwise a signed answer.
    """
    request = _parse(request_der, max_bytes=max_bytes)
    nonce = _nonce(request) if request is not None else None
    if request is None or (nonce is not None and not 1 <= len(nonce) <= max_nonce_bytes):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if not _is_our_issuer(request, issuer.cert):
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    answer = lookup(request.serial_number)
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=request.issuer_name_hash,
        issuer_key_hash=request.issuer_key_hash,
        serial_number=request.serial_number,
        algorithm=request.hash_algorithm,
        cert_status=answer.status,
        this_update=now,  # the times are encoded in whole seconds
        next_update=now + validity,
        revocation_time=answer.revoked_at,
        revocation_reason=_reason(answer.reason),
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(issuer.key, _keys.signature_hash(issuer.key))
    return response.public_bytes(serialization.Encoding.DER)


def requested_issuer(
    request_der: bytes, cas: Mapping[str, x509.Certificate], *, max_bytes: int = 8192
) -> str | None:
    """The name of the CA in ``cas`` whose certificate a request asks about, or None.

    None also for a request that cannot be parsed (:func:`respond` then says why).
    """
    request = _parse(request_der, max_bytes=max_bytes)
    if request is None:
        return None
    return next((name for name, cert in cas.items() if _is_our_issuer(request, cert)), None)


def ocsp_request_for(
    cert: x509.Certificate,
    issuer_cert: x509.Certificate,
    *,
    algorithm: hashes.SHA1 | hashes.SHA256 | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Build a DER OCSP request for a certificate (for clients and tests).

    Args:
        cert: The certificate to ask about.
        issuer_cert: Its issuer.
        algorithm: The CertID hash; SHA-256 unless given.
        nonce: A nonce to include (RFC 8954: 1 to 32 octets), or ``None``.

    Returns:
        The OCSPRequest, DER-encoded.
    """
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer_cert, algorithm or hashes.SHA256()
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _parse(request_der: bytes, *, max_bytes: int) -> ocsp.OCSPRequest | None:
    if len(request_der) > max_bytes:
        return None
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        request.extensions  # noqa: B018  (parse now, so bad extensions count as malformed)
        if not isinstance(request.hash_algorithm, _CERT_ID_HASHES):
            return None
    except (ValueError, UnsupportedAlgorithm, NotImplementedError):
        return None
    return request


def _is_our_issuer(request: ocsp.OCSPRequest, issuer_cert: x509.Certificate) -> bool:
    public_key = issuer_cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False  # CA keys are EC (see _keys.check_ca_key); nothing else can match
    # The contents of the subjectPublicKey BIT STRING (RFC 6960 issuerKeyHash input).
    key_bits = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    algorithm = request.hash_algorithm
    name_hash = _digest(algorithm, issuer_cert.subject.public_bytes())
    key_hash = _digest(algorithm, key_bits)
    return hmac.compare_digest(name_hash, request.issuer_name_hash) and hmac.compare_digest(
        key_hash, request.issuer_key_hash
    )


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def _reason(reason: x509.ReasonFlags | None) -> x509.ReasonFlags | None:
    return None if reason is x509.ReasonFlags.unspecified else reason


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    response = ocsp.OCSPResponseBuilder.build_unsuccessful(status)
    return response.public_bytes(serialization.Encoding.DER)
