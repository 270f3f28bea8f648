"""AK enrollment: bind a device's attestation key to its TPM by credential activation.

1. ``begin_ak_enrollment``: the device sends its EK certificate and EK public area, and the AK
   public area and name. The service checks the EK certificate against the TPM manufacturers'
   CAs (``[attestation] tpm_manufacturer_cas``), that the certificate is for that EK, that the
   AK is a restricted signing key whose name is the one given, then runs MakeCredential with a
   random secret (TPM 2.0 Part 1 §24) and keeps only the secret's SHA-256.
2. ``finish_ak_enrollment``: the device returns the secret its TPM recovered with
   ActivateCredential, which only a TPM holding both the EK and an AK of that name can do. The
   service compares it in constant time and stores the AK.

The HTTP wrappers authenticate the device by the LDevID it presented on the TLS connection
(one the service issued, valid, of an enrolled device) and parse bounded JSON bodies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustfleet.attestation.credential import (
    ak_name_matches,
    make_credential,
    parse_public,
    public_key,
)
from trustfleet.attestation.ekcert import check_ek_certificate
from trustfleet.errors import (
    Config,
    Conflict,
    InvalidInput,
    PermissionDenied,
    TrustFleetError,
    VerificationFailed,
)
from trustfleet.services.runtime import Runtime
from trustfleet.store import AkEnrollmentRecord, AttestationKeyRecord, DeviceRecord, record_of

__all__ = [
    "ak_activate_request",
    "ak_enroll_request",
    "begin_ak_enrollment",
    "finish_ak_enrollment",
    "load_manufacturer_cas",
]

logger = logging.getLogger(__name__)

SECRET_BYTES: Final = 32
MAX_CA_BUNDLE_BYTES: Final = 1024 * 1024
_ACTIVATION_FAILED: Final = "attestation.ak.activation"


def load_manufacturer_cas(rt: Runtime) -> list[x509.Certificate]:
    """The TPM manufacturer CA certificates configured for the home.

    Raises:
        Config: The bundle is missing, too large or holds no PEM certificate.
    """
    path = rt.settings.path(rt.settings.attestation.tpm_manufacturer_cas)
    hint = "put the TPM vendors' EK CA certificates (PEM) there, see docs/attestation.md"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Config(
            f"cannot read the TPM manufacturer CA bundle {path}", hint=hint, code="attestation.cas"
        ) from exc
    try:
        if len(data) > MAX_CA_BUNDLE_BYTES:
            raise ValueError("too large")
        cas = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise Config(
            f"{path} is not a PEM certificate bundle", hint=hint, code="attestation.cas"
        ) from exc
    return cas


def _device_for(rt: Runtime, device_id: str) -> DeviceRecord:
    with rt.uow.begin(read_only=True) as tx:
        device = tx.devices.require(device_id)
        quarantine = tx.attestation.quarantine(device_id)
    if device.state != "enrolled":
        raise PermissionDenied(
            f"device '{device_id}' is {device.state}", code="attestation.ak.state"
        )
    if quarantine is not None:
        raise PermissionDenied(
            f"device '{device_id}' is quarantined and may not bind a new AK",
            hint="lift it first ('trustfleet attest lift')",
            code="attestation.ak.quarantined",
        )
    return device


def begin_ak_enrollment(
    rt: Runtime,
    *,
    device_id: str,
    ek_public: bytes,
    ek_certificate: bytes,
    ak_public: bytes,
    ak_name: bytes,
    now: datetime,
) -> tuple[bytes, bytes, str]:
    """Check the EK and the AK and make the credential the device's TPM must activate.

    Args:
        rt: The runtime.
        device_id: The authenticated device.
        ek_public: The EK's marshalled ``TPM2B_PUBLIC``.
        ek_certificate: The EK certificate (DER) from the TPM's NV.
        ak_public: The AK's marshalled ``TPM2B_PUBLIC``.
        ak_name: The AK's TPM name.
        now: The current time.

    Returns:
        ``(credential_blob, encrypted_secret, enrollment_id)``.

    Raises:
        PermissionDenied: The device is not enrolled or is quarantined.
        Conflict: The device already has an AK from another EK (another TPM).
        VerificationFailed: The EK certificate or the AK does not check out.
        InvalidInput: A TPM structure is malformed.
        Config: The TPM manufacturer CA bundle is missing.
    """
    with _refusal_recorded(rt, device_id=device_id, step="enroll", now=now):
        _device_for(rt, device_id)
        _check_same_tpm(rt, device_id=device_id, ek_public=ek_public)
        check_ek_certificate(
            ek_certificate, ek_public=ek_public, manufacturer_cas=load_manufacturer_cas(rt), now=now
        )
        _check_ak_name(ak_public, ak_name)
        pem = public_key(parse_public(ak_public)).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        secret = secrets.token_bytes(SECRET_BYTES)
        blob, encrypted = make_credential(ek_public=ek_public, ak_name=ak_name, secret=secret)
        record = AkEnrollmentRecord(
            id=secrets.token_hex(16),
            device_id=device_id,
            secret_sha256=hashlib.sha256(secret).hexdigest(),
            ak_public=ak_public,
            ak_public_pem=pem.decode("ascii"),
            ak_name=ak_name.hex(),
            ek_public=ek_public,
            ek_certificate=ek_certificate,
            created_at=now,
            expires_at=now + timedelta(seconds=rt.settings.attestation.enrollment_ttl_s),
            used_at=None,
        )
        with rt.uow.begin() as tx:
            tx.attestation.add_enrollment(record)
    return blob, encrypted, record.id


def _check_same_tpm(rt: Runtime, *, device_id: str, ek_public: bytes) -> None:
    """One TPM, one live device: refuse an EK of another TPM, or one another device still uses.

    A TPM returned to service (docs/lifecycle.md, "Return to service") comes back under a new
    id: its EK is accepted once every other device bound to it is decommissioned.
    """
    with rt.uow.begin(read_only=True) as tx:
        current = tx.attestation.get_key(device_id)
        others = [d for d in tx.attestation.devices_for_ek(ek_public) if d != device_id]
        live = [d for d in others if tx.devices.require(d).state != "decommissioned"]
    if live:
        raise Conflict(
            f"this TPM (EK) is bound to device '{live[0]}', which is not decommissioned",
            hint="decommission that device, then return the hardware through the factory",
            code="attestation.ek.in_use",
        )
    if current is not None and current.ek_public != ek_public:
        raise Conflict(
            f"device '{device_id}' has an AK from another TPM (EK)",
            hint="a changed TPM needs the operator: decommission and re-provision the device",
            code="attestation.ek.changed",
        )


def _check_ak_name(ak_public: bytes, ak_name: bytes) -> None:
    if not ak_name_matches(ak_public, ak_name):
        raise VerificationFailed(
            "the AK name is not the name of the AK public area",
            hint="send the name the TPM returned for this AK",
            code="attestation.ak.name",
        )


def finish_ak_enrollment(
    rt: Runtime, *, device_id: str, enrollment_id: str, secret: bytes, now: datetime
) -> AttestationKeyRecord:
    """Accept the secret the device's TPM recovered and store the AK.

    Raises:
        PermissionDenied: Unknown, expired, used or another device's enrollment, or the wrong
            secret (one error: ``attestation.ak.activation``; the detail is logged).
    """
    with _refusal_recorded(rt, device_id=device_id, step="activate", now=now):
        return _finish(rt, device_id, enrollment_id, secret, now)


def _finish(
    rt: Runtime, device_id: str, enrollment_id: str, secret: bytes, now: datetime
) -> AttestationKeyRecord:
    _device_for(rt, device_id)
    with rt.uow.begin() as tx:
        pending = tx.attestation.get_enrollment(enrollment_id)
        why = _refusal(pending, device_id=device_id, secret=secret, now=now)
        if (
            why is None
            and pending is not None
            and tx.attestation.use_enrollment(pending.id, now=now)
        ):
            # The key is the enrollment's AK and EK, activated now.
            key = record_of(AttestationKeyRecord, pending, activated_at=now)
            tx.attestation.put_key(key)
            tx.events.append(
                type="attestation.ak.enrolled",
                actor=f"device:{device_id}",
                subject=f"device:{device_id}",
                details={"ak_name": key.ak_name, "enrollment": pending.id},
                now=now,
            )
            return key
    logger.info("AK activation refused for %s: %s", device_id, why or "already used")
    raise PermissionDenied(
        "the AK activation was refused",
        hint="start again with POST /attest/v1/ak",
        code=_ACTIVATION_FAILED,
    )


def _refusal(
    pending: AkEnrollmentRecord | None, *, device_id: str, secret: bytes, now: datetime
) -> str | None:
    if pending is None or pending.device_id != device_id:
        return "unknown enrollment"
    if pending.used_at is not None:
        return "enrollment already used"
    if now > pending.expires_at:
        return "enrollment expired"
    given = hashlib.sha256(secret).hexdigest()
    if not hmac.compare_digest(given, pending.secret_sha256):
        return "wrong secret"
    return None


@contextmanager
def _refusal_recorded(rt: Runtime, *, device_id: str, step: str, now: datetime) -> Iterator[None]:
    """Record a TrustFleet error raised inside as a refused ``step``, then let it go on."""
    try:
        yield
    except TrustFleetError as exc:
        _record_refusal(rt, exc, device_id=device_id, step=step, now=now)
        raise


def _record_refusal(
    rt: Runtime, exc: TrustFleetError, *, device_id: str, step: str, now: datetime
) -> None:
    logger.info("AK %s refused for %s: %s", step, device_id, exc.code or exc.category)
    try:
        with rt.uow.begin() as tx:
            if tx.devices.get(device_id) is None:
                return
            tx.events.append(
                type="attestation.ak.refused",
                actor=f"device:{device_id}",
                subject=f"device:{device_id}",
                details={"step": step, "code": exc.code or exc.category, "reason": exc.message},
                now=now,
            )
    except TrustFleetError:
        logger.exception("could not record the refused AK enrollment")


# -- HTTP bodies ---------------------------------------------------------------------------


def _body(rt: Runtime, body: bytes, keys: frozenset[str]) -> dict[str, Any]:
    limit = rt.settings.attestation.max_request_bytes
    if len(body) > limit:
        raise InvalidInput(f"the request is over {limit} bytes", code="attestation.request.size")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInput("the request is not UTF-8 JSON", code="attestation.request") from exc
    if not isinstance(doc, dict) or set(doc) != keys:
        raise InvalidInput(
            f"the request must be a JSON object with exactly: {', '.join(sorted(keys))}",
            hint="see docs/attestation.md",
            code="attestation.request",
        )
    return doc


def _b64(doc: dict[str, Any], key: str) -> bytes:
    value = doc[key]
    try:
        if not isinstance(value, str):
            raise ValueError(key)
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise InvalidInput(f"'{key}' is not base64", code="attestation.request") from exc


def _b64s(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_ENROLL_KEYS: Final = frozenset({"ek_public", "ek_certificate", "ak_public", "ak_name"})
_ACTIVATE_KEYS: Final = frozenset({"id", "secret"})


def ak_enroll_request(rt: Runtime, *, device: DeviceRecord, body: bytes, now: datetime) -> bytes:
    """``POST /attest/v1/ak``: a JSON body of base64 fields; answers the credential (JSON)."""
    doc = _body(rt, body, _ENROLL_KEYS)
    blob, encrypted, enrollment_id = begin_ak_enrollment(
        rt,
        device_id=device.id,
        ek_public=_b64(doc, "ek_public"),
        ek_certificate=_b64(doc, "ek_certificate"),
        ak_public=_b64(doc, "ak_public"),
        ak_name=_b64(doc, "ak_name"),
        now=now,
    )
    answer = {
        "id": enrollment_id,
        "credential_blob": _b64s(blob),
        "encrypted_secret": _b64s(encrypted),
    }
    return json.dumps(answer).encode()


def ak_activate_request(rt: Runtime, *, device: DeviceRecord, body: bytes, now: datetime) -> bytes:
    """``POST /attest/v1/ak/activate``: ``{"id", "secret"}``; answers the stored AK (JSON)."""
    doc = _body(rt, body, _ACTIVATE_KEYS)
    if not isinstance(doc["id"], str) or not 0 < len(doc["id"]) <= 40:
        raise InvalidInput("'id' must be the enrollment id", code="attestation.request")
    secret = _b64(doc, "secret")
    key = finish_ak_enrollment(
        rt, device_id=device.id, enrollment_id=doc["id"], secret=secret, now=now
    )
    answer = {
        "device_id": key.device_id,
        "ak_name": key.ak_name,
        "activated_at": key.activated_at.isoformat(),
    }
    return json.dumps(answer).encode()
