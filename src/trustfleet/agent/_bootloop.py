"""The boot loop around the agent: bootloader → agent → (reboot) → bootloader → …

:func:`run_boot_loop` is the one loop behind ``trustfleet-agent run`` and ``trustfleet agent
run`` (and the simulation's entry point): each passes an :class:`AgentEntry` that says which
entry point a boot child and a reboot run, and which faults (the test seam) are injected.
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
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final, NoReturn

from trustfleet.agent.platform.bootloader import BootResult, boot, boot_result_from
from trustfleet.agent.platform.devfolder import LOCK_ENV, hold_device
from trustfleet.agent.platform.faults import NO_FAULTS, OPTION, Faults
from trustfleet.agent.platform.layout import DeviceLayout
from trustfleet.errors import InvalidInput, TrustFleetError, VerificationFailed

if TYPE_CHECKING:
    from trustfleet.agent._runparts import RunSummary
    from trustfleet.agent.settings import DeviceSettings

__all__ = [
    "DEVICE_ENTRY",
    "OUTCOME_EXIT",
    "SIMULATED_MODULE",
    "AgentEntry",
    "LoopOutcome",
    "SignalStop",
    "boot_in_child",
    "boot_in_process",
    "on_trial",
    "reexec",
    "run_boot_loop",
    "stop_on_signals",
    "update_once",
]

logger = logging.getLogger(__name__)

OUTCOME_EXIT = {"committed": 0, "up_to_date": 0, "refused": 10, "failed": 11, "rolled_back": 12}
"""Exit codes of ``trustfleet-agent update`` by outcome (anything else: 1)."""

_BOOT_TIMEOUT_S = 300
_EXTRA_BOOTS = 3  # boots allowed beyond the boot limit before `update` gives up
SIMULATED_MODULE: Final = "trustfleet.agent.simulated"
"""The simulation's entry point (``python -m``): the device's, plus ``--faults``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEntry:
    """The entry point a boot child and a reboot run, and the faults it injects.

    Attributes:
        module: ``trustfleet.agent`` (the device's) or :data:`SIMULATED_MODULE`.
        faults: The test seam; only the simulation's entry point has any.
    """

    module: str = "trustfleet.agent"
    faults: Faults = NO_FAULTS

    def argv(self, *args: str) -> list[str]:
        """The command line running ``args`` on this entry point (its faults passed on)."""
        extra = [OPTION, self.faults.spec] if self.faults.spec else []
        return [sys.executable, "-m", self.module, *args, *extra]


DEVICE_ENTRY: Final = AgentEntry()
"""The device's own entry point (``trustfleet-agent``): never any fault."""


@dataclass
class SignalStop:
    """SIGTERM and SIGINT set ``event``; ``received`` lists the signals that came."""

    event: threading.Event = field(default_factory=threading.Event)
    received: list[int] = field(default_factory=list)


@contextmanager
def stop_on_signals() -> Iterator[SignalStop]:
    """Inside the block SIGTERM and SIGINT stop the agent cleanly (handlers restored after)."""
    stop = SignalStop()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.received.append(signum)
        stop.event.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True, slots=True)
class LoopOutcome:
    """How a boot loop ended: its exit code and what the agent's run did (if it ran)."""

    code: int
    summary: RunSummary | None


def run_boot_loop(
    device: Path,
    *,
    once: bool,
    as_json: bool,
    stop: threading.Event,
    now: Callable[[], datetime],
    entry: AgentEntry,
) -> LoopOutcome:
    """Boot (in a child), run the agent; on a reboot re-execute ``entry`` (never returns then).

    A new slot on trial whose agent fails to start counts as a failed boot: the loop reboots
    (the bootloader then falls back after the boot limit).

    Raises:
        Conflict: Another agent runs on this device folder.
        VerificationFailed: The device does not boot (code ``boot.failed``).
        TrustFleetError: What the agent's run raised (not on a trial boot).
    """
    from trustfleet.agent._tpmhooks import power_off, power_on  # noqa: PLC0415
    from trustfleet.agent.decommission import refuse_if_decommissioned  # noqa: PLC0415
    from trustfleet.agent.settings import load_device_settings  # noqa: PLC0415
    from trustfleet.agent.updater.worker import REBOOT_EXIT_CODE  # noqa: PLC0415

    summaries: list[RunSummary] = []
    settings = load_device_settings(device)
    refuse_if_decommissioned(settings.directory)
    lock = hold_device(settings.directory)  # before the TPM: one agent per device folder
    power_on(settings.directory)  # a boot resets the TPM (no-op for a device without one)
    booted = boot_in_child(settings.directory, entry=entry)
    code = _run_on_boot(settings, booted, once=once, stop=stop, now=now, entry=entry,
                        on_summary=summaries.append)  # fmt: skip
    if code == REBOOT_EXIT_CODE and not stop.is_set():
        lock.keep_across_exec(LOCK_ENV)  # the rebooted agent holds it without a gap
        flags = [*(["--once"] if once else []), *(["--json"] if as_json else [])]
        reexec(entry.argv("run", "--device", str(device), *flags))
    power_off(settings.directory)  # a clean shutdown: TPM2_Shutdown, swtpm stopped
    return LoopOutcome(0 if code == REBOOT_EXIT_CODE else code, next(iter(summaries), None))


