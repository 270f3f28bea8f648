"""The few facts the running agent needs from its certificates, read without ``cryptography``.

An enrolled agent only needs its LDevID's serial, validity and public key (to know when to
re-enroll and that the certificate is for its identity key). Reading them with a small DER
reader keeps ``cryptography`` (≈ 16 MB resident) and the token library out of the agent's
steady state; they are loaded only around (re-)enrollment. The reader is bounded and strict:
anything that is not a well-formed X.509 certificate is refused with ``InvalidInput``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

from trustfleet.errors import InvalidInput

__all__ = ["CertFacts", "read_cert_facts", "read_pem_cert_facts"]

_MAX_CERT_BYTES = 64 * 1024
_SEQUENCE, _INTEGER, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0x02, 0x17, 0x18
_EXPLICIT_0 = 0xA0


@dataclass(frozen=True)
class CertFacts:
    """Serial, validity and SubjectPublicKeyInfo (DER) of a certificate."""

    serial: int
    not_before: datetime
    not_after: datetime
    spki: bytes

    def renewal_due_at(self, fraction: float) -> datetime:
        """When ``fraction`` of the lifetime has passed."""
        return self.not_before + (self.not_after - self.not_before) * fraction


def _bad(reason: str) -> InvalidInput:
    return InvalidInput(f"not an X.509 certificate: {reason}", code="agent.cert.malformed")


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """The tag, the content's start and the content's end of the element at ``pos``."""
    if pos + 2 > len(data):
        raise _bad("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 3 or pos + count > len(data):
            raise _bad("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise _bad("truncated")
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, tag: int) -> tuple[int, int]:
    got, start, end = _tlv(data, pos)
    if got != tag:
        raise _bad(f"expected tag {tag:#x}, got {got:#x}")
    return start, end


def _time(data: bytes, pos: int) -> tuple[datetime, int]:
    tag, start, end = _tlv(data, pos)
    text = data[start:end].decode("ascii", "replace")
    try:
        if tag == _UTC_TIME and len(text) == 13 and text.endswith("Z"):
            year = int(text[:2])
            moment = datetime.strptime(
                f"{1900 + year if year >= 50 else 2000 + year}{text[2:12]}", "%Y%m%d%H%M%S"
            )
        elif tag == _GENERALIZED_TIME and len(text) == 15 and text.endswith("Z"):
            moment = datetime.strptime(text[:14], "%Y%m%d%H%M%S")
        else:
            raise _bad("bad time")
    except ValueError as exc:
        raise _bad("bad time") from exc
    return moment.replace(tzinfo=UTC), end


def read_cert_facts(der: bytes) -> CertFacts:
    """Read serial, validity and SPKI from a DER certificate (RFC 5280 §4.1).

    Raises:
        InvalidInput: The bytes are not a well-formed certificate.
    """
    if len(der) > _MAX_CERT_BYTES:
        raise _bad("too large")
    cert_start, _ = _expect(der, 0, _SEQUENCE)
    pos, tbs_end = _expect(der, cert_start, _SEQUENCE)
    tag, _, end = _tlv(der, pos)
    if tag == _EXPLICIT_0:  # version
        pos = end
    serial_start, serial_end = _expect(der, pos, _INTEGER)
    serial = int.from_bytes(der[serial_start:serial_end], "big", signed=True)
    pos = _tlv(der, serial_end)[2]  # signature algorithm
    pos = _tlv(der, pos)[2]  # issuer
    validity_start, validity_end = _expect(der, pos, _SEQUENCE)
    not_before, after = _time(der, validity_start)
    not_after, _ = _time(der, after)
    pos = _tlv(der, validity_end)[2]  # subject
    spki_tag, _, spki_end = _tlv(der, pos)
    if spki_tag != _SEQUENCE or spki_end > tbs_end:
        raise _bad("no subject public key info")
    return CertFacts(
        serial=serial, not_before=not_before, not_after=not_after, spki=der[pos:spki_end]
    )


def read_pem_cert_facts(pem: bytes) -> CertFacts:
    """Like :func:`read_cert_facts`, for the first certificate of a PEM file."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    start = pem.find(begin)
    stop = pem.find(end, start + 1)
    if start < 0 or stop < 0:
        raise _bad("no PEM certificate")
    try:
        der = base64.b64decode(b"".join(pem[start + len(begin) : stop].split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad("PEM body is not base64") from exc
    return read_cert_facts(der)
