"""Who may get a new LDevID: the enrollment rules as a pure function of store records and ``now``.

:func:`check_enrollment` runs twice per request: once before the CSR is looked at (so a
refused client costs nothing) and once more inside the issuing transaction, after the device's
certificate rows are locked, so that two requests racing with one certificate cannot both
pass. The rules (docs/est.md, "Which certificate may enroll"):

* ``simpleenroll`` with the IDevID: a *manufactured* device enrolls once; an *enrolled* device
  only while an operator's re-open (``trustfleet device reopen``) is open and unused;
* ``simplereenroll`` with an LDevID: only with the device's current one (the newest valid
  LDevID): a superseded, revoked or older certificate cannot renew itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from trustfleet.errors import PermissionDenied
from trustfleet.store.records import CertificateRecord, DeviceRecord

__all__ = [
    "ENROLLABLE_STATES",
    "SUPERSEDED",
    "EnrollMode",
    "ReopenGrant",
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
