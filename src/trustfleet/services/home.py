"""Creating a server home: tokens, the CA hierarchy, TLS server certificates, store, config.

Layout of a home::

    trustfleet.toml            self-documenting configuration
    tokens/softhsm2.conf       SoftHSM2 configuration of this home (tokens in tokens/store/)
    secrets/ (0700)            token PINs and the two TLS server keys, each mode 0600
    public/                    ca-bundle.pem and each CA certificate: safe to publish
    tls/                       server certificate chains (API, broker), svc-ingest.pem
    db/ (0700)                 the SQLite store (default)
    ota/                       the OTA repository (ota/repo, 0700 for its lock) and staging (0700)
    audit/log/                 the audit log published as C2SP tlog-tiles (docs/audit.md)

Every file and folder gets an explicit mode whatever the umask (docs/architecture.md).

Tokens: ``tf-root`` holds only the root CA key, ``tf-factory`` the manufacturing CA key,
``tf-service`` the device CA key, the MQTT service key ``svc-ingest``, the audit log's
checkpoint key ``audit-log`` (Ed25519; its verifier key in public/audit-log.vkey) and the online
TUF keys (``tuf-snapshot``, ``tuf-timestamp``); ``tf-tuf-root-1..3`` one TUF root key each,
``tf-release`` the TUF targets key and the boot key (docs/ota.md).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from trustfleet.audit.context import current_operator
from trustfleet.audit.note import ED25519, verifier_key
from trustfleet.errors import Conflict, InvalidInput
from trustfleet.fileio import (
    DIR_MODE,
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    make_dirs,
    removed_on_failure,
    write_atomic,
)
from trustfleet.keystore import (
    TokenSession,
    find_module,
    generate_pin,
    init_token,
    open_token,
    write_pin_file,
    write_softhsm_conf,
)
from trustfleet.pki import (
    DEVICE_CA,
    MANUFACTURING_CA,
    IssuerContext,
    issue_ca,
    issue_server_certificate,
    issue_service_certificate,
    make_root_ca,
)
from trustfleet.services._certs import record_certificate
from trustfleet.services._passwords import generate_password
from trustfleet.services.operators import add_first_admin
from trustfleet.services.ota import init_repository
from trustfleet.settings import ServerSettings, save_server_settings
from trustfleet.store import UnitOfWork, create_engine, migrate

__all__ = ["AUDIT_VKEY_FILE", "HomeOptions", "init_server_home"]

_TOKENS = {"root": "tf-root", "manufacturing": "tf-factory", "device": "tf-service"}
_CA_CURVES = {"root": "P-384", "manufacturing": "P-256", "device": "P-256"}
_CA_NAMES = {"manufacturing": "Manufacturing CA", "device": "Device CA"}
_SERVICE_KEY_LABEL = "svc-ingest"  # the object in [broker] service_key's default URI
_AUDIT_KEY_LABEL = "audit-log"  # the object in [audit] key's default URI
AUDIT_VKEY_FILE = "public/audit-log.vkey"
_OPTIONS = {  # the settings `server init` takes from options, for its messages
    "pki.organization": "--name",
    "api.port": "--api-port",
    "broker.port": "--mqtt-port",
    "store.url": "--store-url",
}


@dataclass(frozen=True)
class HomeOptions:
    """What ``trustfleet server init`` was asked for."""

    organization: str = "TrustFleet"
    api_host: str = "127.0.0.1"
    api_port: int = 8443
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    store_url: str | None = None
    module: str | None = None
    mqtt_port: int = 8883
    admin_password: str | None = field(default=None, repr=False)  # the first admin's (or made)


def init_server_home(home: Path, *, options: HomeOptions, now: datetime) -> ServerSettings:
    """Create a new server home; on any failure nothing of it is left behind.

    Raises:
        Conflict: ``home`` exists and is not empty.
        InvalidInput: A name or address is malformed; ``home`` is a link, a file, or cannot
            be created (code ``home.path.invalid``).
    """
    _check_new_home(home)
    ips = _parse_ips(options.ip_addresses)
    created = not home.exists()
    try:
        make_dirs(home, mode=DIR_MODE)
    except OSError as exc:
        raise InvalidInput(
            f"cannot create the server home {home}: {exc.strerror or exc}",
            hint="choose a folder you may create", code="home.path.invalid",
        ) from exc  # fmt: skip
    os.chmod(home, DIR_MODE)  # an existing empty folder too: the home is checked at each start
    with removed_on_failure(home, created=created):
        return _build_home(home.resolve(), options=options, ips=ips, now=now)


def _check_new_home(home: Path) -> None:
    """A new home is a new or empty real folder: never a link (it would be followed)."""
    if home.is_symlink() or (home.exists() and not home.is_dir()):
        raise InvalidInput(
            f"{home} is {'a symbolic link' if home.is_symlink() else 'not a folder'}",
            hint="give a new folder for the server home", code="home.path.invalid",
        )  # fmt: skip
    if home.exists() and any(home.iterdir()):
        raise Conflict(
            f"{home} exists and is not empty; refusing to overwrite a server home",
            hint="choose a new directory",
        )


def _parse_ips(values: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    ips = [ipaddress.ip_address("127.0.0.1")]
    for value in values:
        try:
            ip = ipaddress.ip_address(value)
        except ValueError as exc:
            raise InvalidInput(
                f"'{value}' is not an IP address", hint="e.g. --ip 10.0.0.5"
            ) from exc
        if ip not in ips:
            ips.append(ip)
    return ips


def _build_home(
    home: Path,
    *,
    options: HomeOptions,
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: datetime,
) -> ServerSettings:
    for sub, mode in (
        ("secrets", PRIVATE_DIR_MODE),
        ("tokens", PRIVATE_DIR_MODE),
        ("public", DIR_MODE),
        ("tls", DIR_MODE),
        ("db", PRIVATE_DIR_MODE),
        ("ota", DIR_MODE),
        ("audit", DIR_MODE),
    ):
        (home / sub).mkdir(mode=mode)
        os.chmod(home / sub, mode)
    module = find_module(options.module)
    conf = write_softhsm_conf(
        home / "tokens" / "softhsm2.conf", token_dir=home / "tokens" / "store"
    )
    settings = _settings(home, options=options, module=options.module or "")
    sessions: list[TokenSession] = []
    try:
        issuers = _make_cas(
            home, settings=settings, module=module, conf=conf, sessions=sessions, now=now
        )
        # The service's MQTT key lives in the service token next to the device CA key.
        service_key = sessions[list(_TOKENS).index("device")].generate_ec_key(
            _SERVICE_KEY_LABEL, curve="P-256"
        )
        service = issue_service_certificate(
            issuer=issuers["device"],
            public_key=service_key.public_key(),
            identity=settings.broker.service_identity,
            organization=settings.pki.organization,
            now=now,
        )
        write_atomic(
            settings.path(settings.broker.service_cert),
            service.public_bytes(serialization.Encoding.PEM),
        )
        audit_key = sessions[list(_TOKENS).index("device")].generate_ed25519_key(_AUDIT_KEY_LABEL)
        vkey = verifier_key(settings.audit.origin, ED25519, audit_key.public_bytes_raw())
        write_atomic(home / AUDIT_VKEY_FILE, (vkey + "\n").encode("ascii"))
        _finish_home(
            home, settings=settings, options=options, issuers=issuers, ips=ips, service=service,
            now=now,
        )  # fmt: skip
    finally:
        for session in sessions:
            session.close()
    return settings


def _finish_home(
    home: Path,
    *,
    settings: ServerSettings,
    options: HomeOptions,
    issuers: dict[str, IssuerContext],
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    service: x509.Certificate,
    now: datetime,
) -> None:
    dns = tuple(dict.fromkeys(("localhost", *options.dns_names)))
    servers = _make_server_certs(
        settings=settings, issuer=issuers["device"], dns=dns, ips=ips, now=now
    )
    bundle = b"".join(
        issuers[name].cert.public_bytes(serialization.Encoding.PEM)
        for name in ("root", "manufacturing", "device")
    )
    write_atomic(home / "public" / "ca-bundle.pem", bundle)
    engine = create_engine(settings.store_url())
    try:
        migrate(engine)
        _record(
            UnitOfWork(engine), issuers=issuers, servers={**servers, "service": service}, now=now
        )
        password = options.admin_password or generate_password()  # see create_server_home
        add_first_admin(UnitOfWork(engine), settings.operators, password=password, now=now)
    finally:
        engine.dispose()
    init_repository(settings, now=now)  # OTA tokens and keys, the TUF repository (docs/ota.md)
    save_server_settings(settings)  # rendered from the model by tomli-w


def _settings(home: Path, *, options: HomeOptions, module: str) -> ServerSettings:
    host_for_url = (
        "localhost" if options.api_host in ("127.0.0.1", "localhost", "::1") else options.api_host
    )
    cas = {
        name: {
            "key": f"pkcs11:token={token};object={name}-ca;type=private"
            f"?pin-source=file:secrets/{token}.pin",
            "cert": f"public/{name}-ca.pem",
        }
        for name, token in _TOKENS.items()
    }
    raw: dict[str, Any] = {
        "home": home,
        "api": {
            "host": options.api_host,
            "port": options.api_port,
            "public_url": f"https://{host_for_url}:{options.api_port}",
        },
        "pki": {"organization": options.organization},
        "broker": {"port": options.mqtt_port},
        "ca": cas,
        # A log's origin names it uniquely (C2SP tlog-checkpoint): host and a random part.
        "audit": {"origin": f"{host_for_url}/audit/{secrets.token_hex(4)}"},
    }
    if options.store_url:
        raw["store"] = {"url": options.store_url}
    if module:
        raw["keystore"] = {"module": module}
    try:
        return ServerSettings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(
            f"{_OPTIONS.get(where, where)}: {first['msg'].removeprefix('Value error, ')}",
            hint="see 'trustfleet server init --help'", code="home.option.invalid",
        ) from exc  # fmt: skip


def _make_cas(
    home: Path,
    *,
    settings: ServerSettings,
    module: Path,
    conf: Path,
    sessions: list[TokenSession],
    now: datetime,
) -> dict[str, IssuerContext]:
    keys: dict[str, ec.EllipticCurvePrivateKey] = {}
    for name, token in _TOKENS.items():
        pin = generate_pin()
        write_pin_file(home / "secrets" / f"{token}.pin", pin)
        so_pin = generate_pin()
        write_pin_file(home / "secrets" / f"{token}.so-pin", so_pin)
        init_token(module=module, conf=conf, label=token, so_pin=so_pin, user_pin=pin)
        session = open_token(module=module, label=token, pin=pin, conf=conf)
        sessions.append(session)
        keys[name] = session.generate_ec_key(f"{name}-ca", curve=_CA_CURVES[name])
    org = settings.pki.organization
    root_cert = make_root_ca(key=keys["root"], organization=org, now=now)
    root = IssuerContext(
        cert=root_cert, key=keys["root"], crl_url=settings.crl_url("root"), ocsp_url=None
    )
    issuers = {"root": root}
    for name, profile in (("manufacturing", MANUFACTURING_CA), ("device", DEVICE_CA)):
        cert = issue_ca(
            issuer=root,
            public_key=keys[name].public_key(),
            common_name=f"{org} {_CA_NAMES[name]}",
            organization=org,
            profile=profile,
            now=now,
        )
        issuers[name] = IssuerContext(
            cert=cert,
            key=keys[name],
            crl_url=settings.crl_url(name),
            ocsp_url=settings.ocsp_url() if name == "device" else None,
        )
    for name, ctx in issuers.items():
        write_atomic(
            settings.path(settings.ca[name].cert), ctx.cert.public_bytes(serialization.Encoding.PEM)
        )
    return issuers


def _make_server_certs(
    *,
    settings: ServerSettings,
    issuer: IssuerContext,
    dns: tuple[str, ...],
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
    now: datetime,
) -> dict[str, x509.Certificate]:
    certs: dict[str, x509.Certificate] = {}
    for name, cert_rel, key_rel in (
        ("api", settings.api.tls_cert, settings.api.tls_key),
        ("broker", settings.broker.tls_cert, settings.broker.tls_key),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(settings.path(key_rel), key_pem)
        cert = issue_server_certificate(
            issuer=issuer,
            public_key=key.public_key(),
            common_name=f"trustfleet-{name}",
            dns_names=list(dns),
            ip_addresses=ips,
            now=now,
            validity=timedelta(days=397),
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + issuer.cert.public_bytes(
            serialization.Encoding.PEM
        )
        write_atomic(settings.path(cert_rel), chain)
        certs[name] = cert
    return certs


def _write_private(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), PRIVATE_FILE_MODE)
        fh.write(data)


def _record(
    uow: UnitOfWork,
    *,
    issuers: dict[str, IssuerContext],
    servers: dict[str, x509.Certificate],
    now: datetime,
) -> None:
    parents = {"root": "root", "manufacturing": "root", "device": "root"}
    with uow.begin() as tx:
        for name, ctx in issuers.items():
            record_certificate(
                tx, ctx.cert, issuer=parents[name], kind="ca", device_id=None, now=now
            )
        for cert in servers.values():
            record_certificate(tx, cert, issuer="device", kind="server", device_id=None, now=now)
        tx.events.append(
            type="server.initialized",
            actor=current_operator(),
            subject="server",
            details={"cas": sorted(issuers), "servers": sorted(servers)},
            now=now,
        )
