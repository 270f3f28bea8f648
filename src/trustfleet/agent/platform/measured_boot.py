"""The device's TPM and its measured boot (docs/attestation.md).

A simulated device's TPM is a swtpm whose state lives in ``DEVDIR/tpm/`` (manufactured by the
factory with the simulated TPM vendor's CA). Every boot powers it on (:class:`DeviceTpm`,
PCRs reset), then each stage measures the next before running it, and each extend is also
appended to the event log ``DEVDIR/tpm/eventlog.json`` (emptied at power-on):

===== ============== ============================================================
PCR   component      measured by, digest
===== ============== ============================================================
0     ``rom``        the boot ROM, itself: SHA-256 of ``trustfleet-sim-rom/<model>/1``
4     ``bootloader`` the ROM: SHA-256 of ``trustfleet-sim-boot/<model>/1``
9     ``image``      the bootloader, before running it: SHA-256 of the slot's image
10    ``agent``      the image, before starting the agent: SHA-256 of ``trustfleet-agent/<v>``
===== ============== ============================================================

The identity digests are :func:`trustfleet.attestation.reference.measure_identity` of the same
strings the service publishes as per-model reference values. Fault injection for the tamper
tests (simulation only, through :class:`~trustfleet.agent.platform.faults.Faults`):
``skip_verify`` makes the bootloader run the environment's slot even though its verification
fails, as a glitch attack on a real bootloader would; the TPM still measures the image that
really runs.

tpm2-pytss (≈ 27 MB resident) is imported only by the functions that talk to the TPM; the
agent's main process only powers the TPM on and off.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trustfleet import product_version
from trustfleet.agent.platform._files import read_json, write_atomic, write_json
from trustfleet.agent.platform._tpmpower import PID_FILE, SwtpmPower, recorded_pid
from trustfleet.agent.platform.bootenv import BootEnvStore, Slot
from trustfleet.agent.platform.bootloader import (
    IMAGE_PCR,
    BootResult,
    Measurer,
    boot,
    read_fuses,
)
from trustfleet.agent.platform.slots import Slots, sha256_file
from trustfleet.errors import InvalidInput, VerificationFailed

if TYPE_CHECKING:
    from trustfleet.keystore.tpm import AkInfo, Tpm

__all__ = [
    "AGENT_IDENTITY",
    "AGENT_PCR",
    "AK_FILE",
    "BOOTLOADER_IDENTITY",
    "BOOTLOADER_PCR",
    "EVENTLOG_FILE",
    "MAX_EVENTLOG_ENTRIES",
    "PID_FILE",
    "ROM_IDENTITY",
    "ROM_PCR",
    "TPM_FOLDER",
    "DeviceTpm",
    "TpmMeasurer",
    "boot_events",
    "measured_boot",
    "recorded_pid",
]

logger = logging.getLogger(__name__)

TPM_FOLDER: Final = "tpm"
EVENTLOG_FILE: Final = "eventlog.json"
AK_FILE: Final = "ak.json"
MAX_EVENTLOG_ENTRIES: Final = 64
"""The contract's bound on the event log (docs/attestation.md)."""
MAX_EVENTLOG_BYTES: Final = 64 * 1024
ROM_PCR: Final = 0
BOOTLOADER_PCR: Final = 4
AGENT_PCR: Final = 10
ROM_IDENTITY: Final = "trustfleet-sim-rom/{model}/1"
"""The simulated boot ROM's identity (the service publishes the SHA-256 per model)."""
BOOTLOADER_IDENTITY: Final = "trustfleet-sim-boot/{model}/1"
"""The simulated bootloader's identity."""
AGENT_IDENTITY: Final = "trustfleet-agent/{version}"
"""The agent's identity: its package version."""
_EVENT_TYPES: Final = {"rom": "EV_S_CRTM_VERSION"}  # everything else: EV_IPL
_STATE_FILE: Final = "tpm2-00.permall"
_MAX_AK_BYTES: Final = 16 * 1024


def _identity(identity: str) -> bytes:
    from trustfleet.attestation.reference import measure_identity  # noqa: PLC0415  # see module

    return measure_identity(identity)


