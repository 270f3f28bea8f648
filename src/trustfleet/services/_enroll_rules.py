"""Who may get a new LDevID: the enrollment rules as a pure function of store records and ``now``.

:func:`check_enrollment` runs twice per request: once before the CSR is looked at (so a
refused client costs nothing) and once more inside the issuing transaction, after the device's
certificate rows are locked, so that two requests racing with one certificate cannot both
pass. The rules (docs/est.md, "Which certificate may enroll"):

* ``simpleenroll`` with the IDevID: a *manufactured* device enrolls once; an *enrolled* device
  only while an operator's re-open (``trustfleet device reopen``) is open and unused;
* ``simplereenroll`` with an LDevID: only with the device's current one (the newest valid
  LDevID): a superseded, revoked or older certificate cannot renew itself.

:func:`check_csr_key` decides the key a CSR may certify (RFC 7030 §4.2.2 lets a re-enrollment
change it): the presented certificate's own key (a renewal), or a key no certificate of the
device ever held (a re-key). A key of an earlier certificate of the device — superseded,
revoked, or the IDevID's after a re-key — never comes back (``est.csr.key_reused``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustfleet.errors import InvalidInput, PermissionDenied
from trustfleet.store.records import CertificateRecord, DeviceRecord

__all__ = [
    "ENROLLABLE_STATES",
    "SUPERSEDED",
    "EnrollMode",
    "KeyChange",
    "ReopenGrant",
    "check_csr_key",
    "check_enrollment",
    "current_ldevid",
]

EnrollMode = Literal["enroll", "reenroll"]
ENROLLABLE_STATES = frozenset({"manufactured", "enrolled"})
SUPERSEDED = "superseded"
"""The RFC 5280 reason of an LDevID replaced by a newer one of the same device."""
_REQUIRED_KIND = {"enroll": "idevid", "reenroll": "ldevid"}


@dataclass(frozen=True)
class ReopenGrant:
    """An operator's open permission for one more IDevID enrollment of an enrolled device.

    Attributes:
        event_id: The ``device.reopened`` security event that granted it.
        expires_at: When it lapses unused.
    """

    event_id: int
    expires_at: datetime


@dataclass(frozen=True)
class KeyChange:
    """A re-key: the SHA-256 fingerprints of the old and the new SubjectPublicKeyInfo."""

    old_key_sha256: str
    new_key_sha256: str


def key_fingerprint(der_spki: bytes) -> str:
    """SHA-256 (lowercase hex) of a DER SubjectPublicKeyInfo."""
    return hashlib.sha256(der_spki).hexdigest()


def _spki(cert_der: bytes) -> bytes:
    public = x509.load_der_x509_certificate(cert_der).public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_csr_key(
    csr_spki: bytes,
    *,
    presented: CertificateRecord,
    certificates: Sequence[CertificateRecord],
) -> KeyChange | None:
    """Decide whether a CSR's key may be certified for the holder of ``presented``.

    Args:
        csr_spki: The CSR's SubjectPublicKeyInfo (DER).
        presented: The store's record of the TLS client certificate (IDevID or LDevID).
        certificates: All the device's certificates.

    Returns:
        None for the presented certificate's own key, the :class:`KeyChange` for a new one.

    Raises:
        InvalidInput: The key is one an earlier certificate of the device held
            (``est.csr.key_reused``).
    """
    new = key_fingerprint(csr_spki)
    old = key_fingerprint(_spki(presented.der))
    if new == old:
        return None
    if any(key_fingerprint(_spki(c.der)) == new for c in certificates):
        raise InvalidInput(
            "The CSR key is refused: an earlier certificate of this device holds it.",
            hint="generate a new key in the device's token (a re-key never reuses an old key)",
            code="est.csr.key_reused",
        )
    return KeyChange(old_key_sha256=old, new_key_sha256=new)


def current_ldevid(certificates: Sequence[CertificateRecord]) -> CertificateRecord | None:
    """The device's current LDevID: its newest valid one (records oldest first), or None."""
    valid = [c for c in certificates if c.kind == "ldevid" and c.status == "valid"]
    return valid[-1] if valid else None


def check_enrollment(
    *,
    mode: EnrollMode,
    presented: CertificateRecord | None,
    device: DeviceRecord | None,
    certificates: Sequence[CertificateRecord],
    reopen: ReopenGrant | None,
    now: datetime,
) -> DeviceRecord:
    """Decide whether the holder of ``presented`` may get a new LDevID.

    Args:
        mode: ``enroll`` (IDevID) or ``reenroll`` (LDevID).
        presented: The store's record of the TLS client certificate, or None if unknown.
        device: The device it belongs to, or None.
        certificates: All the device's certificates, oldest first.
        reopen: The open re-open of the device, if any (expired ones are passed as None).
        now: The current time.

    Returns:
        The device.

    Raises:
        PermissionDenied: The certificate may not enroll (the code says why).
    """
    wanted = _REQUIRED_KIND[mode]
    if presented is None or presented.kind != wanted or device is None:
        raise PermissionDenied(
            f"the client certificate is not a known {wanted.upper()} of this service",
            hint="use the certificate this service issued to the device",
            code="est.auth.unknown",
        )
    _check_certificate(presented, now=now)
    if device.state not in ENROLLABLE_STATES:
        raise PermissionDenied(
            f"device '{device.id}' is {device.state} and may not enroll", code="est.auth.state"
        )
    if mode == "reenroll":
        _check_current(presented, current_ldevid(certificates))
    elif device.state == "enrolled" and reopen is None:
        raise PermissionDenied(
            f"device '{device.id}' is enrolled already; its IDevID may not enroll it again",
            hint="renew with the current LDevID (simplereenroll), or an operator allows one "
            f"new enrollment with 'trustfleet device reopen {device.id}'",
            code="est.auth.already_enrolled",
        )
    return device


def _check_certificate(presented: CertificateRecord, *, now: datetime) -> None:
    if presented.status != "valid":
        if presented.revocation_reason == SUPERSEDED:
            raise PermissionDenied(
                "the client certificate was superseded by a newer LDevID",
                hint="renew with the device's current LDevID",
                code="est.auth.superseded",
            )
        raise PermissionDenied("the client certificate is revoked", code="est.auth.revoked")
    if not presented.not_before <= now <= presented.not_after:
        raise PermissionDenied(
            "the client certificate is expired or not yet valid", code="est.auth.expired"
        )


def _check_current(presented: CertificateRecord, current: CertificateRecord | None) -> None:
    if current is None or current.id != presented.id:
        raise PermissionDenied(
            "the client certificate is not the device's current LDevID",
            hint="renew with the newest LDevID this service issued to the device",
            code="est.auth.not_current",
        )
