"""The device's ``device.toml``: its one schema, written by the factory and read by the agent.

Relative paths in the file are relative to the device folder. Each field's ``description`` is
the comment written above it in the file (:func:`save_device_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from trustfleet.configfile.files import ConfigFile
from trustfleet.configfile.loading import check_loaded_code
from trustfleet.configfile.rendering import ConfigModel

__all__ = [
    "DEVICE_FILE",
    "AgentSection",
    "DeviceSection",
    "DeviceSettings",
    "IdentitySection",
    "Lwm2mSection",
    "MonitoringSection",
    "MqttSection",
    "OtaSection",
    "ServerSection",
    "load_device_settings",
    "save_device_settings",
    "update_device_settings",
]

DEVICE_FILE = "device.toml"


class DeviceSection(ConfigModel):
    """Who the device is."""

    id: str
    model: str


class IdentitySection(ConfigModel):
    """Where the device's identity key and certificates are."""

    key: str
    """The identity key never leaves the device token; its PIN file is mode 0600."""
    module: str = ""
    """PKCS#11 module; empty means SoftHSM2."""
    softhsm_conf: str = "softhsm2.conf"
    idevid: str = "idevid.pem"
    """Factory identity (IEEE 802.1AR IDevID)."""
    ldevid: str = "ldevid.pem"
    """Operational certificate, written at enrollment."""


class ServerSection(ConfigModel):
    """How to reach the fleet service."""

    est_url: str
    trust_bundle: str = "ca-bundle.pem"
    timeout_s: float = 15.0

    @field_validator("est_url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL")
        return value.rstrip("/")


class MqttSection(ConfigModel):
    """The broker's device listener: TLS 1.3, this device's LDevID, topics tf/v1/d/<id>/.

    ``host`` defaults to the host of ``[server] est_url``; ``port`` has no default (the broker's
    device listener port is a deployment choice).
    """

    host: str = ""
    port: int = Field(ge=1, le=65535)
    protocol: Literal["5", "3.1.1"] = "5"
    """MQTT version the agent speaks: "5", or "3.1.1" for a broker without MQTT 5 (e.g. the
    MQTT plugin of RabbitMQ 3.10)."""
    fallback: list[str] = Field(default_factory=list, max_length=8)
    """Other addresses of the same broker ("host:port", e.g. the other nodes of a RabbitMQ
    cluster), tried in turn after failover_after_s without a connection; queued messages
    follow the device to the next one (nothing leaves the outbox before its PUBACK)."""
    failover_after_s: float = Field(default=10.0, gt=0, le=3600)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    """MQTT keep-alive interval."""
    telemetry_interval_s: float = Field(default=10.0, ge=0.2, le=86400)
    """How often the agent publishes telemetry, and a heartbeat (heartbeat_interval_s)."""
    heartbeat_interval_s: float = Field(default=30.0, ge=0.2, le=86400)
    queue_max_messages: int = Field(default=1000, ge=1, le=100_000)
    """Offline queue; when full the oldest is dropped."""
    max_in_flight: int = Field(default=10, ge=1, le=100)
    """Publications sent at once while connected; each leaves the outbox on its PUBACK."""
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Longest wait for a connection (TCP, TLS and CONNACK)."""
    ack_timeout_s: int = Field(default=30, ge=1, le=600)
    """Longest wait for the broker to acknowledge a publication or subscription."""
    backoff_initial_s: float = Field(default=1.0, ge=0.05, le=3600)
    """Reconnect: exponential backoff with full jitter, up to backoff_max_s."""
    backoff_max_s: float = Field(default=60.0, ge=0.05, le=86400)
    max_payload_bytes: int = Field(default=16384, ge=512, le=256 * 1024)

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttSection:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        for address in self.fallback:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"fallback entries are host:port, not {address[:80]!r}")
        return self

    def addresses(self) -> list[tuple[str, int]]:
        """Where the broker is: ``(host, port)`` first, then each fallback."""
        found = [(self.host, self.port)]
        for address in self.fallback:
            host, _, port = address.rpartition(":")
            found.append((host.strip("[]"), int(port)))
        return found


class AgentSection(ConfigModel):
    """How the agent behaves over time."""

    reenroll_at_fraction: float = Field(default=0.6667, gt=0, lt=1)
    """Re-enroll after this fraction (2/3) of the LDevID's lifetime."""
    reenroll_retry_s: float = Field(default=60.0, ge=1, le=86400)
    shutdown_flush_s: float = Field(default=5.0, ge=0, le=300)
    once_timeout_s: float = Field(default=30.0, gt=0, le=600)


class OtaSection(ConfigModel):
    """How the updater reaches the TUF repository, and the bounds of an update.

    ``metadata_url`` and ``targets_url`` default (when empty) to ``/tuf/metadata/`` and
    ``/tuf/targets/`` on the host and port of ``[server] est_url``.
    """

    metadata_url: str = ""
    targets_url: str = ""
    health_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_manifest_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    max_image_bytes: int = Field(default=1 << 30, ge=64 * 1024, le=16 << 30)
    max_root_bytes: int = Field(default=512 * 1024, ge=4096, le=16 << 20)
    max_timestamp_bytes: int = Field(default=16 * 1024, ge=1024, le=1 << 20)
    max_snapshot_bytes: int = Field(default=2 << 20, ge=4096, le=256 << 20)
    max_targets_bytes: int = Field(default=32 << 20, ge=4096, le=1 << 30)
    max_download_attempts: int = Field(default=3, ge=1, le=20)
    progress_reports: int = Field(default=4, ge=1, le=100)
    allowed_builders: list[str] = Field(default=[], max_length=16)
    """Builders (SLSA builder ids) whose releases this device installs: a release whose signed
    provenance names another builder is refused. Empty: any builder (written by the factory
    from the server's [supply_chain] allowed_builders of the model)."""
    max_provenance_bytes: int = Field(default=256 * 1024, ge=4096, le=16 << 20)

    @field_validator("metadata_url", "targets_url")
    @classmethod
    def _https_or_empty(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme != "https" or not parts.hostname):
            raise ValueError("must be an https:// URL")
        return value


