"""Sealed storage: the agent's local state, readable only after a verified boot.

A 32-byte data key is sealed in the TPM to the PCR policy of a *good* boot of the running
release: ``pcr_policy_digest`` over PCRs 0, 4, 9 and 10 as the boot chain extends them for the
slot's release (the reference digests replayed with ``expected_pcrs``, never the PCR values
read back, so a tampered boot that runs anyway cannot adopt its own measurements). The state
is ``DEVDIR/state.enc``: AES-256-GCM under the data key. A boot that measured anything else —
a modified image run by a glitched bootloader, say — cannot unseal the key.

Updates: before the updater switches slots, :meth:`SealedStorage.prepare_update` seals the
key again, to the values of the running boot (``tpm/datakey.sealed``) and to those of the new
image's boot (``tpm/datakey.next.sealed``). The new slot unseals the second, a rollback the
first. Once the new slot is committed, the next boot makes the second the only one.

Files (all in the device folder): ``tpm/datakey.sealed``, ``tpm/datakey.next.sealed`` (TPM
blobs, useless without this TPM in that boot state), ``state.enc``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustfleet.agent.platform._files import write_atomic
from trustfleet.agent.platform.measured_boot import TPM_FOLDER, boot_events
from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.keystore.tpm import expected_pcrs

if TYPE_CHECKING:
    from trustfleet.keystore.tpm import Tpm

__all__ = [
    "DATA_KEY_BYTES",
    "MAX_STATE_BYTES",
    "STATE_FILE",
    "SealedStorage",
    "boot_pcr_values",
    "record_boot",
    "release_image_sha256",
]

logger = logging.getLogger(__name__)

DATA_KEY_BYTES: Final = 32
STATE_FILE: Final = "state.enc"
MAX_STATE_BYTES: Final = 256 * 1024
"""The bound on ``state.enc`` (and on the state document it holds)."""
CURRENT_BLOB: Final = "datakey.sealed"
NEXT_BLOB: Final = "datakey.next.sealed"
_MAX_BLOB_BYTES: Final = 4096
_NONCE_BYTES: Final = 12
_AAD: Final = b"trustfleet-sealed-state/1"
_LOCKED: Final = "sealed.locked"


def boot_pcr_values(
    *, model: str, image_sha256: bytes, agent_version: str | None = None
) -> dict[int, bytes]:
    """PCRs 0, 4, 9, 10 after a good boot of ``image_sha256`` (the sealing policy's values).

    ``agent_version`` defaults to the installed product's version.
    """
    events = boot_events(model=model, image_sha256=image_sha256, agent_version=agent_version)
    return expected_pcrs(events)


def release_image_sha256(manifest: bytes) -> bytes | None:
    """The image digest a release manifest names (``image.sha256``), None if it names none."""
    try:
        doc = json.loads(manifest)
        digest = bytes.fromhex(doc["image"]["sha256"])
    except (ValueError, KeyError, TypeError):
        return None
    return digest if len(digest) == 32 else None


def record_boot(
    directory: Path, *, tpm: Tpm, model: str, slot_manifest: bytes, boot: Mapping[str, Any]
) -> dict[str, Any] | None:
    """At each boot: open sealed storage (creating it on the first boot) and count the boot.

    Args:
        directory: The device folder.
        tpm: The powered-on TPM, after the boot chain measured itself.
        model: The fused model.
        slot_manifest: The booted slot's ``release.json`` (its image digest is the policy).
        boot: What booted (``slot``, ``version``, ``on_trial``), recorded in the state.

    Returns:
        The state after this boot, or None when it is locked (a boot that is not the sealed
        one: the state stays unreadable, the device keeps running).
    """
    storage = SealedStorage(directory, tpm=tpm)
    try:
        if not storage.initialized():
            digest = release_image_sha256(slot_manifest)
            if digest is None:
                return None
            storage.initialize(boot_pcr_values(model=model, image_sha256=digest))
        storage.settle(on_trial=bool(boot.get("on_trial")))
        state = storage.read()
    except VerificationFailed as exc:
        logger.warning("%s", exc.one_line())
        return None
    state["boots"] = int(state.get("boots", 0)) + 1
    state["last_boot"] = {"slot": boot.get("slot"), "version": boot.get("version")}
    storage.write(state)
    return state


class SealedStorage:
    """The sealed state of one device.

    Args:
        directory: The device folder.
        tpm: A connection to the device's (powered-on) TPM.
    """

    def __init__(self, directory: Path, *, tpm: Tpm) -> None:
        self.directory = directory
        self._tpm = tpm
        self._folder = directory / TPM_FOLDER

    @property
    def state_path(self) -> Path:
        """``DEVDIR/state.enc``."""
        return self.directory / STATE_FILE

    def initialized(self) -> bool:
        """Whether a data key was sealed for this device."""
        return (self._folder / CURRENT_BLOB).is_file()

    def initialize(self, pcr_values: Mapping[int, bytes]) -> None:
        """Make a new data key, seal it to ``pcr_values`` and write an empty state.

        Raises:
            InvalidInput: Sealed storage exists already (code ``sealed.exists``).
            Unavailable: The TPM refused.
        """
        if self.initialized():
            raise InvalidInput("sealed storage exists already", code="sealed.exists")
        key = secrets.token_bytes(DATA_KEY_BYTES)
        self._encrypt(key, {})
        write_atomic(self._folder / CURRENT_BLOB, self._tpm.seal(key, pcr_values=pcr_values))
        logger.info("sealed storage initialised")

    def unlock(self) -> bytes:
        """The data key, if this boot's PCRs are those it was sealed to.

        Tries the current blob, then the one prepared for an update.

        Raises:
            VerificationFailed: No sealed key, or neither blob unseals in this boot state
                (code ``sealed.locked``).
        """
        key, _which = self._unseal_any()
        return key

    def _unseal_any(self) -> tuple[bytes, str]:
        tried = False
        for name in (CURRENT_BLOB, NEXT_BLOB):
            blob = self._blob(name)
            if blob is None:
                continue
            tried = True
            try:
                return self._tpm.unseal(blob), name
            except VerificationFailed:
                continue
        raise VerificationFailed(
            "sealed storage is locked: this boot is not the state its key was sealed to"
            if tried
            else "there is no sealed storage",
            hint="boot a verified release (a tampered boot cannot read the device's state)",
            code=_LOCKED,
        )

    def settle(self, *, on_trial: bool) -> None:
        """After a committed update, make the key sealed to this boot the only one.

        Does nothing while the new slot is on trial (a rollback still needs the old blob),
        or when the current blob unseals.

        Raises:
            VerificationFailed: Neither blob unseals (code ``sealed.locked``).
        """
        _key, which = self._unseal_any()
        if which == NEXT_BLOB and not on_trial:
            os.replace(self._folder / NEXT_BLOB, self._folder / CURRENT_BLOB)
            logger.info("sealed storage now follows the committed release")

    def prepare_update(
        self, *, current: Mapping[int, bytes], following: Mapping[int, bytes]
    ) -> None:
        """Seal the key to this boot's values and to the next boot's, before a slot switch.

        Args:
            current: The PCR values of a good boot of the running release.
            following: Those of a good boot of the release about to be installed.

        Raises:
            VerificationFailed: The key cannot be unsealed now (code ``sealed.locked``).
            Unavailable: The TPM refused.
        """
        key, _which = self._unseal_any()
        write_atomic(self._folder / NEXT_BLOB, self._tpm.seal(key, pcr_values=following))
        write_atomic(self._folder / CURRENT_BLOB, self._tpm.seal(key, pcr_values=current))
        logger.info("sealed storage prepared for the next release")

    def read(self) -> dict[str, Any]:
        """The state document.

        Raises:
            VerificationFailed: Locked (``sealed.locked``) or the file was altered
                (``sealed.state.integrity``).
        """
        key = self.unlock()
        return self._decrypt(key)

    def write(self, document: Mapping[str, Any]) -> None:
        """Replace the state document (atomically).

        Raises:
            VerificationFailed: Locked (``sealed.locked``).
            InvalidInput: The document is not JSON or over :data:`MAX_STATE_BYTES`.
        """
        self._encrypt(self.unlock(), document)

    def _blob(self, name: str) -> bytes | None:
        try:
            with (self._folder / name).open("rb") as fh:
                data = fh.read(_MAX_BLOB_BYTES + 1)
        except FileNotFoundError:
            return None
        return data if len(data) <= _MAX_BLOB_BYTES else None

    def _encrypt(self, key: bytes, document: Mapping[str, Any]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        try:
            plain = json.dumps(dict(document), sort_keys=True).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidInput("the sealed state must be JSON", code="sealed.state") from exc
        if len(plain) > MAX_STATE_BYTES - 64:
            raise InvalidInput(f"the sealed state is over {MAX_STATE_BYTES} bytes",
                               code="sealed.state.size")  # fmt: skip
        nonce = secrets.token_bytes(_NONCE_BYTES)
        write_atomic(self.state_path, nonce + AESGCM(key).encrypt(nonce, plain, _AAD))

    def _decrypt(self, key: bytes) -> dict[str, Any]:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        altered = VerificationFailed(
            f"{self.state_path} was altered or is missing",
            hint="the sealed state cannot be trusted; re-provision the device",
            code="sealed.state.integrity",
        )
        try:
            with self.state_path.open("rb") as fh:
                data = fh.read(MAX_STATE_BYTES + 1)
            plain = AESGCM(key).decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], _AAD)
            document = json.loads(plain)
        except (OSError, InvalidTag, ValueError) as exc:
            raise altered from exc
        if len(data) > MAX_STATE_BYTES or not isinstance(document, dict):
            raise altered
        return document
