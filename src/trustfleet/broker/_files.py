"""Writing the broker's files into the server home: atomically, with tight modes and owners.

When the service runs as root, Mosquitto runs as an unprivileged user (``BrokerConfig.run_as``):
``HOME/broker`` stays root's (0750, the user's group may enter) and so do the files Mosquitto
only reads (0644: configuration, ACL, chain, trust, CRL; none is secret); the user owns its key
copy (0600) and ``HOME/broker/run`` (0700), the only place it can write. Ownership changes never
follow symbolic links.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustfleet import fileio
from trustfleet.broker._config import (
    ADMIN_USERNAME,
    BrokerConfig,
    render_acl,
    render_mosquitto_conf,
)
from trustfleet.broker._dynsec import render_dynsec_state
from trustfleet.errors import Config, InvalidInput, VerificationFailed

__all__ = [
    "AdminCredentials",
    "Owner",
    "broker_owner",
    "crl_pem",
    "load_or_create_admin",
    "write_all",
    "write_atomic",
]

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


@dataclass(frozen=True)
class Owner:
    """Who Mosquitto runs as: the owner of the files it reads (``uid is None``: keep ours)."""

    uid: int | None
    gid: int | None


def broker_owner(run_as: str) -> Owner:
    """The owner for Mosquitto's files: ``run_as`` when the service is root, else nobody else.

    Raises:
        Config: The service is root and ``run_as`` does not exist.
    """
    if os.geteuid() != 0:
        return Owner(uid=None, gid=None)
    try:
        entry = pwd.getpwnam(run_as)
    except KeyError as exc:
        raise Config(
            f"The broker's user {run_as!r} does not exist.",
            hint="Install Debian's mosquitto package (it creates the user) or "
            f"'adduser --system --group {run_as}'.",
            code="broker.user.missing",
        ) from exc
    if entry.pw_uid == 0:
        raise Config("The broker must not run as root.", code="broker.user.root")
    return Owner(uid=entry.pw_uid, gid=entry.pw_gid)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, owner: Owner | None = None) -> None:
    """:func:`trustfleet.fileio.write_atomic` with ``mode`` and ``owner``, errors as ``Config``.

    Raises:
        Config: The file cannot be written.
    """
    try:
        fileio.write_atomic(path, data, mode=mode)
        if owner is not None and owner.uid is not None:
            os.chown(path, owner.uid, owner.gid or -1, follow_symlinks=False)
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


def _prepare_directories(config: BrokerConfig, owner: Owner) -> None:
    p = config.paths
    p.directory.mkdir(mode=0o700, exist_ok=True)
    if owner.uid is None:
        p.directory.chmod(0o700)
    else:
        os.chown(p.directory, 0, owner.gid or 0, follow_symlinks=False)
        p.directory.chmod(0o750)
    p.run_dir.mkdir(mode=0o700, exist_ok=True)
    if p.run_dir.is_symlink() or not p.run_dir.is_dir():
        raise Config(f"{p.run_dir} is not a directory.", code="broker.run_dir")
    if owner.uid is not None:
        os.chown(p.run_dir, owner.uid, owner.gid or -1, follow_symlinks=False)
    p.run_dir.chmod(0o700)
    for stale in ("admin.sock", "dynamic-security.json"):  # where they were before run/
        (p.directory / stale).unlink(missing_ok=True)


def write_all(
    config: BrokerConfig,
    *,
    view: Path,
    guard: Path,
    dynsec: Path,
    crl: bytes,
    cafile: bytes | None = None,
) -> AdminCredentials:
    """Render and write every file Mosquitto reads; return the admin credentials.

    Args:
        config: The broker configuration.
        view: ``HOME/broker`` as Mosquitto reaches it (``/proc/self/fd/N``).
        guard: The guard plugin (in ``HOME/broker``).
        dynsec: The dynamic-security plugin.
        crl: The device CAs' CRLs, PEM (already checked).
        cafile: The trusted device CAs and the root, PEM (default: the home's device CA and
            root; broker/_trust.py writes ``trust.d`` and passes its own).

    Raises:
        Config: A file cannot be read or written, or the broker's user does not exist.
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
    owner = broker_owner(config.run_as)
    _prepare_directories(config, owner)
    admin = load_or_create_admin(p.admin_secret)
    # OpenSSL needs a self-signed anchor: the device CA alone would not verify (no
    # PARTIAL_CHAIN); the manufacturing CA is left out so IDevIDs never chain here.
    # Root keeps what Mosquitto only reads (it could otherwise rewrite its own configuration,
    # which is parsed as root at a restart); the broker's user owns only its key (0600) and
    # what is in run/.
    conf = render_mosquitto_conf(config, view=view, guard=guard, dynsec=dynsec)
    files: list[tuple[Path, bytes, int, Owner | None]] = [
        (p.cafile, cafile or p.device_ca.read_bytes() + p.root_ca.read_bytes(), 0o644, None),
        (p.crlfile, crl, 0o644, None),
        (p.certfile, p.tls_cert.read_bytes(), 0o644, None),
        (p.keyfile, p.tls_key.read_bytes(), 0o600, owner),
        (p.acl, render_acl(config).encode(), 0o644, None),
        (p.conf, conf.encode(), 0o644, None),
        (p.dynsec_state, render_dynsec_state(admin.password).encode(), 0o600, owner),
    ]
    for path, data, mode, file_owner in files:
        write_atomic(path, data, mode=mode, owner=file_owner)
    p.admin_socket.unlink(missing_ok=True)
    return admin
