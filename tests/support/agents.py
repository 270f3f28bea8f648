"""The device agent's boot loop (``run``) as a managed child of a test.

One way to start it for the device-level tests (attestation, OTA): the simulation's entry point
(``python -m trustfleet.agent.simulated``: ``trustfleet-agent`` plus the fault seam, which reads
``faults.json``), in its own session, its output in a log file, stopped by its process group
(:class:`~trustfleet.sim.process.ManagedProcess`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from trustfleet.agent import SIMULATED_MODULE
from trustfleet.sim.process import ManagedProcess

__all__ = ["SIM_AGENT", "boot_loop"]

SIM_AGENT: tuple[str, ...] = (sys.executable, "-m", SIMULATED_MODULE)
"""The argv prefix of the simulated device's agent."""


def boot_loop(device: Path, *, log: Path) -> ManagedProcess:
    """``<simulated agent> run --device DEVICE``, started; its output appended to ``log``."""
    argv = [*SIM_AGENT, "run", "--device", str(device)]
    return ManagedProcess(argv, log=log, name=f"agent {device.name}").start()
