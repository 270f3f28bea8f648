"""The boot loop around the agent: bootloader → agent → (reboot) → bootloader → …

``boot_in_child`` runs the simulated bootloader in a child process (``trustfleet-agent boot``)
so that ``cryptography``, which verified boot needs, never stays in the agent's memory. A
reboot re-executes the agent process (``reexec``), as a device's reboot clears its memory.
``update_once`` is ``trustfleet-agent update``: boot, agent with one update, reboot, boot,
agent with the health check and commit, to the update's outcome.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from trustfleet.agent.platform.bootloader import BootResult, boot, boot_result_from
from trustfleet.agent.platform.devfolder import hold_device
from trustfleet.agent.platform.layout import DeviceLayout
from trustfleet.errors import InvalidInput, TrustFleetError, VerificationFailed

if TYPE_CHECKING:
    from trustfleet.agent.settings import DeviceSettings

__all__ = ["OUTCOME_EXIT", "boot_in_child", "boot_in_process", "on_trial", "reexec", "update_once"]

logger = logging.getLogger(__name__)

OUTCOME_EXIT = {"committed": 0, "up_to_date": 0, "refused": 10, "failed": 11, "rolled_back": 12}
"""Exit codes of ``trustfleet-agent update`` by outcome (anything else: 1)."""

_BOOT_TIMEOUT_S = 300
_EXTRA_BOOTS = 3  # boots allowed beyond the boot limit before `update` gives up


def boot_in_process(directory: Path) -> BootResult | None:
    """Run the bootloader here; None for a device without a boot chain.

    Raises:
        VerificationFailed: No slot is bootable, or the boot key is not the fused one.
    """
    layout = DeviceLayout(directory)
    if not layout.has_boot_chain():
        return None
    from trustfleet.agent._tpmhooks import boot_measured  # noqa: PLC0415

    # With the device's TPM powered on: the measured boot (PCRs 0, 4, 9, 10 and the log).
    measured = boot_measured(directory, env_store=layout.env_store(), slots=layout.slots())
    if measured is not None:
        return measured
    return boot(directory, env_store=layout.env_store(), slots=layout.slots())


def boot_in_child(directory: Path) -> BootResult | None:
    """Run the bootloader in a child process; None for a device without a boot chain.

    Raises:
        VerificationFailed: The bootloader found no bootable slot (code ``boot.failed``).
    """
    if not DeviceLayout(directory).has_boot_chain():
        return None
    args = [sys.executable, "-m", "trustfleet.agent", "boot", "--device", str(directory), "--json"]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=_BOOT_TIMEOUT_S, check=False
    )
    try:
        if proc.returncode == 0:
            return boot_result_from(json.loads(proc.stdout))
    except (json.JSONDecodeError, InvalidInput):
        pass
    why = (proc.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
    raise VerificationFailed(
        f"the device does not boot: {why[:300]}",
        hint="re-provision the device at the factory",
        code="boot.failed",
    )


def on_trial(directory: Path) -> bool:
    """Whether a new slot is on trial (a failed agent start then counts as a failed boot)."""
    return DeviceLayout(directory).env_store().read().upgrade_available


def reexec(argv: list[str]) -> NoReturn:
    """Reboot: replace this process by a fresh agent with the same arguments."""
    logger.info("rebooting")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "trustfleet.agent", *argv])  # noqa: S606


def update_once(
    device: Path,
    *,
    version: str | None,
    as_json: bool,
    stop: threading.Event,
    now: Callable[[], datetime],
) -> int:
    """``trustfleet-agent update``: one update through its reboots; exit code by outcome.

    Raises:
        Conflict: Another agent runs on this device folder.
    """
    from trustfleet.agent.settings import load_device_settings  # noqa: PLC0415

    settings = load_device_settings(device)
    layout = DeviceLayout(settings.directory)
    lock = hold_device(settings.directory)  # before the TPM: one agent per device folder
    try:
        return _update_locked(settings, layout, version=version, as_json=as_json, stop=stop,
                              now=now)  # fmt: skip
    finally:
        lock.release()


def _update_locked(
    settings: DeviceSettings,
    layout: DeviceLayout,
    *,
    version: str | None,
    as_json: bool,
    stop: threading.Event,
    now: Callable[[], datetime],
) -> int:
    from trustfleet.agent.runner import RunSummary, run_agent  # noqa: PLC0415
    from trustfleet.agent.updater.engine import UpdateRequest  # noqa: PLC0415
    from trustfleet.agent.updater.worker import REBOOT_EXIT_CODE, UpdateJob  # noqa: PLC0415

    if not layout.has_boot_chain():
        refused = {
            "outcome": "refused",
            "code": "ota.no_boot_chain",
            "reason": "this device has no A/B boot chain",
        }
        return _print_outcome(refused, as_json=as_json)
    request: UpdateRequest | None = UpdateRequest(version=version)
    summaries: list[RunSummary] = []
    boots = 0
    from trustfleet.agent._tpmhooks import power_off, power_on  # noqa: PLC0415

    for boots in range(1, layout.env_store().read().bootlimit + _EXTRA_BOOTS + 1):  # noqa: B007
        power_on(settings.directory)  # each boot resets the TPM (no-op without one)
        booted = boot_in_process(settings.directory)
        try:
            code = run_agent(
                settings,
                once=False,
                stop=stop,
                now=now,
                on_summary=summaries.append,
                boot=booted,
                update=UpdateJob(request),
            )
        except TrustFleetError as exc:
            if not on_trial(settings.directory):
                raise
            logger.warning("agent failed on a trial boot (%s): rebooting", exc.one_line())
            code = REBOOT_EXIT_CODE
        request = None  # after the first boot: recovery only (trial, commit, rollback)
        if code != REBOOT_EXIT_CODE or stop.is_set():
            break
    power_off(settings.directory)
    last = summaries[-1] if summaries else RunSummary(device_id=settings.device.id)
    return _print_outcome(
        {
            "device_id": last.device_id,
            "outcome": last.ota_state,
            "version": last.ota_version,
            "firmware_version": last.firmware_version,
            "slot": last.slot,
            "reason": last.ota_reason,
            "code": last.ota_code,
            "boots": boots,
        },
        as_json=as_json,
    )


def _print_outcome(doc: Mapping[str, object], *, as_json: bool) -> int:
    outcome = str(doc.get("outcome", ""))
    if as_json:
        print(json.dumps(doc, sort_keys=True))
    else:
        why = f" ({doc['reason']})" if doc.get("reason") else ""
        print(
            f"{outcome or 'unknown'}: firmware {doc.get('firmware_version', '')} on slot "
            f"{doc.get('slot', '')}{why}"
        )
    return OUTCOME_EXIT.get(outcome, 1)
