"""Certificate revocation lists (RFC 5280 §5). No I/O.

Revocation in TrustFleet is final: ``certificateHold`` (and so ``removeFromCRL``) is not
offered; quarantine is the reversible measure. ``aACompromise`` concerns attribute
authorities, which TrustFleet does not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from cryptography import x509

from trustfleet.errors import InvalidInput
from trustfleet.pki import _keys
from trustfleet.pki.issue import IssuerContext

__all__ = ["REASONS", "RevokedEntry", "build_crl", "parse_reason"]

_MAX_CRL_NUMBER = (1 << 159) - 1  # at most 20 octets, RFC 5280 §5.2.3

REASONS: Mapping[str, x509.ReasonFlags] = MappingProxyType(
    {
        "unspecified": x509.ReasonFlags.unspecified,
        "keyCompromise": x509.ReasonFlags.key_compromise,
        "caCompromise": x509.ReasonFlags.ca_compromise,
        "affiliationChanged": x509.ReasonFlags.affiliation_changed,
        "superseded": x509.ReasonFlags.superseded,
        "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
        "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    }
)
"""The revocation reasons an operator may give, by their RFC 5280 names."""


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate.

    Attributes:
        serial: The certificate's serial number.
        revoked_at: When it was revoked (timezone-aware).
        reason: Why, or ``None`` (``unspecified`` is written as no reason code).
    """

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None


def parse_reason(text: str) -> x509.ReasonFlags:
    """Map an operator's reason string to a reason flag.

    Args:
        text: One of the keys of :data:`REASONS`, e.g. ``keyCompromise``.

    Returns:
        The reason flag.

    Raises:
        InvalidInput: The text is not a known reason; the message lists the valid ones.
    """
    try:
        return REASONS[text]
    except KeyError:
        raise InvalidInput(
            f"Unknown revocation reason {text!r}.",
            hint=f"Use one of: {', '.join(REASONS)}.",
            code="pki.revocation.reason",
        ) from None


def build_crl(
    *,
    issuer: IssuerContext,
    revoked: Sequence[RevokedEntry],
    crl_number: int,
    now: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """Build and sign a CRL.

    Args:
        issuer: The CA whose certificates are listed.
        revoked: The revoked certificates (expired ones may be left out by the caller).
        crl_number: A number that grows with every CRL the CA issues.
        now: The thisUpdate time.
        next_update: The nextUpdate time, after ``now``.

    Returns:
        The signed CRL, with an authority key identifier and a CRL number.

    Raises:
        InvalidInput: The CRL number or the times are out of range.
    """
    if not 0 <= crl_number <= _MAX_CRL_NUMBER:
        raise InvalidInput("The CRL number must be between 0 and 2^159 - 1.", code="pki.crl.number")
    # Both times are encoded in whole seconds, so the order is checked on what is encoded:
    # 12:00:00.2 and 12:00:00.7 would both be written as 12:00:00.
    if (
        now.tzinfo is None
        or next_update.tzinfo is None
        or _whole_seconds(next_update) <= _whole_seconds(now)
    ):
        raise InvalidInput(
            "The CRL times must be timezone-aware and nextUpdate must follow thisUpdate "
            "by at least a second.",
            code="pki.crl.times",
        )
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(now)
        .next_update(next_update)
        .add_extension(_keys.authority_key_identifier(issuer.cert), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(_revoked_certificate(entry))
    return builder.sign(issuer.key, _keys.signature_hash(issuer.key))


def _whole_seconds(when: datetime) -> datetime:
    return when.replace(microsecond=0)


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    if entry.serial <= 0 or entry.revoked_at.tzinfo is None:
        raise InvalidInput(
            "A revoked entry needs a positive serial and a timezone-aware time.",
            code="pki.crl.entry",
        )
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial)
        .revocation_date(entry.revoked_at)
    )
    if entry.reason is not None and entry.reason is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(entry.reason), critical=False)
    return builder.build()
