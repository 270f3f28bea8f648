"""Rotating the server's own certificates (``trustfleet server rotate-tls``; docs/lifecycle.md).

New HTTPS and broker server certificates, each with a new key (files, mode 0600, written
atomically before their chain), and a new certificate for the service's MQTT key (which stays in
the ``tf-service`` token), all from the device CA active now. The running ``server run`` sees the
new files (it compares their identity every ``[broker] revocation_poll_s``): Mosquitto reloads
its listener's certificate on SIGHUP and each HTTPS worker builds a new TLS context on SIGHUP,
so live connections stay and new handshakes see the new certificate. The service's MQTT
clients use the new certificate from their next start. The old certificates are not revoked:
they stay valid to their end (nothing was compromised); a CA is retired only once these three
no longer come from it (:func:`tls_issuers`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.audit.context import current_operator
from trustfleet.errors import Config
from trustfleet.fileio import PRIVATE_FILE_MODE, write_atomic
from trustfleet.pki import IssuerContext, issue_server_certificate, issue_service_certificate
from trustfleet.services._certs import record_certificate, serial_hex
from trustfleet.services.runtime import Runtime
from trustfleet.store.records import JSON

__all__ = ["TlsRotation", "rotate_tls", "tls_files", "tls_issuers"]

_SERVER_VALIDITY: Final = timedelta(days=397)
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class TlsRotation:
    """What a rotation issued.

    Attributes:
        issuer: The device CA that issued the new certificates.
        serials: ``api``, ``broker``, ``service`` → the new certificate's serial (hex).
        previous: The same names → the serial each replaced.
    """

    issuer: str
    serials: dict[str, str]
    previous: dict[str, str]


def tls_files(rt: Runtime) -> dict[str, Path]:
    """The certificate files of the server's own identities: ``api``, ``broker``, ``service``."""
    s = rt.settings
    return {
        "api": s.path(s.api.tls_cert),
        "broker": s.path(s.broker.tls_cert),
        "service": s.path(s.broker.service_cert),
    }


def tls_issuers(rt: Runtime) -> dict[str, x509.Name]:
    """Who issued each of the server's certificates now (the first certificate of each file).

    Raises:
        Config: A file is missing or holds no certificate.
    """
    return {name: _leaf(path).issuer for name, path in tls_files(rt).items()}


def rotate_tls(rt: Runtime, *, now: datetime) -> TlsRotation:
    """Issue new server certificates (API, broker: new keys) and a new service certificate.

    Raises:
        NotFound: No active device CA.
        Config: A current certificate file is missing or unreadable.
    """
    with rt.uow.begin(read_only=True) as tx:
        active = tx.cas.active("device").name
    issuer = rt.issuer(active)
    files = tls_files(rt)
    old = {name: _leaf(path) for name, path in files.items()}
    s = rt.settings
    new: dict[str, x509.Certificate] = {}
    for name, key_rel in (("api", s.api.tls_key), ("broker", s.broker.tls_key)):
        new[name] = _rotate_server(issuer, old[name], files[name], s.path(key_rel), now=now)
    new["service"] = issue_service_certificate(
        issuer=issuer, public_key=old["service"].public_key(),
        identity=s.broker.service_identity, organization=s.pki.organization, now=now,
    )  # fmt: skip
    write_atomic(files["service"], new["service"].public_bytes(_PEM))
    serials = {name: serial_hex(cert.serial_number) for name, cert in new.items()}
    previous = {name: serial_hex(cert.serial_number) for name, cert in old.items()}
    with rt.uow.begin() as tx:
        for cert in new.values():
            record_certificate(tx, cert, issuer=active, kind="server", device_id=None, now=now)
        details: dict[str, JSON] = {"issuer": active, "serials": dict(serials),
                                    "previous": dict(previous)}  # fmt: skip
        tx.events.append(
            type="server.tls.rotated", actor=current_operator(), subject="server",
            details=details, now=now,
        )  # fmt: skip
    return TlsRotation(issuer=active, serials=serials, previous=previous)


def _rotate_server(
    issuer: IssuerContext, old: x509.Certificate, chain: Path, key_path: Path, *, now: datetime
) -> x509.Certificate:
    """A new key (file, 0600) and certificate with the old one's names; key first, then chain
    (the server reloads when the chain changes)."""
    san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    common = old.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_server_certificate(
        issuer=issuer, public_key=key.public_key(),
        common_name=str(common[0].value) if common else "trustfleet",
        dns_names=san.get_values_for_type(x509.DNSName),
        ip_addresses=[
            ipaddress.ip_address(str(ip)) for ip in san.get_values_for_type(x509.IPAddress)
        ],
        now=now, validity=_SERVER_VALIDITY,
    )  # fmt: skip
    pem = key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_atomic(key_path, pem, mode=PRIVATE_FILE_MODE)
    write_atomic(chain, cert.public_bytes(_PEM) + issuer.cert.public_bytes(_PEM))
    return cert


def _leaf(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        raise Config(
            f"cannot read the certificate {path}", hint="is this a server home?",
            code="tls.file",
        ) from exc  # fmt: skip