MIN_METRICS_INTERVAL_S = 1
"""The floor of ``[monitoring] interval_s`` (the simulation reports every second)."""


class MonitoringSection(ConfigModel):
    """Security monitoring: a metrics report (AWS IoT Device Defender's shape) on
    tf/v1/d/<id>/metrics every interval_s (docs/agent.md, docs/monitoring.md)."""

    enabled: bool = True
    interval_s: int = Field(default=300, ge=MIN_METRICS_INTERVAL_S, le=86400)
    """The window of one report (Device Defender's minimum is 300 s)."""
    watched_files: list[str] = Field(default=[], max_length=32)
    """Files whose SHA-256 is reported (watched-files: path=sha256)."""
    auth_log: str = ""
    """A log of failed logins (e.g. /var/log/auth.log) read from where it was left; empty: none."""

    @field_validator("watched_files")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path or len(path) > 255 or any(ord(c) < 32 or c == "=" for c in path):
                raise ValueError(f"{path[:40]!r} is not a path to watch (1-255 characters, no '=')")
        return value


class Lwm2mSection(ConfigModel):
    """A constrained device speaking LwM2M over CoAP and DTLS instead of MQTT (docs/lwm2m.md).

    Written by 'factory provision --protocol lwm2m'; read by the simulator's LwM2M client.
    """

    security: Literal["psk", "cert"] = "psk"
    """DTLS mode: "psk" (the pre-shared key below, in the device token) or "cert" (the LDevID
    and the identity key in the device token)."""
    server_uri: str = "coaps://127.0.0.1:5684"
    """The bootstrap server when bootstrap is true, else the device-management server."""
    bootstrap: bool = True
    """Ask the bootstrap server for the device-management server and its credential first."""
    psk_identity: str = ""
    """The factory (bootstrap) PSK identity; empty in certificate mode."""
    psk_label: str = "lwm2m-psk"
    """Label of the pre-shared key, a secret-key object in the device token."""
    manifest_key: str = "lwm2m-manifest-key.pem"
    """The public key firmware manifests must be signed with (COSE_Sign1, ADR 0022)."""
    lifetime_s: int = Field(default=300, ge=30, le=86_400)
    """The registration lifetime the device asks for."""
    firmware_dir: str = "lwm2m-firmware"
    """Where the simulated device keeps its installed image and its state."""

    @field_validator("server_uri")
    @classmethod
    def _coaps(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "coaps" or not parts.hostname:
            raise ValueError("must be a coaps:// URI with a host")
        return value


class DeviceSettings(ConfigModel):
    """The whole ``device.toml``, with paths resolved against the device directory.

    ``mqtt`` is optional so that ``trustfleet agent enroll`` keeps working with files written
    before the link existed; ``trustfleet agent run`` requires it.
    """

    directory: Path
    device: DeviceSection
    identity: IdentitySection
    server: ServerSection
    mqtt: MqttSection | None = None
    agent: AgentSection = AgentSection()
    ota: OtaSection = OtaSection()
    monitoring: MonitoringSection = MonitoringSection()
    lwm2m: Lwm2mSection | None = None
    """Only on a constrained device (LwM2M instead of MQTT)."""

    def path(self, relative: str) -> Path:
        """Resolve a path from the file against the device directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.directory / candidate


def _check(path: Path, settings: DeviceSettings) -> None:
    """The PKCS#11 module and the SoftHSM2 configuration are trusted."""
    identity = settings.identity
    check_loaded_code(identity.module, settings.path(identity.softhsm_conf))


_FILE = ConfigFile(
    model=DeviceSettings,
    name=DEVICE_FILE,
    folder_field="directory",
    header=(
        "TrustFleet device configuration, read by 'trustfleet agent run'.",
        "Paths are relative to this file's directory.",
    ),
    what=("the device folder", "the device configuration"),
    absent=(
        "no device at {folder}",
        "point --device at a folder made by 'trustfleet factory provision'",
    ),
    invalid_hint="compare with the device.toml the factory wrote",
    check=_check,
)


def load_device_settings(directory: Path) -> DeviceSettings:
    """Read and check ``directory/device.toml``.

    The device folder (and the folders above it), the file, its SoftHSM2 configuration and an
    explicit ``[identity] module`` (and the folders above it) must be owned by root or this
    user and not writable by group or others.

    Raises:
        Config: The file is missing, is not TOML, or has a wrong, unknown or missing setting;
            or one of those paths could be changed by someone else (code
            ``config.path.unsafe``).
    """
    return _FILE.load(directory)


def save_device_settings(settings: DeviceSettings) -> Path:
    """Write ``settings`` to ``settings.directory/device.toml`` (atomically); return its path.

    The file is rendered from the model by tomli-w, with a comment from each field's
    description; relative paths stay relative to the device folder.
    """
    return _FILE.save(settings)


def update_device_settings(
    directory: Path, changes: Mapping[str, Mapping[str, Any]]
) -> DeviceSettings:
    """Load ``directory/device.toml``, apply ``{"section": {"key": value}}``, check, save.

    Example: ``update_device_settings(device, {"mqtt": {"telemetry_interval_s": 1.0}})``.

    Raises:
        Config: The file cannot be loaded; or an unknown section or key, or a wrong value
            (nothing is written then).
    """
    return _FILE.update(directory, changes)
