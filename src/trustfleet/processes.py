"""Process lifetime: one owner per folder, children that die with their parent, pid identity.

Like ``fileio``, every package may use it (the server for its home, the agent for its device
folder, the broker for Mosquitto).

* :func:`hold_exclusive` takes a private (0600) lock file with ``flock`` and writes the
  holder's pid into it; a second holder is refused at once with one line naming that pid.
  The kernel drops the lock when its holder dies, however it dies, so a lock never goes stale.
* :func:`die_with_parent` is ``prctl(PR_SET_PDEATHSIG)``: the kernel signals a child when its
  parent (thread) dies, even by ``kill -9``. It is cleared when the child changes its uid (a
  broker dropping privileges), so parents also record their children (:class:`ProcessIdentity`)
  and check a recorded pid is still that very process before signalling it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from trustfleet.errors import Config, Conflict

__all__ = [
    "HeldLock",
    "ProcessIdentity",
    "die_with_parent",
    "die_with_parent_preexec",
    "die_with_process",
    "hold_exclusive",
    "identity_of",
    "names_folder",
    "open_lock_file",
]

_PR_SET_PDEATHSIG: Final = 1
_MAX_PID_BYTES: Final = 32
_MAX_PROC_BYTES: Final = 256 * 1024
HOME_ENV: Final = "TRUSTFLEET_OWNER_DIR"
"""Environment variable naming the folder a process works for (checked in /proc/PID/environ)."""


@dataclass(frozen=True)
class HeldLock:
    """An exclusive lock on a file, held until :meth:`release` or the holder's death.

    Attributes:
        path: The lock file.
        fd: Its open descriptor (the ``flock`` lives on it).
    """

    path: Path
    fd: int

    def release(self) -> None:
        """Drop the lock (closing the descriptor drops it)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def keep_across_exec(self, env_name: str) -> None:
        """Let an ``exec`` of this process keep the lock (its new image adopts it)."""
        os.set_inheritable(self.fd, True)
        os.environ[env_name] = str(self.fd)


def hold_exclusive(path: Path, *, what: str, hint: str, code: str, env_name: str = "") -> HeldLock:
    """Take the exclusive lock ``path`` (created 0600, never through a symlink) without waiting.

    Args:
        path: The lock file; its folder must exist.
        what: What the lock guards, for the error (``"the server home /srv/tf"``).
        hint: What to do when it is held.
        code: The error code when it is held.
        env_name: Adopt a lock this process inherited across ``exec`` (see ``keep_across_exec``).

    Returns:
        The held lock; the holder's pid is written in the file.

    Raises:
        Conflict: Another process holds it (the message names its pid).
        Config: The lock file cannot be opened (not a regular file, no permission).
    """
    adopted = _adopt(path, env_name) if env_name else None
    if adopted is not None:
        return adopted
    fd = open_lock_file(
        path,
        what="the lock file",
        hint="remove it if it is a symlink or not a regular file",
        code="lock.open",
    )
    try:
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise Config(f"cannot lock {path}: {exc.strerror}", code="lock.open") from exc
        holder = _holder(path)
        raise Conflict(f"{what} is in use by pid {holder}", hint=hint, code=code) from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return HeldLock(path=path, fd=fd)


def open_lock_file(path: Path, *, what: str, hint: str, code: str) -> int:
    """Open a lock file for reading and writing, created 0600, never through a symlink.

    Args:
        path: The lock file; its folder must exist.
        what: What it is, for the error (``"the lock file"``).
        hint: What to do when it cannot be opened.
        code: The error code when it cannot be opened.

    Returns:
        The descriptor (close-on-exec).

    Raises:
        Config: It cannot be opened (a symlink, not a regular file, no permission).
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise Config(f"cannot open {what} {path}: {exc.strerror}", hint=hint, code=code) from exc


def _adopt(path: Path, env_name: str) -> HeldLock | None:
    text = os.environ.pop(env_name, "")
    if not text.isdigit():
        return None
    fd = int(text)
    try:
        mine, locked = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if (mine.st_dev, mine.st_ino) != (locked.st_dev, locked.st_ino):
        return None
    os.set_inheritable(fd, False)
    return HeldLock(path=path, fd=fd)  # exec keeps the pid: the file stays right


def _holder(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            text = fh.read(_MAX_PID_BYTES).decode("ascii", errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def die_with_parent(*, parent_pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only).

    Exits at once if the parent is already gone (it died before the request took effect).
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os._exit(1)


def die_with_process(pid: int, *, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send ``sig`` to this process when process ``pid`` (not necessarily its parent) exits.

    A daemon thread waits on a pidfd of ``pid`` (Linux 5.3+). Exits at once if ``pid`` is
    already gone.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)

    def watch() -> None:
        select.select([fd], [], [])  # readable once pid has exited
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()


def die_with_parent_preexec(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` part for ``subprocess``: :func:`die_with_parent` for an exec'd child.

    ``prctl`` is looked up here, in the parent, so the child between fork and exec only calls
    it (no ``dlopen`` after a fork). The setting survives ``exec`` but not a change of uid.
    """
    parent_pid = os.getpid()
    if not sys.platform.startswith("linux"):
        return lambda: None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as it was started: its pid and its start time (clock ticks after boot).

    A pid is reused by the kernel; the pair is not.
    """

    pid: int
    start_ticks: int

    def alive(self) -> bool:
        """Whether this very process still runs (same pid, same start time, not a zombie)."""
        now = identity_of(self.pid)
        return now is not None and now.start_ticks == self.start_ticks


def identity_of(pid: int) -> ProcessIdentity | None:
    """The identity of a live process from ``/proc/PID/stat``; None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read(4096).rsplit(b")", 1)[-1].split()
    except OSError:
        return None
    try:
        state, start = fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None
    return None if state in (b"Z", b"X") else ProcessIdentity(pid=pid, start_ticks=start)


def names_folder(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` works for ``folder``: its command line or environment names it."""
    wanted = str(folder).encode()
    for name in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as fh:
                parts = fh.read(_MAX_PROC_BYTES).split(b"\0")
        except OSError:
            continue
        if name == "environ" and f"{HOME_ENV}=".encode() + wanted in parts:
            return True
        if name == "cmdline" and any(p == wanted or p.startswith(wanted + b"/") for p in parts):
            return True
    return False
