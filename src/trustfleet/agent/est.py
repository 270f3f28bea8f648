"""The device side of EST (RFC 7030): CSR signed in the token, mTLS 1.3 with the token key.

TLS goes through the AWS Common Runtime (awscrt), whose client TLS context takes a PKCS#11
module, token and key label, so the identity key never leaves the device's token: not for the
CSR's proof of possession, not for the TLS handshake.

One process talks to one device's token: SoftHSM2 reads its configuration when the module
is initialised, so the simulator runs each virtual device in a process of its own.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from trustfleet.agent._https import post
from trustfleet.agent._tls import TokenKey, token_key
from trustfleet.agent.settings import DeviceSettings
from trustfleet.errors import Config, InvalidInput, PermissionDenied, TrustFleetError
from trustfleet.fileio import write_atomic
from trustfleet.pki import CONTENT_TYPE_CSR, device_uri, parse_certs_only

if TYPE_CHECKING:
    from trustfleet.keystore import Pkcs11EcPrivateKey

__all__ = ["EnrollOutcome", "enroll_device"]

logger = logging.getLogger(__name__)

Mode = Literal["enroll", "reenroll"]
_MAX_RESPONSE_BYTES = 256 * 1024
_MAX_CERT_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class EnrollOutcome:
    """What an enrollment produced."""

    device_id: str
    certificate: x509.Certificate
    path: Path


def enroll_device(
    settings: DeviceSettings,
    *,
    mode: Mode,
    now: datetime,
    csr_key: TokenKey | None = None,
    target: Path | None = None,
) -> EnrollOutcome:
    """Enroll (or re-enroll) a device and store its new LDevID next to its settings.

    Args:
        settings: The device's settings.
        mode: ``enroll`` authenticates with the IDevID, ``reenroll`` with the current LDevID.
        now: The current time (checked against the returned certificate).
        csr_key: The key the CSR certifies and is signed by (default: the identity key, which
            also authenticates the TLS connection); a re-key passes its new key here.
        target: Where the new LDevID is written (default: ``[identity] ldevid``).

    Returns:
        The new certificate and where it was written.

    Raises:
        PermissionDenied: The service refused the device (the reason is in the message).
        InvalidInput: The service refused the CSR.
        Unavailable: The service could not be reached.
    """
    key = token_key(settings)
    csr_der = _make_csr(settings, key=csr_key or key)
    client_cert = settings.path(
        settings.identity.idevid if mode == "enroll" else settings.identity.ldevid
    )
    if not client_cert.is_file():
        raise InvalidInput(f"{client_cert} is missing", hint="enroll before re-enrolling")
    _check_certificate_file(client_cert)
    answer = post(
        settings,
        path=urlsplit(settings.server.est_url).path + f"/simple{mode}",
        body=base64.encodebytes(csr_der),
        content_type=CONTENT_TYPE_CSR,
        client_cert=client_cert,
        key=key,
        max_response_bytes=_MAX_RESPONSE_BYTES,
    )
    status, body = answer.status, answer.body
    if status != 200:
        reason = body.decode("utf-8", "replace").strip()[:300]
        error = PermissionDenied if status in (401, 403) else InvalidInput
        raise error(
            f"the service refused the {mode}ment ({status}): {reason}", code="agent.est.refused"
        )
    cert = _pick_certificate(parse_certs_only(body), csr_der=csr_der, device_id=settings.device.id)
    target = target or settings.path(settings.identity.ldevid)
    write_atomic(target, cert.public_bytes(serialization.Encoding.PEM))
    logger.info("device %s %sed; LDevID serial %x", settings.device.id, mode, cert.serial_number)
    return EnrollOutcome(device_id=settings.device.id, certificate=cert, path=target)


def _open(key: TokenKey) -> Pkcs11EcPrivateKey:
    # Imported here: python-pkcs11 is needed only to sign a CSR, so an enrolled agent never
    # loads it.
    from trustfleet.keystore import open_key  # noqa: PLC0415  # lazy on purpose, see above

    return open_key(key.uri, pin=key.pin, module=key.module, conf=key.conf)


def _make_csr(settings: DeviceSettings, *, key: TokenKey) -> bytes:
    private = _open(key)
    try:
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, settings.device.id)])
        )
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(device_uri(settings.device.id))]
            ),
            critical=False,
        )
        csr = builder.sign(private, hashes.SHA256())
    finally:
        private.close()
    return csr.public_bytes(serialization.Encoding.DER)


def _pick_certificate(
    certs: list[x509.Certificate], *, csr_der: bytes, device_id: str
) -> x509.Certificate:
    wanted = x509.load_der_x509_csr(csr_der).public_key()
    for cert in certs:
        if cert.public_key() == wanted:
            return cert
    raise TrustFleetError(f"the service's answer holds no certificate for {device_id}'s key")


def _check_certificate_file(path: Path) -> None:
    """A readable PEM certificate, or a Config error that names the file (not the service)."""
    try:
        x509.load_pem_x509_certificate(path.read_bytes()[:_MAX_CERT_FILE_BYTES])
    except ValueError as exc:
        raise Config(
            f"{path} is not a PEM certificate (damaged or replaced)",
            hint="restore the device folder from its backup, or provision the device again",
            code="agent.certificate.corrupt",
        ) from exc
