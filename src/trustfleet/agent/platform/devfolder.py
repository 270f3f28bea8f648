"""One device folder, one agent; a device folder that works wherever it is moved or copied.

* :func:`hold_device` takes ``DEVDIR/agent.lock`` (0600, ``flock``) before the agent touches the
  TPM or the token: a second agent on the same folder would power-cycle the first one's TPM
  (which then misses its challenges and is quarantined). It is refused with one line naming the
  holder's pid. A reboot (``exec`` of the agent) keeps the lock (:data:`LOCK_ENV`).
* :func:`follow_folder` keeps the folder's SoftHSM2 configuration pointing at the folder's own
  ``tokens/``: every other path in ``device.toml`` is relative to the folder already, but
  SoftHSM2 reads an absolute ``directories.tokendir``. A moved folder would find no token, and a
  copied one would use the original's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from trustfleet.processes import HeldLock, hold_exclusive

__all__ = ["LOCK_ENV", "LOCK_FILE", "follow_folder", "hold_device"]

logger = logging.getLogger(__name__)

LOCK_FILE: Final = "agent.lock"
LOCK_ENV: Final = "TRUSTFLEET_DEVICE_LOCK_FD"
"""How a re-executed agent (a reboot) finds the lock it already holds."""
TOKENS_DIR: Final = "tokens"


def hold_device(directory: Path) -> HeldLock:
    """Take the device folder's agent lock (adopting it after a reboot's ``exec``).

    Raises:
        Conflict: Another agent runs on this folder (the message names its pid).
        Config: The lock file cannot be opened.
    """
    return hold_exclusive(
        directory / LOCK_FILE,
        what=f"the device folder {directory}",
        hint="another agent runs this device; stop it first (two would share one TPM and token)",
        code="agent.device.locked",
        env_name=LOCK_ENV,
    )


def follow_folder(conf: Path, directory: Path) -> None:
    """Point the folder's own SoftHSM2 configuration at the folder's own token directory.

    Nothing happens unless ``conf`` is inside ``directory``, the folder has ``tokens/`` and
    the configuration names another token directory (the folder was moved or copied).

    Raises:
        Config: The configuration cannot be rewritten.
    """
    directory = directory.resolve()
    tokens = directory / TOKENS_DIR
    if not conf.resolve().is_relative_to(directory) or not tokens.is_dir():
        return
    # Imported here so the boot loop stays lean (its only caller, agent/_tls.py, has them loaded).
    from trustfleet.keystore import softhsm_token_dir, write_softhsm_conf  # noqa: PLC0415

    current = softhsm_token_dir(conf)
    if current is None or current == tokens:
        return

    logger.info("device folder moved or copied: SoftHSM2 tokens now in %s", tokens)
    write_softhsm_conf(conf, token_dir=tokens)
