"""The boot environment: which slot boots, and the boot counter of an update on trial.

The variables are U-Boot's (``CONFIG_BOOTCOUNT_LIMIT`` with ``CONFIG_BOOTCOUNT_ENV``):

==================== ========================================================================
``boot_slot``        ``a`` or ``b``: the slot the boot script loads first
``upgrade_available`` ``1`` while a new slot is on trial; U-Boot increments ``bootcount`` at
                     every boot only while it is set
``bootcount``        boots since the switch; once it exceeds ``bootlimit`` U-Boot runs
                     ``altbootcmd`` (ours: boot the other slot, clear ``upgrade_available``)
``bootlimit``        trial boots allowed before falling back (default 3)
==================== ========================================================================

In simulation the environment is ``DEVDIR/<id>/bootenv.json``, replaced atomically (temporary
file, fsync, rename). On hardware the same variables are read and written with
``fw_printenv``/``fw_setenv`` (libubootenv, a redundant environment, so a power cut during a
write keeps the previous copy); the agent's commit is ``fw_setenv upgrade_available 0`` and
``fw_setenv bootcount 0``. A :class:`BootEnvStore` hides which one is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from trustfleet.agent.platform._files import read_json, write_json

__all__ = [
    "BOOTENV_FILE",
    "DEFAULT_BOOTLIMIT",
    "SLOTS",
    "BootEnv",
    "BootEnvStore",
    "FileBootEnv",
    "Slot",
    "other_slot",
]

logger = logging.getLogger(__name__)

Slot = Literal["a", "b"]
SLOTS: tuple[Slot, Slot] = ("a", "b")
BOOTENV_FILE = "bootenv.json"
DEFAULT_BOOTLIMIT = 3
_MAX_ENV_BYTES = 4096
_MAX_BOOTLIMIT = 100


def other_slot(slot: Slot) -> Slot:
    """The slot that is not ``slot``."""
    return "b" if slot == "a" else "a"


@dataclass(frozen=True, slots=True, kw_only=True)
class BootEnv:
    """The boot environment's variables (see the module docstring)."""

    boot_slot: Slot = "a"
    upgrade_available: bool = False
    bootcount: int = 0
    bootlimit: int = DEFAULT_BOOTLIMIT

    def to_document(self) -> dict[str, object]:
        """The JSON form (``upgrade_available`` as 0/1, as U-Boot stores it)."""
        return {
            "boot_slot": self.boot_slot,
            "upgrade_available": int(self.upgrade_available),
            "bootcount": self.bootcount,
            "bootlimit": self.bootlimit,
        }


class BootEnvStore(Protocol):
    """Where the boot environment lives (a file in simulation, U-Boot's env on hardware)."""

    def read(self) -> BootEnv:
        """The current environment (the default one if it is missing or unreadable)."""
        ...

    def write(self, env: BootEnv) -> None:
        """Replace the environment durably (all variables at once)."""
        ...


class FileBootEnv:
    """The simulated environment: ``bootenv.json``.

    Like U-Boot with a bad CRC, a missing or corrupt file reads as the default environment
    (slot ``a``, no trial); verified boot still refuses a slot that does not verify.

    Args:
        path: The JSON file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> BootEnv:
        """The environment in the file, or the default one."""
        doc = read_json(self.path, max_bytes=_MAX_ENV_BYTES)
        if doc is None:
            if self.path.exists():
                logger.warning("%s is unreadable: using the default environment", self.path)
            return BootEnv()
        env = _parse(doc)
        if env is None:
            logger.warning("%s has invalid values: using the default environment", self.path)
            return BootEnv()
        return env

    def write(self, env: BootEnv) -> None:
        """Write all variables atomically (temporary file, fsync, rename)."""
        write_json(self.path, env.to_document())


def _parse(doc: dict[str, object]) -> BootEnv | None:
    slot = doc.get("boot_slot")
    upgrade = doc.get("upgrade_available", 0)
    count = doc.get("bootcount", 0)
    limit = doc.get("bootlimit", DEFAULT_BOOTLIMIT)
    if slot not in SLOTS or upgrade not in (0, 1):
        return None
    if not _small_int(count, 1 << 20) or not _small_int(limit, _MAX_BOOTLIMIT):
        return None
    assert isinstance(count, int) and isinstance(limit, int)  # noqa: S101  # for mypy
    return BootEnv(
        boot_slot="a" if slot == "a" else "b",
        upgrade_available=upgrade == 1,
        bootcount=count,
        bootlimit=limit,
    )


def _small_int(value: object, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit
