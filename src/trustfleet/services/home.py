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

Offline tokens (in the offline folder, not in the home; their PINs are with custodians):
``tf-root`` holds only the root CA key, ``tf-tuf-root-1..N`` one TUF root key each.
Home tokens: ``tf-factory`` the manufacturing CA key,
``tf-service`` the device CA key, the MQTT service key ``svc-ingest``, the audit log's
checkpoint key ``audit-log`` (Ed25519; its verifier key in public/audit-log.vkey) and the online
TUF keys (``tuf-snapshot``, ``tuf-timestamp``); ``tf-release`` the TUF targets key and the
boot key (docs/ota.md).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from trustfleet.audit.context import current_operator
from trustfleet.audit.note import ED25519, verifier_key
from trustfleet.errors import Conflict, InvalidInput
from trustfleet.fileio import (
    DIR_MODE,
    PRIVATE_DIR_MODE,
    make_dirs,
    removed_on_failure,
    write_atomic,
)
from trustfleet.keystore import (
    PinSource,
    TokenSession,
    find_module,
    open_token,
    write_softhsm_conf,
)
from trustfleet.pki import IssuerContext, issue_service_certificate
from trustfleet.services._certs import record_certificate
from trustfleet.services._home_cas import HOME_CA_TOKENS, MadeCas, make_cas, make_server_certs
from trustfleet.services._lwm2m_psk import PSK_WRAP_LABEL
from trustfleet.services._offline import (
    ROOT_CA_LABEL,
    ROOT_CA_TOKEN,
    OfflineFolder,
    default_offline_dir,
    new_offline_folders,
    new_offline_pins,
    write_pins,
)
from trustfleet.services._passwords import generate_password
from trustfleet.services.operators import add_first_admin
from trustfleet.services.ota import init_repository
from trustfleet.settings import OtaSettings, ServerSettings, save_server_settings
from trustfleet.store import UnitOfWork, create_engine, migrate

__all__ = ["AUDIT_VKEY_FILE", "HomeOptions", "init_server_home"]

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
    offline: Path | None = None  # the offline folder (default: <home>-offline beside the home)
    pins_out: Path | None = None  # where the offline tokens' PINs are written (0600 files)
    offline_pins: Mapping[str, str] | None = field(default=None, repr=False)
    """The offline tokens' PINs by file name (``tf-root.pin``, ``tf-root.so-pin``…; see
    ``new_offline_pins``); made and written to ``pins_out`` when not given."""


def init_server_home(home: Path, *, options: HomeOptions, now: datetime) -> ServerSettings:
    """Create a new server home; on any failure nothing of it is left behind.

    The root CA key and the TUF root keys go to tokens in the offline folder
    (``options.offline``), whose PINs are ``options.offline_pins`` (written to
    ``options.pins_out`` if given); the home keeps none of them (docs/lifecycle.md).

    Raises:
        Conflict: ``home`` exists and is not empty.
        InvalidInput: A name or address is malformed; ``home`` is a link, a file, or cannot
            be created (code ``home.path.invalid``); the offline or PIN folder is not new or
            is inside the home (``offline.path.invalid``); neither PINs nor a PIN folder
            were given (``home.pins.missing``).
    """
    _check_new_home(home)
    ips = _parse_ips(options.ip_addresses)
    offline = options.offline or default_offline_dir(home)
    pins = _offline_pins(options)
    created = not home.exists()
    try:
        make_dirs(home, mode=DIR_MODE)
    except OSError as exc:
        raise InvalidInput(
            f"cannot create the server home {home}: {exc.strerror or exc}",
            hint="choose a folder you may create", code="home.path.invalid",
        ) from exc  # fmt: skip
    os.chmod(home, DIR_MODE)  # an existing empty folder too: the home is checked at each start
    with (
        removed_on_failure(home, created=created),
        new_offline_folders(home, offline=offline, pins_out=options.pins_out) as folder,
    ):
        settings = _build_home(
            home.resolve(), options=options, ips=ips, offline=folder, pins=pins, now=now
        )
        if options.pins_out is not None:
            write_pins(options.pins_out, pins)
        return settings


