"""A real ``flock(1)`` process holding a file lock, for the tests of bounded lock waits.

The holder runs in its own session and counts as started once a non-blocking ``flock`` on the
same file fails; :meth:`~trustfleet.sim.process.ManagedProcess.stop` releases the lock.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from trustfleet.sim.process import ManagedProcess

__all__ = ["hold_lock", "lock_is_held"]

HOLD_TIMEOUT_S = 60.0


def lock_is_held(lock: Path) -> bool:
    """Whether someone holds an exclusive ``flock`` on ``lock`` now."""
    probe = subprocess.run(["flock", "--nonblock", str(lock), "true"], check=False)
    return probe.returncode != 0


def hold_lock(lock: Path, *, log: Path = Path(os.devnull)) -> ManagedProcess:
    """Start a process that holds an exclusive lock on ``lock``; returns once it holds it.

    Raises:
        Unavailable: The holder did not take the lock within a minute.
    """
    holder = ManagedProcess(
        ["flock", "--exclusive", lock, "sleep", "600"],
        log=log,
        ready=lambda: lock_is_held(lock),
        name=f"flock {lock.name}",
    )
    return holder.start(timeout_s=HOLD_TIMEOUT_S)
