"""Writing the broker's files into the server home: atomically, with tight modes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustfleet import fileio
from trustfleet.broker._config import (
    ADMIN_USERNAME,
    BrokerConfig,
    render_acl,
    render_dynsec_state,
    render_mosquitto_conf,
)
from trustfleet.errors import Config, InvalidInput, VerificationFailed

__all__ = ["AdminCredentials", "crl_pem", "load_or_create_admin", "write_all", "write_atomic"]

_MAX_CRL_BYTES = 16 * 1024 * 1024
_MAX_SECRET_BYTES = 4096
_PASSWORD_BYTES = 32


class AdminCredentials:
    """The dynamic-security admin's username and password (the password is never printed)."""

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __repr__(self) -> str:
        return f"AdminCredentials(username={self.username!r}, password=<hidden>)"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """:func:`trustfleet.fileio.write_atomic` with ``mode``, its failure as a ``Config`` error.

    Raises:
        Config: The file cannot be written.
    """
    try:
        fileio.write_atomic(path, data, mode=mode)
    except OSError as exc:
        raise Config(f"Cannot write {path}: {exc.strerror}.", code="broker.write") from exc


def crl_pem(crl_der: bytes, *, issuer: x509.Certificate) -> bytes:
    """Check a DER CRL against its issuer and convert it to PEM.

    Args:
        crl_der: The CRL, DER.
        issuer: The CA whose CRL it must be (the device CA).

    Returns:
        The CRL, PEM.

    Raises:
        InvalidInput: Not a CRL, or too large.
        VerificationFailed: Not issued or not signed by ``issuer``.
    """
    if len(crl_der) > _MAX_CRL_BYTES:
        raise InvalidInput("The CRL is too large.", code="broker.crl.too_large")
    try:
        crl = x509.load_der_x509_crl(crl_der)
    except ValueError as exc:
        raise InvalidInput("The CRL is not a DER X.509 CRL.", code="broker.crl.malformed") from exc
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]  # the device CA key is EC; cryptography's union includes unsupported types
        raise VerificationFailed(
            "The CRL is not the device CA's.",
            hint="Pass the CRL from current_crl(rt, 'device', now=...).",
            code="broker.crl.issuer",
        )
    return crl.public_bytes(serialization.Encoding.PEM)


def load_or_create_admin(path: Path) -> AdminCredentials:
    """The admin credentials from ``path`` (0600), created with a random password if absent.

    Raises:
        Config: The file is unreadable, malformed, or readable by others.
    """
    if not path.exists():
        password = secrets.token_urlsafe(_PASSWORD_BYTES)
        body = {"username": ADMIN_USERNAME, "password": password}
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, json.dumps(body).encode() + b"\n", mode=0o600)
        return AdminCredentials(ADMIN_USERNAME, password)
    try:
        if path.stat().st_mode & 0o077:
            raise Config(
                f"{path} is readable by other users.",
                hint=f"chmod 600 {path}",
                code="broker.admin_secret.mode",
            )
        with path.open("rb") as handle:
            body = json.loads(handle.read(_MAX_SECRET_BYTES))
        username, password = body["username"], body["password"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Config(
            f"Cannot read the broker admin secret {path}.",
            hint="Delete it; a new one is made at the next broker start.",
            code="broker.admin_secret",
        ) from exc
    if username != ADMIN_USERNAME or not isinstance(password, str) or len(password) < 16:
        raise Config(f"The broker admin secret {path} is malformed.", code="broker.admin_secret")
    return AdminCredentials(username, password)


def write_all(config: BrokerConfig, *, plugin: Path, crl: bytes) -> AdminCredentials:
    """Render and write every file Mosquitto reads; return the admin credentials.

    Args:
        config: The broker configuration.
        plugin: The dynamic-security plugin.
        crl: The device CA's CRL, PEM (already checked).

    Raises:
        Config: A file cannot be read or written.
    """
    p = config.paths
    for required in (p.tls_cert, p.tls_key, p.device_ca, p.root_ca):
        if not required.is_file():
            raise Config(
                f"{required} is missing.",
                hint="Is this a server home made by 'trustfleet server init'?",
                code="broker.file_missing",
            )
    if p.tls_key.stat().st_mode & 0o077:
        raise Config(f"{p.tls_key} is readable by others.", hint=f"chmod 600 {p.tls_key}")
    p.directory.mkdir(mode=0o700, exist_ok=True)
    p.directory.chmod(0o700)
    admin = load_or_create_admin(p.admin_secret)
    # OpenSSL needs a self-signed anchor: the device CA alone would not verify (no
    # PARTIAL_CHAIN); the manufacturing CA is left out so IDevIDs never chain here.
    write_atomic(p.cafile, p.device_ca.read_bytes() + p.root_ca.read_bytes(), mode=0o644)
    write_atomic(p.crlfile, crl, mode=0o644)
    write_atomic(p.acl, render_acl(config).encode(), mode=0o600)
    write_atomic(p.dynsec_state, render_dynsec_state(admin.password).encode(), mode=0o600)
    write_atomic(p.conf, render_mosquitto_conf(config, plugin=plugin).encode(), mode=0o600)
    p.admin_socket.unlink(missing_ok=True)
    return admin