def _offline_pins(options: HomeOptions) -> Mapping[str, str]:
    if options.offline_pins is not None:
        return options.offline_pins
    if options.pins_out is None:
        raise InvalidInput(
            "the offline tokens' PINs must go somewhere",
            hint="give a folder for them with --pins-out", code="home.pins.missing",
        )  # fmt: skip
    return new_offline_pins(OtaSettings().root_keys)


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
    offline: OfflineFolder,
    pins: Mapping[str, str],
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
    settings = _settings(home, options=options, module=options.module or "", offline=offline)
    cas = make_cas(settings, module=module, conf=conf, offline=offline, offline_pins=pins, now=now)
    token = HOME_CA_TOKENS["device"]
    pin = PinSource.parse(f"file:secrets/{token}.pin", base_dir=home).read()
    with open_token(module=module, label=token, pin=pin, conf=conf) as session:
        device = IssuerContext(
            cert=cas.certs["device"], key=session.ec_private_key(label="device-ca"),
            crl_url=settings.crl_url("device"), ocsp_url=settings.ocsp_url(),
        )  # fmt: skip
        service = _service_identity(
            home, settings=settings, session=session, device=device, now=now
        )
        dns = tuple(dict.fromkeys(("localhost", *options.dns_names)))
        servers = make_server_certs(settings=settings, issuer=device, dns=dns, ips=ips, now=now)
    _finish_home(
        home, settings=settings, options=options, cas=cas, servers={**servers, "service": service},
        offline=offline, pins=pins, now=now,
    )  # fmt: skip
    return settings


def _service_identity(
    home: Path,
    *,
    settings: ServerSettings,
    session: TokenSession,
    device: IssuerContext,
    now: datetime,
) -> x509.Certificate:
    """The service's MQTT key and certificate, the audit log's key and the LwM2M PSK wrapping
    key, in the service token."""
    service_key = session.generate_ec_key(_SERVICE_KEY_LABEL, curve="P-256")
    service = issue_service_certificate(
        issuer=device,
        public_key=service_key.public_key(),
        identity=settings.broker.service_identity,
        organization=settings.pki.organization,
        now=now,
    )
    write_atomic(
        settings.path(settings.broker.service_cert),
        service.public_bytes(serialization.Encoding.PEM),
    )
    audit_key = session.generate_ed25519_key(_AUDIT_KEY_LABEL)
    vkey = verifier_key(settings.audit.origin, ED25519, audit_key.public_bytes_raw())
    write_atomic(home / AUDIT_VKEY_FILE, (vkey + "\n").encode("ascii"))
    session.generate_aes_key(PSK_WRAP_LABEL)  # LwM2M PSKs at rest (ADR 0022)
    return service


def _finish_home(
    home: Path,
    *,
    settings: ServerSettings,
    options: HomeOptions,
    cas: MadeCas,
    servers: dict[str, x509.Certificate],
    offline: OfflineFolder,
    pins: Mapping[str, str],
    now: datetime,
) -> None:
    bundle = b"".join(
        cas.certs[name].public_bytes(serialization.Encoding.PEM)
        for name in ("root", "manufacturing", "device")
    )
    write_atomic(home / "public" / "ca-bundle.pem", bundle)
    engine = create_engine(settings.store_url())
    try:
        migrate(engine)
        _record(UnitOfWork(engine), cas=cas, servers=servers, now=now)
        password = options.admin_password or generate_password()  # see create_server_home
        add_first_admin(UnitOfWork(engine), settings.operators, password=password, now=now)
    finally:
        engine.dispose()
    # OTA tokens and keys (root keys in the offline folder), the TUF repository (docs/ota.md)
    init_repository(settings, offline=offline, offline_pins=pins, now=now)
    save_server_settings(settings)  # rendered from the model by tomli-w


def _settings(
    home: Path, *, options: HomeOptions, module: str, offline: OfflineFolder
) -> ServerSettings:
    host_for_url = (
        "localhost" if options.api_host in ("127.0.0.1", "localhost", "::1") else options.api_host
    )
    cas = {
        name: {
            "key": f"pkcs11:token={token};object={name}-ca;type=private"
            f"?pin-source=file:secrets/{token}.pin",
            "cert": f"public/{name}-ca.pem",
        }
        for name, token in HOME_CA_TOKENS.items()
    }
    # No pin-source: the root CA is offline (its PIN is with its custodian; Runtime.is_offline).
    cas["root"] = {
        "key": f"pkcs11:token={ROOT_CA_TOKEN};object={ROOT_CA_LABEL};type=private",
        "cert": "public/root-ca.pem",
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
        "lifecycle": {"offline_dir": str(offline.path)},  # a hint for ceremonies only
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


def _record(
    uow: UnitOfWork, *, cas: MadeCas, servers: dict[str, x509.Certificate], now: datetime
) -> None:
    with uow.begin() as tx:
        for cert in cas.certs.values():
            record_certificate(tx, cert, issuer="root", kind="ca", device_id=None, now=now)
        for cert in servers.values():
            record_certificate(tx, cert, issuer="device", kind="server", device_id=None, now=now)
        tx.crls.put(
            issuer="root", crl_number=1, this_update=now, next_update=cas.root_crl_next_update,
            der=cas.root_crl,
        )  # fmt: skip
        tx.events.append(
            type="server.initialized",
            actor=current_operator(),
            subject="server",
            details={"cas": sorted(cas.certs), "servers": sorted(servers)},
            now=now,
        )
