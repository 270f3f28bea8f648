"""Revocation: device revocation, CRLs per issuing CA (RFC 5280) and OCSP (RFC 6960)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Literal

from cryptography.hazmat.primitives import serialization

from trustfleet.errors import Conflict, Unavailable
from trustfleet.pki import (
    CertStatusAnswer,
    RevokedEntry,
    build_crl,
    parse_reason,
    requested_issuer,
    respond,
)
from trustfleet.services._certs import serial_hex
from trustfleet.services.lwm2m import end_credentials
from trustfleet.services.runtime import Runtime
from trustfleet.store import Transaction
from trustfleet.store.records import CertificateRecord

__all__ = [
    "OCSP_ISSUERS",
    "answer_ocsp",
    "crl_entries",
    "current_crl",
    "refresh_crls",
    "regenerate_crl",
    "revoke_all_certificates",
    "revoke_device",
]

logger = logging.getLogger(__name__)

OCSP_ISSUERS = ("device", "manufacturing")
"""The kinds of CA whose certificates the OCSP responder answers for: the two that issue device
certificates (the root certifies only them; its CRL gives their status). Every CA of these kinds
that is not retired answers (docs/lifecycle.md); a retired one's certificates get
``unauthorized``, as for any CA the responder does not serve: its final CRL is their status."""


def current_crl(rt: Runtime, issuer: str, *, now: datetime) -> bytes:
    """The DER CRL of an issuing CA, reissued first if it is missing or near its nextUpdate.

    An offline CA's CRL (the root's) is served as stored, even stale: only a ceremony signs
    it (``trustfleet ca crl-root``); the expiry watch reports it before it lapses.

    Raises:
        NotFound: No CA of that name.
        Unavailable: An offline CA has no stored CRL (code ``ca.offline``).
    """
    rt.ca_certificate(issuer)  # NotFound; a CA made since this process started is found too
    if rt.is_offline(issuer):
        return _stored_crl(rt, issuer)
    margin = timedelta(hours=rt.settings.pki.crl_refresh_margin_hours)
    for _attempt in range(3):
        with rt.uow.begin() as tx:
            record = tx.crls.get(issuer)
            ca = tx.cas.get(issuer)
        if record is not None and ca is not None and ca.state == "retired":
            return record.der  # its final CRL (services/rollover.py): never reissued
        if record is not None and now < record.next_update - margin:
            return record.der
        try:
            with rt.uow.begin() as tx:
                return regenerate_crl(rt, tx, issuer, now=now)
        except Conflict:
            continue  # another worker reissued it at the same moment: read theirs
    raise Conflict(f"the CRL of '{issuer}' keeps changing", hint="retry in a moment")


def _stored_crl(rt: Runtime, issuer: str) -> bytes:
    with rt.uow.begin(read_only=True) as tx:
        record = tx.crls.get(issuer)
    if record is None:
        raise Unavailable(
            f"the {issuer} CA is offline and has no CRL yet",
            hint="sign it in a ceremony: trustfleet ca crl-root",
            code="ca.offline",
        )
    return record.der


def refresh_crls(rt: Runtime, *, now: datetime) -> list[str]:
    """Reissue every online CA's CRL that is missing or within the refresh margin of its
    nextUpdate (an offline CA's CRL is signed only in a ceremony).

    A retired CA keeps its final CRL (:func:`current_crl`).

    Returns:
        The names of the CAs whose CRL was checked (the online ones).
    """
    with rt.uow.begin(read_only=True) as tx:
        registered = [ca.name for ca in tx.cas.list()]
    names = list(dict.fromkeys([*rt.settings.ca, *registered]))
    online = [issuer for issuer in names if not rt.is_offline(issuer)]
    for issuer in online:
        current_crl(rt, issuer, now=now)
    return online


def crl_entries(
    tx: Transaction, issuer: str, *, lifetime: timedelta, now: datetime
) -> list[RevokedEntry]:
    """The entries of ``issuer``'s next CRL: its revoked certificates, less those that
    expired more than one CRL ``lifetime`` before ``now`` (RFC 5280 §3.3)."""
    return [
        RevokedEntry(
            serial=int(serial, 16),
            revoked_at=revoked_at or now,
            reason=parse_reason(reason) if reason else None,
        )
        for serial, revoked_at, reason in tx.certificates.revoked_entries(
            issuer, expired_before=now - lifetime
        )
    ]


def regenerate_crl(
    rt: Runtime,
    tx: Transaction,
    issuer: str,
    *,
    now: datetime,
    next_update: datetime | None = None,
) -> bytes:
    """Sign and store a new CRL for ``issuer`` inside the caller's transaction.

    Certificates that expired more than one CRL lifetime ago are left out (RFC 5280 §3.3:
    each has then been listed on a CRL issued after its expiry), so the CRL stays the size of
    the live revoked certificates although every renewal supersedes one. ``next_update``
    overrides ``[pki] crl_validity_hours`` (a retired CA's final CRL: services/rollover.py).
    """
    validity = timedelta(hours=rt.settings.pki.crl_validity_hours)
    revoked = crl_entries(tx, issuer, lifetime=validity, now=now)
    number = tx.crls.next_number(issuer)
    next_update = next_update or now + validity
    crl = build_crl(
        issuer=rt.issuer(issuer),
        revoked=revoked,
        crl_number=number,
        now=now,
        next_update=next_update,
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    tx.crls.put(issuer=issuer, crl_number=number, this_update=now, next_update=next_update, der=der)
    return der


def revoke_all_certificates(
    rt: Runtime,
    tx: Transaction,
    device_id: str,
    *,
    reason: str,
    state: Literal["revoked", "decommissioned"],
    now: datetime,
) -> list[CertificateRecord]:
    """Revoke every valid certificate of a device for ``reason``, set the device's ``state``
    and reissue the CRLs of the CAs concerned, inside the caller's transaction (so the store
    never holds a revoked certificate its CRL does not list). Ends the device's LwM2M PSK
    credentials too (their ``lwm2m.credential.ended`` events are its only events).

    Returns:
        The revoked certificates.
    """
    revoked = [
        tx.certificates.revoke(rec.issuer, rec.serial, reason=reason, now=now)
        for rec in tx.certificates.list_for_device(device_id)
        if rec.status == "valid"
    ]
    tx.devices.set_state(device_id, state, now=now)
    end_credentials(tx, device_id, reason=state, now=now)
    for issuer in sorted({rec.issuer for rec in revoked}):
        regenerate_crl(rt, tx, issuer, now=now)
    return revoked


def revoke_device(
    rt: Runtime, device_id: str, *, reason: str, actor: str, now: datetime
) -> list[CertificateRecord]:
    """Revoke every valid certificate of a device and mark it revoked, in one transaction.

    The CRLs of the affected CAs are reissued in the same transaction, so the store never
    holds a revoked certificate that its CRL does not list.

    Raises:
        NotFound: No such device.
        Conflict: The device is already revoked or decommissioned.
        InvalidInput: The reason is not an RFC 5280 reason name.
    """
    parse_reason(reason)
    with rt.uow.begin() as tx:
        device = tx.devices.require(device_id)
        if device.state in ("revoked", "decommissioned"):
            raise Conflict(f"device '{device_id}' is already {device.state}")
        revoked = revoke_all_certificates(
            rt, tx, device_id, reason=reason, state="revoked", now=now
        )
        tx.events.append(
            type="device.revoked",
            actor=actor,
            subject=f"device:{device_id}",
            details={"reason": reason, "serials": [f"{r.issuer}:{r.serial}" for r in revoked]},
            now=now,
        )
    logger.info("revoked device %s (%d certificates)", device_id, len(revoked))
    return revoked


def answer_ocsp(rt: Runtime, request_der: bytes, *, now: datetime) -> bytes:
    """The DER OCSP response for a request about a certificate of an issuing CA.

    Each of :data:`OCSP_ISSUERS` answers for its own certificates and signs with its own key
    (LDevIDs: the device CA; IDevIDs: the manufacturing CA), like its CRL. A request about any
    other CA's certificate gets ``unauthorized``.
    """
    with rt.uow.begin(read_only=True) as tx:
        serving = [ca.name for kind in OCSP_ISSUERS for ca in tx.cas.trusted(kind)]
        active = tx.cas.active("device").name
    cas = {name: rt.ca_certificate(name) for name in serving}
    issuer = requested_issuer(request_der, cas) or active  # the active one refuses it, says why

    def lookup(serial: int) -> CertStatusAnswer:
        with rt.uow.begin(read_only=True) as tx:
            rec = tx.certificates.get(issuer, serial_hex(serial))
        if rec is None:
            return CertStatusAnswer.unknown()
        if rec.status == "revoked":
            reason = parse_reason(rec.revocation_reason) if rec.revocation_reason else None
            return CertStatusAnswer.revoked(at=rec.revoked_at or now, reason=reason)
        return CertStatusAnswer.good()

    return respond(
        request_der,
        issuer=rt.issuer(issuer),
        lookup=lookup,
        now=now,
        validity=timedelta(minutes=rt.settings.pki.ocsp_validity_minutes),
        max_nonce_bytes=rt.settings.pki.ocsp_max_nonce_bytes,
    )
