"""Device settings, read from ``DEVDIR/device.toml`` (written by the factory)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trustfleet.configfile import check_loaded_code, load_toml_model
from trustfleet.errors import Config
from trustfleet.fileio import check_trusted

__all__ = [
    "AgentSection",
    "DeviceSettings",
    "MqttSection",
    "OtaSection",
    "load_device_settings",
    "ota_urls",
    "require_mqtt",
]

DEVICE_FILE = "device.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSection(_Model):
    """Who the device is."""

    id: str
    model: str


class IdentitySection(_Model):
    """Where the device's identity key and certificates are."""

    key: str
    module: str = ""
    softhsm_conf: str = "softhsm2.conf"
    idevid: str = "idevid.pem"
    ldevid: str = "ldevid.pem"


class ServerSection(_Model):
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


class MqttSection(_Model):
    """How the agent reaches the broker, and the bounds of its link.

    ``host`` defaults to the host of ``[server] est_url``; ``port`` has no default (the broker's
    device listener port is a deployment choice).
    """

    host: str = ""
    port: int = Field(ge=1, le=65535)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    telemetry_interval_s: float = Field(default=10.0, ge=0.2, le=86400)
    heartbeat_interval_s: float = Field(default=30.0, ge=0.2, le=86400)
    queue_max_messages: int = Field(default=1000, ge=1, le=100_000)
    max_in_flight: int = Field(default=10, ge=1, le=100)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    ack_timeout_s: int = Field(default=30, ge=1, le=600)
    backoff_initial_s: float = Field(default=1.0, ge=0.05, le=3600)
    backoff_max_s: float = Field(default=60.0, ge=0.05, le=86400)
    max_payload_bytes: int = Field(default=16384, ge=512, le=256 * 1024)

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttSection:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self


class AgentSection(_Model):
    """How the agent behaves over time."""

    reenroll_at_fraction: float = Field(default=0.6667, gt=0, lt=1)
    reenroll_retry_s: float = Field(default=60.0, ge=1, le=86400)
    shutdown_flush_s: float = Field(default=5.0, ge=0, le=300)
    once_timeout_s: float = Field(default=30.0, gt=0, le=600)


class OtaSection(_Model):
    """How the updater reaches the TUF repository, and the bounds of an update.

    ``metadata_url`` and ``targets_url`` default to ``/tuf/metadata/`` and ``/tuf/targets/`` on
    the host and port of ``[server] est_url`` (see :func:`ota_urls`).
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

    @field_validator("metadata_url", "targets_url")
    @classmethod
    def _https_or_empty(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme != "https" or not parts.hostname):
            raise ValueError("must be an https:// URL")
        return value


class DeviceSettings(_Model):
    """The whole ``device.toml``, with paths resolved against the device directory.

    ``mqtt`` is optional so that ``trustfleet agent enroll`` keeps working with files written
    before the link existed; ``trustfleet agent run`` requires it (:func:`require_mqtt`).
    """

    directory: Path
    device: DeviceSection
    identity: IdentitySection
    server: ServerSection
    mqtt: MqttSection | None = None
    agent: AgentSection = AgentSection()
    ota: OtaSection = OtaSection()

    def path(self, relative: str) -> Path:
        """Resolve a path from the file against the device directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.directory / candidate


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
    missing = Config(
        f"no device at {directory} (missing {DEVICE_FILE})",
        hint="point --device at a folder made by 'trustfleet factory provision'",
    )
    path = directory / DEVICE_FILE
    if directory.is_dir() and path.is_file():
        check_trusted(directory, what="the device folder", parents=True)
        check_trusted(path, what="the device configuration", parents=True)
    settings = load_toml_model(
        path,
        DeviceSettings,
        extra={"directory": directory.resolve()},
        missing=missing,
        invalid_hint="compare with the device.toml the factory wrote",
    )
    identity = settings.identity
    check_loaded_code(identity.module, settings.path(identity.softhsm_conf))
    return settings


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
