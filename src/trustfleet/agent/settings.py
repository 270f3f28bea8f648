"""Device settings, read from ``DEVDIR/device.toml`` (written by the factory).

The schema is :mod:`trustfleet.configfile.device`, shared with the factory; this module adds
what the agent derives from it (the broker's host, the TUF URLs).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from trustfleet.configfile.device import (
    DEVICE_FILE,
    AgentSection,
    DeviceSettings,
    MqttSection,
    OtaSection,
    load_device_settings,
)
from trustfleet.errors import Config

__all__ = [
    "AgentSection",
    "DeviceSettings",
    "MqttSection",
    "OtaSection",
    "load_device_settings",
    "ota_urls",
    "require_mqtt",
]


def require_mqtt(settings: DeviceSettings) -> MqttSection:
    """The ``[mqtt]`` section, with ``host`` defaulted to the EST URL's host.

    Raises:
        Config: The file has no ``[mqtt]`` section.
    """
    mqtt = settings.mqtt
    if mqtt is None:
        raise Config(
            f"{settings.directory / DEVICE_FILE} has no [mqtt] section",
            hint="add '[mqtt]' with 'port = <broker device port>' (host defaults to the "
            "EST URL's host); see docs/agent.md",
            code="agent.settings.mqtt_missing",
        )
    if mqtt.host:
        return mqtt
    host = urlsplit(settings.server.est_url).hostname or ""
    return mqtt.model_copy(update={"host": host})


def ota_urls(settings: DeviceSettings) -> tuple[str, str]:
    """The TUF metadata and targets base URLs (defaults: on the EST URL's host and port)."""
    parts = urlsplit(settings.server.est_url)
    base = f"{parts.scheme}://{parts.netloc}"
    metadata = settings.ota.metadata_url or f"{base}/tuf/metadata/"
    targets = settings.ota.targets_url or f"{base}/tuf/targets/"
    return metadata, targets
