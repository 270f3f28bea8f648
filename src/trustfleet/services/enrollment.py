"""EST enrollment (RFC 7030 simpleenroll / simplereenroll) as a use case, and its re-open.

The TLS layer proves that the client holds the key of the certificate it presents; this module
decides whether that certificate may enroll: it must be one this service issued (matched by
SHA-256 fingerprint in the store, which is stronger than a chain check), of the right kind,
unrevoked, within its validity, and belong to a device in a state that may enroll; an IDevID
enrolls a device once (again only after an operator's :func:`reopen_enrollment`,
services/_reopen.py) and only the
current LDevID renews (services/_enroll_rules.py). Each issuance supersedes the device's
previous LDevIDs in the same transaction: revoked with reason ``superseded``, on a reissued
CRL (so OCSP says so too), with a ``certificate.superseded`` event. Refusals are recorded as
``enrollment.refused`` security events and nothing else is written.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustfleet.errors import PermissionDenied, TrustFleetError
from trustfleet.pki import LDEVID, CsrPolicy, check_csr, issue_device_certificate, parse_csr_body
from trustfleet.services._certs import record_certificate, serial_hex
from trustfleet.services._enroll_rules import (
    SUPERSEDED,
    EnrollMode,
    KeyChange,
    ReopenGrant,
    check_csr_key,
    check_enrollment,
)
from trustfleet.services._reopen import Reopened, open_reopen, reopen_enrollment
from trustfleet.services.refusals import ANONYMOUS, Refusal, RefusalSink, write_refusal
from trustfleet.services.revocation import regenerate_crl
from trustfleet.services.runtime import Runtime
from trustfleet.store import Transaction
from trustfleet.store.records import JSON, CertificateRecord, DeviceRecord

__all__ = ["EnrollMode", "Reopened", "enroll", "reopen_enrollment"]

logger = logging.getLogger(__name__)


def enroll(
    rt: Runtime,
    *,
    client_cert_pem: str | None,
    body: bytes,
    mode: EnrollMode,
    now: datetime,
    refusals: RefusalSink = write_refusal,
) -> x509.Certificate:
    """Issue an operational certificate (LDevID) for an authenticated device.

    Args:
        rt: The process's runtime.
        client_cert_pem: The TLS client certificate, PEM, or ``None`` if none was presented.
        body: The HTTP request body (base64 PKCS#10).
        mode: ``enroll`` (authenticated by the IDevID) or ``reenroll`` (by the current LDevID).
        now: The current time.
        refusals: Where a refusal is recorded (default: one security event each; the HTTPS
            app passes its per-source aggregator, ``services/refusals.py``).

    Returns:
        The new LDevID.

    Raises:
        PermissionDenied: The client certificate is missing, unknown, revoked, expired, or of a
            device that may not enroll.
        InvalidInput: The body is not an acceptable CSR for this device.
    """
    device_id: str | None = None
    try:
        found = _lookup(rt, client_cert_pem, now=now)
        # A certificate this service issued to a device: a refusal is about that device.
        device_id = found.device.id if found.device is not None else None
        device = _admit(found, mode=mode, now=now)
        csr = parse_csr_body(body, max_bytes=rt.settings.api.max_body_bytes)
        check_csr(csr, expected_device_id=device.id, policy=CsrPolicy())
        change = _key_change(csr, found)
        return _issue(
            rt, csr, device=device, client_cert_pem=client_cert_pem or "", mode=mode, now=now,
            change=change,
        )  # fmt: skip
    except TrustFleetError as exc:
        _record_refusal(rt, exc, device_id=device_id, mode=mode, now=now, sink=refusals)
        raise


@dataclass(frozen=True)
class _Presented:
    """What the store knows about the presented client certificate and its device."""

    record: CertificateRecord | None
    device: DeviceRecord | None
    certificates: tuple[CertificateRecord, ...]
    reopen: ReopenGrant | None
    quarantined: bool
    issuer_retired: bool = False


def _lookup(rt: Runtime, client_cert_pem: str | None, *, now: datetime) -> _Presented:
    if not client_cert_pem:
        raise PermissionDenied(
            "a client certificate is required for enrollment",
            hint="connect with the device's IDevID (or its LDevID to re-enroll)",
            code="est.auth.missing",
        )
    sha256 = _pem_fingerprint(client_cert_pem)
    with rt.uow.begin(read_only=True) as tx:
        record = tx.certificates.get_by_sha256(sha256)
        device = tx.devices.get(record.device_id) if record and record.device_id else None
        if device is None:
            return _Presented(record, None, (), None, quarantined=False)
        ca = tx.cas.get(record.issuer) if record is not None else None
        return _Presented(
            record,
            device,
            tuple(tx.certificates.list_for_device(device.id)),
            open_reopen(rt, tx, device.id, now=now),
            quarantined=tx.attestation.quarantine(device.id) is not None,
            issuer_retired=ca is not None and ca.state == "retired",
        )


def _admit(found: _Presented, *, mode: EnrollMode, now: datetime) -> DeviceRecord:
    if found.issuer_retired and found.record is not None:
        # Before the revocation check: its final CRL revoked it, the CA's retirement is why.
        raise PermissionDenied(
            f"the certificate comes from CA '{found.record.issuer}', which is retired",
            hint="the operator re-opens the device ('trustfleet device reopen') so it enrolls "
            "with its IDevID",
            code="ca.retired",
        )
    device = check_enrollment(
        mode=mode,
        presented=found.record,
        device=found.device,
        certificates=found.certificates,
        reopen=found.reopen,
        now=now,
    )
    if found.quarantined:
        raise PermissionDenied(
            f"device '{device.id}' is quarantined and may not enroll",
            hint="an update to a good release and a passing attestation, or the operator, "
            "lift the quarantine",
            code="enrollment.quarantined",
        )
    return device


def _key_change(csr: x509.CertificateSigningRequest, found: _Presented) -> KeyChange | None:
    """A re-key (RFC 7030 §4.2.2: a new key in ``simplereenroll``), or None for the same key.

    Raises:
        InvalidInput: The key is an earlier one of the device (``est.csr.key_reused``).
    """
    if found.record is None:  # pragma: no cover - _admit refused an unknown certificate
        return None
    spki = csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return check_csr_key(spki, presented=found.record, certificates=found.certificates)


def _pem_fingerprint(pem: str) -> str:
    """SHA-256 of the DER inside a PEM certificate (the TLS layer produced the PEM)."""
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def _issue(
    rt: Runtime,
    csr: x509.CertificateSigningRequest,
    *,
    device: DeviceRecord,
    client_cert_pem: str,
    mode: EnrollMode,
    now: datetime,
    change: KeyChange | None = None,
) -> x509.Certificate:
    device_id = device.id
    with rt.uow.begin(read_only=True) as tx:
        issuer_name = tx.cas.active("device").name  # a rollover moves it (docs/lifecycle.md)
    cert = issue_device_certificate(
        issuer=rt.issuer(issuer_name),
        public_key=csr.public_key(),
        device_id=device_id,
        profile=LDEVID,
        organization=rt.settings.pki.organization,
        now=now,
        validity=timedelta(days=rt.settings.pki.ldevid_validity_days),
    )
    with rt.uow.begin() as tx:
        # The rules again, under the device's row locks: a revocation or another enrollment
        # of this device may have landed since the first check.
        certs = tx.certificates.lock_for_device(device_id)
        reopen = open_reopen(rt, tx, device_id, now=now)
        current = check_enrollment(
            mode=mode,
            presented=tx.certificates.get_by_sha256(_pem_fingerprint(client_cert_pem)),
            device=tx.devices.require(device_id),
            certificates=certs,
            reopen=reopen,
            now=now,
        )
        record_certificate(
            tx, cert, issuer=issuer_name, kind="ldevid", device_id=device_id, now=now
        )
        superseded = _supersede(rt, tx, certs, by=cert, now=now)
        if current.state == "manufactured":
            tx.devices.set_state(device_id, "enrolled", now=now)
        details: dict[str, JSON] = {
            "serial": serial_hex(cert.serial_number),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "superseded": superseded,
        }
        if mode == "enroll" and current.state == "enrolled" and reopen is not None:
            details["reopen_event"] = reopen.event_id
        tx.events.append(
            type="device.enrolled" if mode == "enroll" else "device.reenrolled",
            actor=f"device:{device_id}",
            subject=f"device:{device_id}",
            details=details,
            now=now,
        )
        if change is not None:
            _record_rekey(tx, device_id, change, cert=cert, superseded=superseded, now=now)
    return cert


def _record_rekey(
    tx: Transaction,
    device_id: str,
    change: KeyChange,
    *,
    cert: x509.Certificate,
    superseded: list[JSON],
    now: datetime,
) -> None:
    """The ``device.rekeyed`` event: the old and new key fingerprints (SHA-256 of the SPKI)."""
    tx.events.append(
        type="device.rekeyed",
        actor=f"device:{device_id}",
        subject=f"device:{device_id}",
        details={
            "old_key_sha256": change.old_key_sha256,
            "new_key_sha256": change.new_key_sha256,
            "serial": serial_hex(cert.serial_number),
            "superseded": superseded,
        },
        now=now,
    )


def _supersede(
    rt: Runtime,
    tx: Transaction,
    certs: Sequence[CertificateRecord],
    *,
    by: x509.Certificate,
    now: datetime,
) -> list[JSON]:
    """Revoke (reason ``superseded``) every other valid LDevID of the device; reissue the CRL.

    Runs in the issuing transaction: the store never holds two valid LDevIDs of one device,
    and never a superseded one that the device CA's CRL (and so OCSP) does not show.
    """
    old = [c for c in certs if c.kind == "ldevid" and c.status == "valid"]
    if not old:
        return []
    for rec in old:
        tx.certificates.revoke(rec.issuer, rec.serial, reason=SUPERSEDED, now=now)
    issuers = sorted({rec.issuer for rec in old})  # two during a rollover
    for issuer in issuers:
        regenerate_crl(rt, tx, issuer, now=now)
    serials: list[JSON] = [rec.serial for rec in old]
    device_id = old[0].device_id
    tx.events.append(
        type="certificate.superseded",
        actor=f"device:{device_id}",
        subject=f"device:{device_id}",
        details={"serials": serials, "by": serial_hex(by.serial_number), "issuer": issuers[0]},
        now=now,
    )
    return serials


def _record_refusal(
    rt: Runtime,
    exc: TrustFleetError,
    *,
    device_id: str | None,
    mode: EnrollMode,
    now: datetime,
    sink: RefusalSink,
) -> None:
    logger.info("enrollment refused (%s) for %s: %s", exc.code, device_id or "unknown", exc.message)
    code = exc.code or exc.category
    sink(
        rt,
        Refusal(
            type="enrollment.refused",
            actor=f"device:{device_id}" if device_id else ANONYMOUS,
            subject=f"device:{device_id}" if device_id else "unknown",
            code=code,
            at=now,
            details={"mode": mode, "code": code, "reason": exc.message},
        ),
    )
