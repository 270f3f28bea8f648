"""The simulated LwM2M device's small state file: running firmware version and DM server.

``<firmware_dir>/state.json`` holds no secret (the DM PSK is in the token); it survives restarts
so a device bootstraps once and boots the image it installed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trustfleet.errors import InvalidInput
from trustfleet.fileio import read_bounded, write_atomic

__all__ = ["INITIAL_VERSION", "MAX_STATE_BYTES", "DeviceState", "load_state", "save_state"]

INITIAL_VERSION = "1.0.0"
MAX_STATE_BYTES = 4096
STATE_FILE = "state.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceState:
    """What the device remembers across restarts."""

    version: str = INITIAL_VERSION
    sequence: int = 0
    """The installed manifest's sequence number (a lower one is a rollback)."""
    dm_uri: str = ""
    dm_identity: str = ""


def load_state(directory: Path) -> DeviceState:
    """The saved state, or the factory state if there is none.

    Raises:
        InvalidInput: The file is not a state file.
    """
    path = directory / STATE_FILE
    if not path.exists():
        return DeviceState()
    try:
        raw = read_bounded(path, max_bytes=MAX_STATE_BYTES)
        if raw is None:
            raise ValueError("too large")
        data = json.loads(raw)
        return DeviceState(
            version=str(data["version"]),
            sequence=int(data.get("sequence", 0)),
            dm_uri=str(data.get("dm_uri", "")),
            dm_identity=str(data.get("dm_identity", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path} is not a device state file", code="lwm2m.device.state") from exc


def save_state(directory: Path, state: DeviceState) -> None:
    """Write the state atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / STATE_FILE, json.dumps(asdict(state), sort_keys=True).encode())
