"""Settings of a server home, read from and written to ``DIR/trustfleet.toml``.

Relative paths in the file are relative to the home directory. Nothing here runs at import:
call :func:`load_server_settings`. The file is written from the models
(:func:`save_server_settings`, :func:`update_server_settings`), each field's description
becoming its comment.
"""

from __future__ import annotations

from trustfleet.settings.lifecycle import LifecycleSettings
from trustfleet.settings.lwm2m import Lwm2mSettings
from trustfleet.settings.monitoring import MonitoringSettings, SyslogSettings, WebhookSettings
from trustfleet.settings.operations import (
    AttestationSettings,
    CampaignSettings,
    IngestSettings,
    OtaSettings,
    SupervisionSettings,
)
from trustfleet.settings.sections import (
    ApiSettings,
    BrokerSettings,
    CaSettings,
    KeystoreSettings,
    PkiSettings,
    StoreSettings,
)
from trustfleet.settings.server import (
    CA_NAMES,
    CONFIG_FILE,
    ServerSettings,
    load_server_settings,
    save_server_settings,
    update_server_settings,
)
from trustfleet.settings.supply_chain import SupplyChainSettings

__all__ = [
    "CA_NAMES",
    "CONFIG_FILE",
    "ApiSettings",
    "AttestationSettings",
    "BrokerSettings",
    "CaSettings",
    "CampaignSettings",
    "IngestSettings",
    "KeystoreSettings",
    "LifecycleSettings",
    "Lwm2mSettings",
    "MonitoringSettings",
    "OtaSettings",
    "PkiSettings",
    "ServerSettings",
    "StoreSettings",
    "SupervisionSettings",
    "SupplyChainSettings",
    "SyslogSettings",
    "WebhookSettings",
    "load_server_settings",
    "save_server_settings",
    "update_server_settings",
]
