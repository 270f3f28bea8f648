"""Device settings, read from ``DEVDIR/device.toml`` (written by the factory)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from trustfleet.errors import Config

__all__ = ["DeviceSettings", "load_device_settings"]

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


class DeviceSettings(_Model):
    """The whole ``device.toml``, with paths resolved against the device directory."""

    directory: Path
    device: DeviceSection
    identity: IdentitySection
    server: ServerSection

    def path(self, relative: str) -> Path:
        """Resolve a path from the file against the device directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.directory / candidate


def load_device_settings(directory: Path) -> DeviceSettings:
    """Read and check ``directory/device.toml``.

    Raises:
        Config: The file is missing, is not TOML, or has a wrong, unknown or missing setting.
    """
    path = directory / DEVICE_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise Config(
            f"no device at {directory} (missing {DEVICE_FILE})",
            hint="point --device at a folder made by 'trustfleet factory provision'",
        ) from exc
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Config(f"cannot read {path}: {exc}", hint="fix the file's TOML syntax") from exc
    try:
        return DeviceSettings(directory=directory.resolve(), **raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Config(
            f"{path}: setting '{where}': {first['msg']}",
            hint="compare with the device.toml the factory wrote",
        ) from exc
