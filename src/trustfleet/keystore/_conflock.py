"""The cross-process lock of a SoftHSM2 configuration (no python-pkcs11 here).

SoftHSM2 rewrites ``token.object`` on every ``C_Login``, and reads every token's file in
``C_Initialize`` and in lookups; see :mod:`trustfleet.keystore._runtime` for who holds the lock.
This module imports neither python-pkcs11 nor awscrt, so the awscrt TLS context can take the
lock without loading python-pkcs11 into a device agent.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trustfleet.processes import open_lock_file

__all__ = ["conf_lock"]


class _ConfLock:
    """One configuration's cross-process lock: re-entrant in a thread, excludes other threads
    of this process (one ``RLock``) and other processes (``flock`` while the outer hold lasts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.thread_lock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_CONF_LOCKS: dict[Path, _ConfLock] = {}
_CONF_LOCKS_GUARD = threading.Lock()


@contextmanager
def conf_lock(conf: Path | None) -> Iterator[None]:
    """Hold the lock of a SoftHSM2 configuration against every other process using it.

    Args:
        conf: The configuration (None: nothing to hold, the process environment's is unknown).

    Raises:
        Config: The lock file cannot be opened.
    """
    if conf is None:
        yield
        return
    path = Path(f"{conf.resolve()}.lock")
    with _CONF_LOCKS_GUARD:
        lock = _CONF_LOCKS.setdefault(path, _ConfLock(path))
    with lock.thread_lock:
        if lock.depth == 0:
            fd = open_lock_file(
                path,
                what="the token lock",
                hint="the folder of the SoftHSM2 configuration must be writable by this user",
                code="keystore.conf.lock",
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # Python retries it after a signal (PEP 475)
            except OSError:
                os.close(fd)
                raise
            lock.fd = fd
        lock.depth += 1
        try:
            yield
        finally:
            lock.depth -= 1
            if lock.depth == 0 and lock.fd is not None:
                os.close(lock.fd)  # closing the descriptor releases the flock
                lock.fd = None
