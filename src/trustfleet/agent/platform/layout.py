"""Where a simulated device keeps its platform files (docs/ota.md, "Device side")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trustfleet.agent.platform.bootenv import BOOTENV_FILE, FileBootEnv
from trustfleet.agent.platform.bootloader import BOOT_KEY_FILE, FUSES_FILE
from trustfleet.agent.platform.slots import Slots

__all__ = ["STATE_FILE", "DeviceLayout"]

STATE_FILE = "ota-state.json"


@dataclass(frozen=True, slots=True)
class DeviceLayout:
    """The platform files of the device folder ``directory``."""

    directory: Path

    @property
    def fuses(self) -> Path:
        """``fuses.json``."""
        return self.directory / FUSES_FILE

    @property
    def boot_key(self) -> Path:
        """``boot-key.pem`` (the fused boot key's public half)."""
        return self.directory / BOOT_KEY_FILE

    @property
    def state_file(self) -> Path:
        """``ota-state.json`` (the updater's state machine)."""
        return self.directory / STATE_FILE

    @property
    def tuf_metadata(self) -> Path:
        """The trusted TUF metadata (``tuf/metadata``)."""
        return self.directory / "tuf" / "metadata"

    @property
    def downloads(self) -> Path:
        """Partial and verified downloads (``tuf/downloads``)."""
        return self.directory / "tuf" / "downloads"

    def env_store(self) -> FileBootEnv:
        """The boot environment (``bootenv.json``)."""
        return FileBootEnv(self.directory / BOOTENV_FILE)

    def slots(self) -> Slots:
        """The A/B slots (``slots/a``, ``slots/b``)."""
        return Slots(self.directory / "slots")

    def has_boot_chain(self) -> bool:
        """Fuses and at least one installed slot (older device folders have neither)."""
        return self.fuses.is_file() and self.slots().exists()
