"""Process helpers of the broker's supervisor: descriptors, readiness, log tail, termination."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
from pathlib import Path

__all__ = ["accepts", "raise_open_files", "tail_of", "terminate"]

_LOG_TAIL_BYTES = 4096


def raise_open_files(wanted: int) -> None:
    """In the child before exec: as many descriptors as allowed, up to ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail_of(path: Path) -> str:
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def terminate(proc: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """SIGTERM the child's process group, then SIGKILL it after ``timeout_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait(timeout=timeout_s)
