"""The device agent's boot loop (``trustfleet-agent run``) as a managed child of a test.

One way to start it for the device-level tests (attestation, OTA): in its own session, its
output in a log file, without the fault switch the test process may carry, stopped by its
process group (:class:`~trustfleet.sim.process.ManagedProcess`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trustfleet.sim.process import ManagedProcess

__all__ = ["LEAN_AGENT", "agent_environ", "boot_loop"]

LEAN_AGENT = Path(sys.executable).parent / "trustfleet-agent"
FAULTS_VARIABLE = "TF_OTA_FAULTS"


def agent_environ() -> dict[str, str]:
    """This process's environment without the agent's fault switch."""
    return {k: v for k, v in os.environ.items() if k != FAULTS_VARIABLE}


def boot_loop(device: Path, *, log: Path) -> ManagedProcess:
    """``trustfleet-agent run --device DEVICE``, started; its output appended to ``log``."""
    argv = [LEAN_AGENT, "run", "--device", device]
    name = f"agent {device.name}"
    return ManagedProcess(argv, log=log, env=agent_environ(), name=name).start()
