"""The device side of EST (RFC 7030): CSR signed in the token, mTLS 1.3 with the token key.

TLS goes through the AWS Common Runtime (awscrt), whose client TLS context takes a PKCS#11
module, token and key label, so the identity key never leaves the device's token: not for the
CSR's proof of possession, not for the TLS handshake.

One process talks to one device's token: SoftHSM2 reads its configuration when the module
is initialised, so the simulator runs each virtual device in a process of its own.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from awscrt import http as crt_http
from awscrt import io as crt_io
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from trustfleet.agent._tls import TokenKey, client_tls_context, token_key
from trustfleet.agent.settings import DeviceSettings
from trustfleet.errors import InvalidInput, PermissionDenied, TrustFleetError, Unavailable
from trustfleet.fileio import write_atomic
from trustfleet.pki import CONTENT_TYPE_CSR, device_uri, parse_certs_only

if TYPE_CHECKING:
    from trustfleet.keystore import Pkcs11EcPrivateKey

__all__ = ["EnrollOutcome", "enroll_device"]

logger = logging.getLogger(__name__)

Mode = Literal["enroll", "reenroll"]
_MAX_RESPONSE_BYTES = 256 * 1024


@dataclass(frozen=True)
class EnrollOutcome:
    """What an enrollment produced."""

    device_id: str
    certificate: x509.Certificate
    path: Path


def enroll_device(settings: DeviceSettings, *, mode: Mode, now: datetime) -> EnrollOutcome:
    """Enroll (or re-enroll) a device and store its new LDevID next to its settings.

    Args:
        settings: The device's settings.
        mode: ``enroll`` authenticates with the IDevID, ``reenroll`` with the current LDevID.
        now: The current time (checked against the returned certificate).

    Returns:
        The new certificate and where it was written.

    Raises:
        PermissionDenied: The service refused the device (the reason is in the message).
        InvalidInput: The service refused the CSR.
        Unavailable: The service could not be reached.
    """
    key = token_key(settings)
    csr_der = _make_csr(settings, key=key)
    client_cert = settings.path(
        settings.identity.idevid if mode == "enroll" else settings.identity.ldevid
    )
    if not client_cert.is_file():
        raise InvalidInput(f"{client_cert} is missing", hint="enroll before re-enrolling")
    status, body = _post(
        settings,
        path=f"/simple{mode}",
        body=base64.encodebytes(csr_der),
        client_cert=client_cert,
        tls_key=key,
    )
    if status != 200:
        reason = body.decode("utf-8", "replace").strip()[:300]
        error = PermissionDenied if status in (401, 403) else InvalidInput
        raise error(
            f"the service refused the {mode}ment ({status}): {reason}", code="agent.est.refused"
        )
    cert = _pick_certificate(parse_certs_only(body), csr_der=csr_der, device_id=settings.device.id)
    target = settings.path(settings.identity.ldevid)
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


def _post(
    settings: DeviceSettings, *, path: str, body: bytes, client_cert: Path, tls_key: TokenKey
) -> tuple[int, bytes]:
    url = urlsplit(settings.server.est_url)
    host, port = url.hostname or "localhost", url.port or 443
    timeout_s = settings.server.timeout_s
    try:
        ctx = client_tls_context(settings, client_cert=client_cert, key=tls_key)
        options = ctx.new_connection_options()
        options.set_server_name(host)
        elg = crt_io.EventLoopGroup(1)
        bootstrap = crt_io.ClientBootstrap(elg, crt_io.DefaultHostResolver(elg))
        conn = crt_http.HttpClientConnection.new(
            host_name=host, port=port, bootstrap=bootstrap, tls_connection_options=options
        ).result(timeout_s)
    except Exception as exc:  # awscrt raises its own AwsCrtError and futures' errors
        raise Unavailable(
            f"cannot connect to {host}:{port} with TLS 1.3 and the device key: {_crt_reason(exc)}",
            hint="is the service running, and is the device's certificate valid?",
        ) from exc
    try:
        return _exchange(conn, host=host, path=url.path + path, body=body, timeout_s=timeout_s)
    finally:
        conn.close()


def _exchange(
    conn: Any, *, host: str, path: str, body: bytes, timeout_s: float
) -> tuple[int, bytes]:
    headers = crt_http.HttpHeaders(
        [("host", host), ("content-type", CONTENT_TYPE_CSR), ("content-length", str(len(body)))]
    )
    request = crt_http.HttpRequest(
        method="POST", path=path, headers=headers, body_stream=io.BytesIO(body)
    )
    status: dict[str, int] = {}
    chunks = bytearray()

    def on_response(http_stream: Any, status_code: int, headers: Any, **_kw: Any) -> None:
        status["code"] = status_code

    def on_body(http_stream: Any, chunk: bytes, **_kw: Any) -> None:
        if len(chunks) + len(chunk) <= _MAX_RESPONSE_BYTES:
            chunks.extend(chunk)

    stream = conn.request(request, on_response, on_body)
    stream.activate()
    try:
        stream.completion_future.result(timeout_s)
    except Exception as exc:
        raise Unavailable(
            f"the EST request failed: {_crt_reason(exc)}", hint="retry later"
        ) from exc
    return status.get("code", 0), bytes(chunks)


def _pick_certificate(
    certs: list[x509.Certificate], *, csr_der: bytes, device_id: str
) -> x509.Certificate:
    wanted = x509.load_der_x509_csr(csr_der).public_key()
    for cert in certs:
        if cert.public_key() == wanted:
            return cert
    raise TrustFleetError(f"the service's answer holds no certificate for {device_id}'s key")


def _crt_reason(exc: BaseException) -> str:
    name = getattr(exc, "name", None)
    if name:
        return str(name)
    text = str(exc)
    return text.split(":", 1)[0] if text else exc.__class__.__name__
