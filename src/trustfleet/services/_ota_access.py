"""Who may read the update repository over HTTPS: devices with a certificate we issued.

The TLS layer already checked the chain against the device CA bundle; here the certificate
must also be one the service recorded (IDevID or LDevID, matched by SHA-256), valid now, not
revoked, and its device neither revoked nor decommissioned. Every refusal is the same
``PermissionDenied`` to the client; the reason is logged here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from datetime import datetime
from typing import NoReturn

from trustfleet.errors import PermissionDenied
from trustfleet.services.runtime import Runtime

__all__ = ["authorize_device"]

logger = logging.getLogger(__name__)

_DEVICE_KINDS = frozenset({"idevid", "ldevid"})
_REFUSED_STATES = frozenset({"revoked", "decommissioned"})
_MAX_PEM_CHARS = 16 * 1024


def _denied() -> PermissionDenied:
    return PermissionDenied(
        "a valid device certificate issued by this service is required",
        hint="connect with the device's IDevID or LDevID",
        code="ota.auth.denied",
    )


def _fingerprint(pem: str) -> str | None:
    if len(pem) > _MAX_PEM_CHARS:
        return None
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    try:
        return hashlib.sha256(base64.b64decode(body, validate=True)).hexdigest()
    except (binascii.Error, ValueError):
        return None


def authorize_device(rt: Runtime, *, client_cert_pem: str | None, now: datetime) -> str:
    """The device id of the TLS client, if it may read the update repository.

    Args:
        rt: The server home's runtime.
        client_cert_pem: The TLS client certificate (PEM), or None.
        now: The current time.

    Returns:
        The device id.

    Raises:
        PermissionDenied: No certificate, or not a valid, unrevoked device certificate
            of this service (code ``ota.auth.denied``).
    """
    digest = _fingerprint(client_cert_pem) if client_cert_pem else None
    if digest is None:
        logger.info("OTA request refused: no usable client certificate")
        raise _denied()
    with rt.uow.begin(read_only=True) as tx:
        record = tx.certificates.get_by_sha256(digest)
        device = tx.devices.get(record.device_id) if record and record.device_id else None
    if record is None or device is None or record.kind not in _DEVICE_KINDS:
        _refuse("unknown certificate", digest)
    if record.status != "valid":
        _refuse("revoked certificate", digest)
    if not record.not_before <= now <= record.not_after:
        _refuse("expired certificate", digest)
    if device.state in _REFUSED_STATES:
        _refuse(f"device is {device.state}", digest)
    return device.id


def _refuse(why: str, digest: str) -> NoReturn:
    logger.info("OTA request refused (%s): certificate %s", why, digest[:16])
    raise _denied()
