"""EST enrollment (RFC 7030 simpleenroll / simplereenroll) as a use case.

The TLS layer proves that the client holds the key of the certificate it presents; this module
decides whether that certificate may enroll: it must be one this service issued (matched by
SHA-256 fingerprint in the store, which is stronger than a chain check), of the right kind,
unrevoked, within its validity, and belong to a device in a state that may enroll. Refusals are
recorded as ``enrollment.refused`` security events and nothing else is written.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime, timedelta
from typing import Literal

from cryptography import x509

from trustfleet.errors import PermissionDenied, TrustFleetError
from trustfleet.pki import LDEVID, CsrPolicy, check_csr, issue_device_certificate, parse_csr_body
from trustfleet.services._certs import record_certificate
from trustfleet.services.refusals import ANONYMOUS, Refusal, RefusalSink, write_refusal
from trustfleet.services.runtime import Runtime
from trustfleet.store.records import DeviceRecord

__all__ = ["EnrollMode", "enroll"]

logger = logging.getLogger(__name__)

EnrollMode = Literal["enroll", "reenroll"]
_REQUIRED_KIND = {"enroll": "idevid", "reenroll": "ldevid"}
_ENROLLABLE_STATES = frozenset({"manufactured", "enrolled"})


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
        device = _authenticate(rt, client_cert_pem, mode=mode, now=now)
        device_id = device.id
        csr = parse_csr_body(body, max_bytes=rt.settings.api.max_body_bytes)
        check_csr(csr, expected_device_id=device_id, policy=CsrPolicy())
        return _issue(rt, csr, device=device, mode=mode, now=now)
    except TrustFleetError as exc:
        _record_refusal(rt, exc, device_id=device_id, mode=mode, now=now, sink=refusals)
        raise


def _authenticate(
    rt: Runtime, client_cert_pem: str | None, *, mode: EnrollMode, now: datetime
) -> DeviceRecord:
    if not client_cert_pem:
        raise PermissionDenied(
            "a client certificate is required for enrollment",
            hint="connect with the device's IDevID (or its LDevID to re-enroll)",
            code="est.auth.missing",
        )
    with rt.uow.begin(read_only=True) as tx:
        record = tx.certificates.get_by_sha256(_pem_fingerprint(client_cert_pem))
        device = tx.devices.get(record.device_id) if record and record.device_id else None
        quarantined = device is not None and tx.attestation.quarantine(device.id) is not None
    wanted = _REQUIRED_KIND[mode]
    if record is None or record.kind != wanted or device is None:
        raise PermissionDenied(
            f"the client certificate is not a known {wanted.upper()} of this service",
            hint="use the certificate this service issued to the device",
            code="est.auth.unknown",
        )
    if record.status != "valid":
        raise PermissionDenied("the client certificate is revoked", code="est.auth.revoked")
    if not record.not_before <= now <= record.not_after:
        raise PermissionDenied(
            "the client certificate is expired or not yet valid", code="est.auth.expired"
        )
    if device.state not in _ENROLLABLE_STATES:
        raise PermissionDenied(
            f"device '{device.id}' is {device.state} and may not enroll", code="est.auth.state"
        )
    if quarantined:
        raise PermissionDenied(
            f"device '{device.id}' is quarantined and may not enroll",
            hint="an update to a good release and a passing attestation, or the operator, "
            "lift the quarantine",
            code="enrollment.quarantined",
        )
    return device


def _pem_fingerprint(pem: str) -> str:
    """SHA-256 of the DER inside a PEM certificate (the TLS layer produced the PEM)."""
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def _issue(
    rt: Runtime,
    csr: x509.CertificateSigningRequest,
    *,
    device: DeviceRecord,
    mode: EnrollMode,
    now: datetime,
) -> x509.Certificate:
    device_id = device.id
    issuer = rt.issuer("device")
    cert = issue_device_certificate(
        issuer=issuer,
        public_key=csr.public_key(),
        device_id=device_id,
        profile=LDEVID,
        organization=rt.settings.pki.organization,
        now=now,
        validity=timedelta(days=rt.settings.pki.ldevid_validity_days),
    )
    with rt.uow.begin() as tx:
        current = tx.devices.require(device_id)  # a revocation may have landed since the check
        if current.state not in _ENROLLABLE_STATES:
            raise PermissionDenied(
                f"device '{device_id}' is {current.state}", code="est.auth.state"
            )
        record_certificate(tx, cert, issuer="device", kind="ldevid", device_id=device_id, now=now)
        if current.state == "manufactured":
            tx.devices.set_state(device_id, "enrolled", now=now)
        tx.events.append(
            type="device.enrolled" if mode == "enroll" else "device.reenrolled",
            actor=f"device:{device_id}",
            subject=f"device:{device_id}",
            details={
                "serial": format(cert.serial_number, "x"),
                "not_after": cert.not_valid_after_utc.isoformat(),
            },
            now=now,
        )
    return cert


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