def boot_events(
    *, model: str, image_sha256: bytes, agent_version: str | None = None
) -> list[tuple[int, bytes]]:
    """The ``(pcr, digest)`` extends of a good boot of ``image_sha256`` on ``model``.

    Replayed with :func:`trustfleet.keystore.tpm.expected_pcrs` they give the PCR values of
    that boot, the policy sealed storage is bound to (also for a boot that has not happened
    yet: the next slot's image). ``agent_version`` defaults to :func:`trustfleet.product_version`.
    """
    version = agent_version if agent_version is not None else product_version()
    return [
        (ROM_PCR, _identity(ROM_IDENTITY.format(model=model))),
        (BOOTLOADER_PCR, _identity(BOOTLOADER_IDENTITY.format(model=model))),
        (IMAGE_PCR, image_sha256),
        (AGENT_PCR, _identity(AGENT_IDENTITY.format(version=version))),
    ]


@dataclass(frozen=True, slots=True)
class DeviceTpm:
    """The TPM files of the device folder ``directory`` (state, pid, event log, AK)."""

    directory: Path

    @property
    def state_dir(self) -> Path:
        """``DEVDIR/tpm``: the swtpm state, its sockets, the event log."""
        return self.directory / TPM_FOLDER

    @property
    def eventlog_path(self) -> Path:
        """``DEVDIR/tpm/eventlog.json``."""
        return self.state_dir / EVENTLOG_FILE

    @property
    def ak_path(self) -> Path:
        """``DEVDIR/tpm/ak.json``: the AK as the factory created it."""
        return self.state_dir / AK_FILE

    def present(self) -> bool:
        """Whether the device has a manufactured TPM."""
        return (self.state_dir / _STATE_FILE).is_file()

    def power(self) -> SwtpmPower:
        """The TPM's power switch."""
        return SwtpmPower(self.state_dir)

    @property
    def tcti(self) -> str:
        """The TCTI string of the TPM (tpm2-pytss and tpm2-tools)."""
        return self.power().tcti

    def power_on(self) -> SwtpmPower:
        """Power-cycle the TPM and empty the event log (PCRs are back to zero)."""
        switch = self.power()
        switch.power_on()
        write_atomic(self.eventlog_path, b"[]\n")
        return switch

    def open(self) -> Tpm:
        """A connection to the running TPM (loads tpm2-pytss).

        Raises:
            Unavailable: The TPM is not powered on (code ``tpm.connect``).
        """
        from trustfleet.keystore.tpm import Tpm  # noqa: PLC0415  # tpm2-pytss, see module

        return Tpm(tcti=self.tcti)

    def eventlog(self) -> list[dict[str, Any]]:
        """The event log of this boot (JSON entries, in order; empty when none).

        Raises:
            InvalidInput: The file is larger than its bound or not a list of objects.
        """
        try:
            data = self.eventlog_path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            entries = json.loads(data) if len(data) <= MAX_EVENTLOG_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            entries = None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidInput(f"{self.eventlog_path} is not an event log", code="tpm.eventlog")
        return entries

    def save_ak(self, ak: AkInfo) -> None:
        """Record the AK (public parts only) next to the TPM state."""
        write_json(self.ak_path, {
            "handle": ak.handle, "name": ak.name.hex(), "qualified_name": ak.qualified_name.hex(),
            "public": ak.public.hex(), "public_pem": ak.public_pem,
        })  # fmt: skip

    def ensure_ak(self, tpm: Tpm) -> AkInfo:
        """The AK: the persistent one, created (and recorded) when the TPM has none."""
        from trustfleet.errors import NotFound  # noqa: PLC0415

        try:
            ak = tpm.ak()
        except NotFound:
            ak = tpm.create_ak()
            logger.info("created the attestation key at 0x%08x", ak.handle)
        if read_json(self.ak_path, max_bytes=_MAX_AK_BYTES) is None:
            self.save_ak(ak)
        return ak


