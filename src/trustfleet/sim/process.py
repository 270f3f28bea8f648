"""Processes the harness starts: a free loopback port, and a managed child process.

One implementation for the demo, the tests' kits and the benchmarks (issue 10): a child runs in
its own session (its own process group), writes its output to a log file, is ready when its
check says so (never after a fixed sleep), and stops by SIGTERM to its group, then SIGKILL after
a bound. It is stopped by its process id, never by a name: other work may run on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from trustfleet.errors import Unavailable

__all__ = [
    "ManagedProcess",
    "free_port",
    "group_alive",
    "port_open",
    "stop_group",
    "stop_pid_group",
    "wait_until",
]

T = TypeVar("T")

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1", *, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], T | None], *, timeout_s: float, what: str, poll_s: float = POLL_S
) -> T:
    """Poll ``check`` until it returns a truthy value, and return that value.

    Raises:
        Unavailable: Not true within ``timeout_s`` (the message names ``what``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Unavailable(f"{what}: not reached within {timeout_s:.0f} s")
        time.sleep(poll_s)


def stop_group(proc: subprocess.Popen[bytes], *, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the process group led by ``proc`` (started in its own session), then SIGKILL it
    after ``timeout_s``; if the leader is gone already, kill what remains of its group. It
    returns once the group is gone (or a further ``timeout_s`` has passed).

    Returns:
        The leader's exit status (None if it could not be reaped).
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout_s)
    # What the leader left in its group (workers) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    _wait_group_gone(proc.pid, timeout_s=timeout_s)
    return proc.returncode


def group_alive(pgid: int) -> bool:
    """Whether any process of the group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid_group(pgid: int, *, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop a process group this process did not start (e.g. left by ``demo --keep``).

    SIGTERM to the group led by ``pgid``, then SIGKILL after ``timeout_s``; a group that is
    gone already is fine. Its processes are not our children: they are reaped by init.

    Returns:
        Whether the group is gone.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, timeout_s=timeout_s):
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    return _wait_group_gone(pgid, timeout_s=timeout_s)


def _wait_group_gone(pgid: int, *, timeout_s: float) -> bool:
    """Wait (bounded) until no process of the group ``pgid`` exists; whether none does."""
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


class ManagedProcess:
    """A child process in its own session, its output in a log file, stopped by its group.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        argv: The command.
        log: Where stdout and stderr go (appended).
        env: The environment (default: this process's).
        cwd: The working folder.
        ready: A check that returns True once the process serves (e.g. a port accepts).
        name: A short name for messages.
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.ready = ready
        self.name = name or Path(self.argv[0]).name
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else f"pid {self.proc.pid}"
        return f"<ManagedProcess {self.name} {state}>"

    @property
    def pid(self) -> int:
        """The child's pid (it leads its own process group)."""
        if self.proc is None:
            raise Unavailable(f"{self.name} was not started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        """Whether the child was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, timeout_s: float = READY_TIMEOUT_S) -> ManagedProcess:
        """Start the child and wait until ``ready`` (if given) says it serves.

        Raises:
            Unavailable: It exited, or was not ready within ``timeout_s`` (then it is stopped;
                the message ends with the last line of its log).
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        if self.ready is not None:
            try:
                self.wait_ready(timeout_s=timeout_s)
            except BaseException:
                self.stop()
                raise
        return self

    def wait_ready(self, *, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until ``ready`` is true.

        Raises:
            Unavailable: The child exited first, or ``timeout_s`` passed.
        """
        check = self.ready or (lambda: True)
        deadline = time.monotonic() + timeout_s
        while not check():
            if not self.running:
                code = self.proc.returncode if self.proc is not None else None
                raise Unavailable(f"{self.name} exited with {code}: {self.last_line()}")
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"{self.name} not ready within {timeout_s:.0f} s: {self.last_line()}"
                )
            time.sleep(POLL_S)

    def stop(self, *, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM the child's group, SIGKILL after ``timeout_s``; its exit status."""
        if self.proc is None:
            return None
        return stop_group(self.proc, timeout_s=timeout_s)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child only (not its group)."""
        if self.running:
            os.kill(self.pid, sig)

    def log_text(self) -> str:
        """All the child wrote so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def last_line(self) -> str:
        """The last non-empty line of the log ("no output" if none)."""
        lines = [line for line in self.log_text().splitlines() if line.strip()]
        return lines[-1][:300] if lines else "no output"

    def __enter__(self) -> ManagedProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
