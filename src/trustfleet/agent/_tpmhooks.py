"""Where the TPM plugs into the agent: power, measured boot, sealed state, AK, child commands.

The boot loop, the runner and the updater call these small functions, each a no-op for a
device without a TPM (older device folders, or swtpm not installed at the factory):

* :func:`power_on` / :func:`power_off`: at each boot and at a clean exit (main thread);
* :func:`boot_measured`: the bootloader with the TPM as its measurer, then the sealed state;
* :func:`ensure_ak_enrolled`: once, after EST enrollment (in a child process);
* :func:`reseal_for`: the updater's hook right before it switches slots;
* the child commands ``attest`` and ``ak-enroll`` of ``python -m trustfleet.agent``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustfleet.agent.platform.measured_boot import DeviceTpm, recorded_pid
from trustfleet.errors import TrustFleetError

if TYPE_CHECKING:
    from trustfleet.agent.platform.bootenv import BootEnvStore
    from trustfleet.agent.platform.bootloader import BootResult
    from trustfleet.agent.platform.slots import Slots
    from trustfleet.agent.settings import DeviceSettings

__all__ = [
    "COMMANDS",
    "add_commands",
    "boot_measured",
    "ensure_ak_enrolled",
    "power_off",
    "power_on",
    "reseal_for",
    "run_command",
]

logger = logging.getLogger(__name__)

COMMANDS = frozenset({"attest", "ak-enroll", "wipe"})
_MAX_MANIFEST_BYTES = 64 * 1024


def power_on(directory: Path) -> bool:
    """Power-cycle the device's TPM (a boot); whether the device has one."""
    device = DeviceTpm(directory)
    if not device.present():
        return False
    device.power_on()
    return True


def power_off(directory: Path) -> None:
    """Power the device's TPM off (a clean shutdown); nothing without a TPM."""
    device = DeviceTpm(directory)
    if device.present():
        device.power().power_off()


def powered(directory: Path) -> bool:
    """Whether the device's TPM is on (its swtpm runs)."""
    device = DeviceTpm(directory)
    return device.present() and recorded_pid(device.state_dir) is not None


def boot_measured(
    directory: Path, *, env_store: BootEnvStore, slots: Slots, skip_verify: bool = False
) -> BootResult | None:
    """The measured boot when the TPM is on, then the sealed state; None without a TPM.

    Raises:
        VerificationFailed: No slot is bootable, or the boot key is not the fused one.
    """
    if not powered(directory):
        return None
    from trustfleet.agent.platform.bootloader import read_fuses  # noqa: PLC0415
    from trustfleet.agent.platform.measured_boot import measured_boot  # noqa: PLC0415
    from trustfleet.agent.sealed import record_boot  # noqa: PLC0415

    device = DeviceTpm(directory)
    with device.open() as tpm:
        result = measured_boot(
            directory, tpm=tpm, env_store=env_store, slots=slots, skip_verify=skip_verify
        )
        fuses = read_fuses(directory)
        manifest = slots.manifest_bytes(result.slot, max_bytes=_MAX_MANIFEST_BYTES)
        if fuses is not None and manifest is not None:
            on_trial = env_store.read().upgrade_available
            boot = {"slot": result.slot, "version": result.version, "on_trial": on_trial}
            record_boot(directory, tpm=tpm, model=fuses.model, slot_manifest=manifest, boot=boot)
    return result


def reseal_for(directory: Path, *, model: str, current_manifest: bytes, next_manifest: bytes
               ) -> None:  # fmt: skip
    """Reseal the data key to the next release's boot, keeping the current boot's too.

    Called by the updater right before it switches slots; a device without sealed storage
    (or with its state already locked) is left as it is, with a warning.
    """
    from trustfleet.agent.sealed import (  # noqa: PLC0415
        SealedStorage,
        boot_pcr_values,
        release_image_sha256,
    )

    if not powered(directory):
        return
    current, following = release_image_sha256(current_manifest), release_image_sha256(next_manifest)
    device = DeviceTpm(directory)
    try:
        with device.open() as tpm:
            storage = SealedStorage(directory, tpm=tpm)
            if not storage.initialized() or current is None or following is None:
                return
            storage.prepare_update(
                current=boot_pcr_values(model=model, image_sha256=current),
                following=boot_pcr_values(model=model, image_sha256=following),
            )
    except TrustFleetError as exc:
        logger.warning("sealed storage not resealed: %s", exc.one_line())


def ensure_ak_enrolled(settings: DeviceSettings) -> bool:
    """Enroll the AK once (child process) when the device has a TPM, an LDevID and no AK.

    Returns:
        Whether the AK is enrolled now. A failure is logged and retried at the next start.
    """
    from trustfleet.agent.akenroll import ak_enrolled, enroll_ak_in_child  # noqa: PLC0415

    directory = settings.directory
    if not powered(directory) or ak_enrolled(directory):
        return ak_enrolled(directory)
    if not settings.path(settings.identity.ldevid).is_file():
        return False
    try:
        enroll_ak_in_child(directory)
    except TrustFleetError as exc:
        logger.warning("%s (retried at the next start)", exc.one_line())
        return False
    logger.info("attestation key enrolled")
    return True


def add_commands(commands: Any) -> None:
    """Add ``attest`` and ``ak-enroll`` (child commands of the agent) to the parser."""
    attest = commands.add_parser("attest", help="answer one challenge read from stdin (child)")
    attest.add_argument("--device", type=Path, required=True, help="the device folder")
    attest.add_argument("--release", help="the release this boot runs")
    attest.add_argument("--slot", choices=("a", "b"), help="the slot this boot runs")
    enroll = commands.add_parser("ak-enroll", help="bind the TPM's AK at the service (once)")
    enroll.add_argument("--device", type=Path, required=True, help="the device folder")
    wipe = commands.add_parser("wipe", help="decommission: wipe keys, sealed data (child)")
    wipe.add_argument("--device", type=Path, required=True, help="the device folder")


def run_command(args: argparse.Namespace, *, now: Callable[[], datetime]) -> int:
    """Run ``attest`` (evidence on stdout), ``ak-enroll`` or ``wipe`` (wipe evidence on stdout).

    Raises:
        TrustFleetError: Whatever failed (the caller prints one line).
    """
    if args.command == "attest":
        from trustfleet.agent.attester import MAX_CHALLENGE_BYTES, attest_main  # noqa: PLC0415

        payload = sys.stdin.buffer.read(MAX_CHALLENGE_BYTES + 1)
        evidence = attest_main(args.device, payload, release=args.release, slot=args.slot)
        sys.stdout.buffer.write(evidence + b"\n")
        return 0
    if args.command == "wipe":
        from trustfleet.agent.decommission import run_wipe_command  # noqa: PLC0415

        return run_wipe_command(args.device, now=now())
    from trustfleet.agent.akenroll import enroll_ak  # noqa: PLC0415
    from trustfleet.agent.settings import load_device_settings  # noqa: PLC0415

    settings = load_device_settings(args.device)
    with DeviceTpm(settings.directory).open() as tpm:
        record = enroll_ak(settings, tpm=tpm, now=now())
    print(f"attestation key {record.ak_name[:16]}… enrolled for {record.device_id}")
    return 0
