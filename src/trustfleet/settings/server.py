"""The whole ``trustfleet.toml`` of a server home: its model, and reading, writing, changing it.

Relative paths in the file are relative to the home directory. Nothing here runs at import:
call :func:`load_server_settings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trustfleet.configfile import ConfigFile, ConfigModel, check_loaded_code
from trustfleet.errors import Config
from trustfleet.settings import operations, sections
from trustfleet.settings.lifecycle import LifecycleSettings
from trustfleet.settings.lwm2m import Lwm2mSettings
from trustfleet.settings.monitoring import MonitoringSettings
from trustfleet.settings.rabbitmq import RabbitSettings
from trustfleet.settings.supply_chain import SupplyChainSettings

__all__ = [
    "CA_NAMES",
    "CONFIG_FILE",
    "ServerSettings",
    "load_server_settings",
    "save_server_settings",
    "update_server_settings",
]

CA_NAMES = ("root", "manufacturing", "device")
CONFIG_FILE = "trustfleet.toml"
_CA_NAME = re.compile(r"(root|manufacturing|device)(-[1-9][0-9]{0,5})?")
"""A CA's name: its kind, then ``-<n>`` for a later generation (``device-2``; api.md)."""


class ServerSettings(ConfigModel):
    """Everything a server process needs, with paths resolved against ``home``."""

    home: Path
    api: sections.ApiSettings = sections.ApiSettings()
    broker: sections.BrokerSettings = sections.BrokerSettings()
    store: sections.StoreSettings = sections.StoreSettings()
    keystore: sections.KeystoreSettings = sections.KeystoreSettings()
    pki: sections.PkiSettings = sections.PkiSettings()
    operators: sections.OperatorSettings = sections.OperatorSettings()
    campaigns: operations.CampaignSettings = operations.CampaignSettings()
    ota: operations.OtaSettings = operations.OtaSettings()
    attestation: operations.AttestationSettings = operations.AttestationSettings()
    audit: operations.AuditSettings = operations.AuditSettings()
    ingest: operations.IngestSettings = operations.IngestSettings()
    supervision: operations.SupervisionSettings = operations.SupervisionSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    supply_chain: SupplyChainSettings = SupplyChainSettings()
    lwm2m: Lwm2mSettings = Lwm2mSettings()
    rabbitmq: RabbitSettings = RabbitSettings()
    ca: dict[str, sections.CaSettings]
    """The CAs (root, manufacturing, device, and later generations such as device-2): each key
    as an RFC 7512 URI (with pin-source) and its certificate."""

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


def _check(path: Path, settings: ServerSettings) -> None:
    """Every CA has its section; the PKCS#11 module and SoftHSM2 configuration are trusted."""
    lacking = [name for name in CA_NAMES if name not in settings.ca]
    if lacking:
        raise Config(f"{path}: no [ca.{lacking[0]}] section", hint="restore it from a backup")
    odd = [name for name in settings.ca if not _CA_NAME.fullmatch(name)]
    if odd:
        raise Config(
            f"{path}: [ca.{odd[0]}] is not a CA name",
            hint="a CA is root, manufacturing or device, or a later one such as device-2",
            code="config.ca.name",
        )
    check_loaded_code(settings.keystore.module, settings.path(settings.keystore.softhsm_conf))


_FILE = ConfigFile(
    model=ServerSettings,
    name=CONFIG_FILE,
    folder_field="home",
    header=(
        "TrustFleet server configuration. Paths are relative to this file's directory.",
        "PINs are never written here: each key URI names its PIN file (mode 0600) with",
        "pin-source (RFC 7512); 'env:NAME' instead of a path reads an environment variable.",
    ),
    what=("the server home", "the configuration file"),
    absent=("no server home at {folder}", "create one with 'trustfleet server init --home DIR'"),
    invalid_hint="see the comments in trustfleet.toml for the allowed values",
    check=_check,
)


def load_server_settings(home: Path) -> ServerSettings:
    """Read and check ``home/trustfleet.toml``.

    The home (and the folders above it), the file, the SoftHSM2 configuration and an explicit
    ``[keystore] module`` (and the folders above it) must be owned by root or this user and
    not writable by group or others: a process that may run as root loads that module.

    Raises:
        Config: The file is missing, is not TOML, or has a wrong or unknown setting; or one of
            those paths could be changed by someone else (code ``config.path.unsafe``).
    """
    return _FILE.load(home)


def save_server_settings(settings: ServerSettings) -> Path:
    """Write ``settings`` to ``settings.home/trustfleet.toml`` (atomically) and return its path.

    The file is rendered from the model by tomli-w, with a comment from each field's
    description; relative paths stay relative to the home.
    """
    return _FILE.save(settings)


def update_server_settings(home: Path, changes: Mapping[str, Mapping[str, Any]]) -> ServerSettings:
    """Load ``home/trustfleet.toml``, apply ``{"section": {"key": value}}``, check, save.

    Example: ``update_server_settings(home, {"campaigns": {"tick_s": 0.2}})``; for the CAs,
    ``{"ca": {"root": {"cert": "public/root-ca.pem"}}}``.

    Raises:
        Config: The file cannot be loaded; or an unknown section or key, or a wrong value
            (nothing is written then).
    """
    return _FILE.update(home, changes)
