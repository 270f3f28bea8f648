"""Stopping what a benchmark started: by process group, never by name."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["stop_group"]


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc`` (started with ``start_new_session``), then
    SIGKILL it after ``timeout``; if the leader is gone already, kill what remains of its group
    (e.g. server workers)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
