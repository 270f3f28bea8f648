"""Builders of whole settings models for the settings tests (server and device)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trustfleet.configfile.device import DeviceSettings
from trustfleet.settings import CA_NAMES, ServerSettings

__all__ = ["NAMES", "device_settings", "server_settings"]

# Names that an f-string TOML writer breaks, and that must survive a round trip.
NAMES = {
    "quote_backslash_unicode": 'O"Brien \\ Ünïcode',
    "single_quotes": "it's 'quoted'",
    "triple_quotes": "a \"\"\" b ''' c",
    "toml_syntax": "[ca.root] # = { } ,",
    "emoji": "fleet 🚀 ✓",
    "trailing_backslash": "ends with \\",
}


def server_settings(home: Path, **sections: Any) -> ServerSettings:
    """A valid ServerSettings for ``home`` with ``sections`` (dicts) replacing the defaults."""
    cas = {
        name: {"key": f"pkcs11:object={name}", "cert": f"public/{name}.pem"} for name in CA_NAMES
    }
    return ServerSettings.model_validate({"home": home, "ca": cas, **sections})


def device_settings(directory: Path, **sections: Any) -> DeviceSettings:
    """A valid DeviceSettings for ``directory``; ``sections`` merge into the required ones."""
    raw: dict[str, Any] = {
        "directory": directory,
        "device": {"id": "dev-0001", "model": "m1"},
        "identity": {"key": "pkcs11:token=tf-device;object=identity"},
        "server": {"est_url": "https://localhost:8443/.well-known/est"},
        "mqtt": {"port": 8883},
    }
    for name, values in sections.items():
        raw[name] = values if values is None else {**raw.get(name, {}), **values}
    return DeviceSettings.model_validate(raw)