def _run_on_boot(
    settings: DeviceSettings,
    booted: BootResult | None,
    *,
    once: bool,
    stop: threading.Event,
    now: Callable[[], datetime],
    entry: AgentEntry,
    on_summary: Callable[[RunSummary], None],
) -> int:
    """Run the agent; a failure on a trial boot asks for a reboot (a failed boot) instead."""
    from trustfleet.agent.runner import run_agent  # noqa: PLC0415
    from trustfleet.agent.updater.worker import REBOOT_EXIT_CODE  # noqa: PLC0415

    try:
        return run_agent(settings, once=once, stop=stop, now=now, on_summary=on_summary,
                         boot=booted, faults=entry.faults)  # fmt: skip
    except TrustFleetError as exc:
        if booted is None or not on_trial(settings.directory):
            raise
        print(f"error: {exc.one_line()} (new slot on trial: rebooting)", file=sys.stderr)
        return REBOOT_EXIT_CODE


def boot_in_process(directory: Path, *, faults: Faults = NO_FAULTS) -> BootResult | None:
    """Run the bootloader here; None for a device without a boot chain.

    Raises:
        VerificationFailed: No slot is bootable, or the boot key is not the fused one.
    """
    layout = DeviceLayout(directory)
    if not layout.has_boot_chain():
        return None
    from trustfleet.agent._tpmhooks import boot_measured  # noqa: PLC0415

    # With the device's TPM powered on: the measured boot (PCRs 0, 4, 9, 10 and the log).
    measured = boot_measured(
        directory,
        env_store=layout.env_store(),
        slots=layout.slots(),
        skip_verify=faults.boot_skip_verify,
    )
    if measured is not None:
        return measured
    return boot(directory, env_store=layout.env_store(), slots=layout.slots())


def boot_in_child(directory: Path, *, entry: AgentEntry = DEVICE_ENTRY) -> BootResult | None:
    """Run the bootloader in a child process; None for a device without a boot chain.

    Raises:
        VerificationFailed: The bootloader found no bootable slot (code ``boot.failed``).
    """
    if not DeviceLayout(directory).has_boot_chain():
        return None
    args = entry.argv("boot", "--device", str(directory), "--json")
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
    """Reboot: replace this process by a fresh agent (``argv``: :meth:`AgentEntry.argv`)."""
    logger.info("rebooting")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # noqa: S606


def update_once(
    device: Path,
    *,
    version: str | None,
    as_json: bool,
    stop: threading.Event,
    now: Callable[[], datetime],
    faults: Faults = NO_FAULTS,
) -> int:
    """``trustfleet-agent update``: one update through its reboots; exit code by outcome.

    The boots run in this process (with ``faults``, the simulation's test seam).

    Raises:
        Conflict: Another agent runs on this device folder.
    """
    from trustfleet.agent.settings import load_device_settings  # noqa: PLC0415

    settings = load_device_settings(device)
    layout = DeviceLayout(settings.directory)
    lock = hold_device(settings.directory)  # before the TPM: one agent per device folder
    try:
        return _update_locked(settings, layout, version=version, as_json=as_json, stop=stop,
                              now=now, faults=faults)  # fmt: skip
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
    faults: Faults,
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
        booted = boot_in_process(settings.directory, faults=faults)
        try:
            code = run_agent(
                settings,
                once=False,
                stop=stop,
                now=now,
                on_summary=summaries.append,
                boot=booted,
                update=UpdateJob(request),
                faults=faults,
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
