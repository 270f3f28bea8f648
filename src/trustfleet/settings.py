"""Settings of a server home, read from ``DIR/trustfleet.toml``.

Relative paths in the file are relative to the home directory. Nothing here runs at import:
call :func:`load_server_settings`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustfleet.errors import Config

__all__ = [
    "CA_NAMES",
    "ApiSettings",
    "BrokerSettings",
    "CaSettings",
    "KeystoreSettings",
    "PkiSettings",
    "ServerSettings",
    "StoreSettings",
    "load_server_settings",
    "render_server_toml",
]

CA_NAMES = ("root", "manufacturing", "device")
CONFIG_FILE = "trustfleet.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Model):
    """The HTTPS API (EST, CRL, OCSP)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    public_url: str = "https://localhost:8443"
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert: str = "tls/api-chain.pem"
    tls_key: str = "secrets/api-tls.key"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    handshake_timeout_s: float = Field(default=10.0, gt=0)


class BrokerSettings(_Model):
    """The MQTT broker's TLS files (the broker itself arrives with Foundation II)."""

    tls_cert: str = "tls/broker-chain.pem"
    tls_key: str = "secrets/broker-tls.key"


class StoreSettings(_Model):
    """Where the store lives: a SQLAlchemy URL; ``sqlite:///db/…`` is relative to the home."""

    url: str = "sqlite:///db/trustfleet.sqlite3"


class KeystoreSettings(_Model):
    """The PKCS#11 module and, for SoftHSM2, its configuration file."""

    module: str = ""
    softhsm_conf: str = "tokens/softhsm2.conf"


class CaSettings(_Model):
    """One CA: its key as an RFC 7512 URI (with ``pin-source``) and its certificate."""

    key: str
    cert: str


class PkiSettings(_Model):
    """Certificate profiles and revocation timing."""

    organization: str = "TrustFleet"
    ldevid_validity_days: int = Field(default=30, ge=1, le=3650)
    idevid_validity_days: int = Field(default=7300, ge=1, le=36500)
    crl_validity_hours: int = Field(default=24, ge=1, le=24 * 365)
    crl_refresh_margin_hours: int = Field(default=6, ge=0)
    ocsp_validity_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)


class ServerSettings(_Model):
    """Everything a server process needs, with paths resolved against ``home``."""

    home: Path
    api: ApiSettings = ApiSettings()
    broker: BrokerSettings = BrokerSettings()
    store: StoreSettings = StoreSettings()
    keystore: KeystoreSettings = KeystoreSettings()
    pki: PkiSettings = PkiSettings()
    ca: dict[str, CaSettings]

    def path(self, relative: str) -> Path:
        """Resolve a path from the file against the home directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.home / candidate

    def store_url(self) -> str:
        """The store URL with a relative SQLite path made absolute."""
        prefix = "sqlite:///"
        url = self.store.url
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(self.home / url[len(prefix) :])
        return url

    def crl_url(self, ca: str) -> str:
        """Where the CRL of a CA is published."""
        return f"{self.api.public_url.rstrip('/')}/crl/{ca}.crl"

    def ocsp_url(self) -> str:
        """Where the OCSP responder answers."""
        return f"{self.api.public_url.rstrip('/')}/ocsp"


def load_server_settings(home: Path) -> ServerSettings:
    """Read and check ``home/trustfleet.toml``.

    Raises:
        Config: The file is missing, is not TOML, or has a wrong or unknown setting.
    """
    path = home / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise Config(
            f"no server home at {home} (missing {CONFIG_FILE})",
            hint="create one with 'trustfleet server init --home DIR'",
        ) from exc
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Config(f"cannot read {path}: {exc}", hint="fix the file's TOML syntax") from exc
    try:
        settings = ServerSettings(home=home.resolve(), **raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Config(
            f"{path}: setting '{where}': {first['msg']}",
            hint="see the comments in trustfleet.toml for the allowed values",
        ) from exc
    missing = [name for name in CA_NAMES if name not in settings.ca]
    if missing:
        raise Config(f"{path}: no [ca.{missing[0]}] section", hint="restore it from a backup")
    return settings


def render_server_toml(settings: ServerSettings) -> str:
    """The text of a self-documenting ``trustfleet.toml`` for these settings."""
    api, pki = settings.api, settings.pki
    lines = [
        "# TrustFleet server configuration. Paths are relative to this file's directory.",
        "# PINs are never written here: each key URI names its PIN file (mode 0600) with",
        "# pin-source (RFC 7512); 'env:NAME' instead of a path reads an environment variable.",
        "",
        "[api]",
        "# HTTPS (TLS 1.3 only): EST enrollment, CRLs and OCSP.",
        f'host = "{api.host}"',
        f"port = {api.port}",
        "# Base URL written into certificates (CRL distribution point, OCSP).",
        f'public_url = "{api.public_url}"',
        "# Worker processes sharing the port (SO_REUSEPORT).",
        f"workers = {api.workers}",
        f'tls_cert = "{api.tls_cert}"  # server certificate + device CA',
        f'tls_key = "{api.tls_key}"   # the one key on disk: mode 0600',
        f"max_body_bytes = {api.max_body_bytes}      # larger request bodies get 413",
        f"max_header_bytes = {api.max_header_bytes}",
        f"idle_timeout_s = {api.idle_timeout_s}",
        f"handshake_timeout_s = {api.handshake_timeout_s}",
        "",
        "[broker]",
        "# TLS files of the MQTT broker (used from Foundation II on).",
        f'tls_cert = "{settings.broker.tls_cert}"',
        f'tls_key = "{settings.broker.tls_key}"',
        "",
        "[store]",
        "# SQLAlchemy URL. SQLite (WAL) by default; for scale-out use",
        '# "postgresql+psycopg://user@host:5432/trustfleet".',
        f'url = "{settings.store.url}"',
        "",
        "[keystore]",
        '# PKCS#11 module; empty means "find SoftHSM2".',
        f'module = "{settings.keystore.module}"',
        "# SoftHSM2 configuration of this home (its token directory is tokens/store).",
        f'softhsm_conf = "{settings.keystore.softhsm_conf}"',
        "",
        "[pki]",
        f'organization = "{pki.organization}"',
        f"ldevid_validity_days = {pki.ldevid_validity_days}   # operational certificates",
        f"idevid_validity_days = {pki.idevid_validity_days}  # factory identities",
        f"crl_validity_hours = {pki.crl_validity_hours}       # CRL nextUpdate - thisUpdate",
        f"crl_refresh_margin_hours = {pki.crl_refresh_margin_hours}  # reissue this long before",
        f"ocsp_validity_minutes = {pki.ocsp_validity_minutes}",
    ]
    for name in CA_NAMES:
        ca = settings.ca[name]
        lines += ["", f"[ca.{name}]", f'key = "{ca.key}"', f'cert = "{ca.cert}"']
    return "\n".join(lines) + "\n"