class TpmMeasurer:
    """A :class:`Measurer` that extends the TPM's PCR and appends to the event log."""

    def __init__(self, tpm: Tpm, device: DeviceTpm) -> None:
        self._tpm = tpm
        self._device = device

    def extend(self, pcr: int, component: str, digest: bytes, detail: str) -> None:
        """Extend ``pcr`` with ``digest`` and log it (the log is written first-to-last)."""
        entries = self._device.eventlog()
        if len(entries) >= MAX_EVENTLOG_ENTRIES:
            raise InvalidInput("the event log is full", code="tpm.eventlog.full")
        self._tpm.pcr_extend(pcr, digest)
        entries.append({
            "pcr": pcr, "type": _EVENT_TYPES.get(component, "EV_IPL"), "digest": digest.hex(),
            "component": component, "detail": detail[:256],
        })  # fmt: skip
        data = json.dumps(entries, separators=(",", ":")).encode("utf-8") + b"\n"
        write_atomic(self._device.eventlog_path, data)


def measured_boot(
    directory: Path,
    *,
    tpm: Tpm,
    env_store: BootEnvStore,
    slots: Slots,
    agent_version: str | None = None,
    skip_verify: bool = False,
) -> BootResult:
    """ROM → bootloader → image → agent, each stage measured before it runs.

    The TPM must be powered on (a fresh boot: PCRs at zero, event log empty). ``skip_verify``
    (simulation only: ``Faults.boot_skip_verify``) glitches the slot's verification away.

    Returns:
        What the bootloader booted.

    Raises:
        VerificationFailed: No fuses, a boot key that is not the fused one, or no slot that
            verifies (codes ``boot.fuses``, ``boot.key``, ``boot.no_slot``).
        Unavailable: The TPM cannot be reached.
    """
    fuses = read_fuses(directory)
    if fuses is None:
        raise VerificationFailed(
            f"{directory} has no fuses.json", hint="the device has no boot chain",
            code="boot.fuses",
        )  # fmt: skip
    measurer = TpmMeasurer(tpm, DeviceTpm(directory))
    for pcr, component, template in (
        (ROM_PCR, "rom", ROM_IDENTITY),
        (BOOTLOADER_PCR, "bootloader", BOOTLOADER_IDENTITY),
    ):
        identity = template.format(model=fuses.model)
        measurer.extend(pcr, component, _identity(identity), identity)
    if skip_verify:
        result = _glitched_boot(env_store=env_store, slots=slots, measurer=measurer)
    else:
        result = boot(directory, env_store=env_store, slots=slots, measurer=measurer)
    version = agent_version if agent_version is not None else product_version()
    detail = AGENT_IDENTITY.format(version=version)
    measurer.extend(AGENT_PCR, "agent", _identity(detail), detail)
    return result


def _glitched_boot(*, env_store: BootEnvStore, slots: Slots, measurer: Measurer) -> BootResult:
    """The bootloader with its verification glitched away: run the environment's slot.

    Simulation only (the tamper tests): nothing is verified, the image is still measured.
    """
    slot = env_store.read().boot_slot
    try:
        _length, digest = sha256_file(slots.image_path(slot))
    except OSError as exc:
        raise VerificationFailed(
            f"slot {slot} has no image", code="boot.no_slot", hint="nothing to run"
        ) from exc
    version = _claimed_version(slots, slot)
    logger.warning("boot fault: slot %s runs without verification", slot)
    measurer.extend(IMAGE_PCR, "image", bytes.fromhex(digest), f"slot {slot} release {version}")
    return BootResult(slot=slot, version=version, fell_back=False, reason="verification skipped")


def _claimed_version(slots: Slots, slot: Slot) -> str:
    data = slots.manifest_bytes(slot, max_bytes=MAX_EVENTLOG_BYTES)
    try:
        version = json.loads(data or b"{}").get("version")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        version = None
    return version if isinstance(version, str) and len(version) <= 64 else "unknown"


def quoted_pcrs(requested: Sequence[int]) -> list[int]:
    """The PCRs a challenge may have quoted: only the boot chain's (0, 4, 9, 10)."""
    allowed = (ROM_PCR, BOOTLOADER_PCR, IMAGE_PCR, AGENT_PCR)
    return [pcr for pcr in allowed if pcr in set(requested)]
