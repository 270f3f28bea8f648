"""The simulated device's TPM power: one swtpm per device, found again through a pid file.

A device's TPM is powered on at every boot and off at shutdown, like the chip on a board. A
reboot re-executes the agent process (memory is gone, the swtpm child is not), so the swtpm
pid is kept in ``DEVDIR/tpm/swtpm.pid``; the next boot finds it there and power-cycles it
(``TPM2_Shutdown``, stop, start: the PCRs reset and ``resetCount`` rises). A pid is only
signalled after ``/proc/<pid>/cmdline`` shows that it is the swtpm of this very state folder,
so a stale file never leads to signalling an unrelated process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from trustfleet.agent.platform._files import write_atomic
from trustfleet.errors import Config, Unavailable
from trustfleet.keystore.tpm import SwtpmInstance

__all__ = ["PID_FILE", "SwtpmPower", "recorded_pid"]

logger = logging.getLogger(__name__)

PID_FILE = "swtpm.pid"
_MAX_PID_BYTES = 32
_MAX_CMDLINE_BYTES = 64 * 1024
_POLL_S = 0.02
# Runs in the child before swtpm: die with the parent (a power cut), then become swtpm.
_PDEATHSIG_SHIM = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"  # PR_SET_PDEATHSIG
    "sys.exit(1) if os.getppid() != int(sys.argv[1]) else os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def recorded_pid(state_dir: Path) -> int | None:
    """The pid in ``state_dir/swtpm.pid`` if it is a live swtpm serving ``state_dir``."""
    try:
        text = (state_dir / PID_FILE).read_bytes()[:_MAX_PID_BYTES].decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if _is_our_swtpm(pid, state_dir) else None


def _is_our_swtpm(pid: int, state_dir: Path) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read(_MAX_CMDLINE_BYTES).split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read(512).rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    if state == b"Z":
        return False
    wanted = f"dir={state_dir}".encode()
    return bool(args) and os.path.basename(args[0]) == b"swtpm" and wanted in args


class SwtpmPower:
    """Power on and off the swtpm of one device's TPM state folder.

    Args:
        state_dir: The TPM's state folder (``DEVDIR/tpm``), already manufactured.
        start_timeout_s: How long to wait for swtpm's socket.
        stop_timeout_s: How long to wait after SIGTERM before SIGKILL.
    """

    def __init__(
        self, state_dir: Path, *, start_timeout_s: float = 5.0, stop_timeout_s: float = 5.0
    ) -> None:
        self.state_dir = state_dir.resolve()
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        """The TCTI string of this TPM."""
        return SwtpmInstance(self.state_dir).tcti

    def power_on(self) -> int:
        """Power-cycle the TPM: stop a running swtpm of this folder, start a fresh one.

        The new swtpm runs in its own session and gets SIGTERM when the thread that powered
        it on dies (``PR_SET_PDEATHSIG``): a killed agent is a power cut, its TPM goes off too.
        A re-executed agent (a reboot) is the same process, so the TPM stays on for it to
        power-cycle. Call this from the agent's main thread.

        Returns:
            The new swtpm's pid (also written to ``swtpm.pid``).

        Raises:
            Config: The TPM is not manufactured, or swtpm is missing.
            Unavailable: swtpm did not start or listen in time.
        """
        self.power_off()
        instance = SwtpmInstance(self.state_dir)
        if not instance.manufactured:
            raise Config(
                f"{self.state_dir} holds no manufactured TPM",
                hint="provision the device with 'trustfleet factory provision'",
                code="tpm.missing",
            )
        instance.remove_stale_sockets()
        proc = _spawn(instance)
        if not _await_socket(proc, instance, self._start_timeout_s):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise Unavailable(
                f"swtpm did not start for {self.state_dir}",
                hint=f"see {instance.log_path}",
                code="tpm.swtpm.start",
            )
        self._process = proc
        write_atomic(self.state_dir / PID_FILE, f"{proc.pid}\n".encode("ascii"))
        logger.info("powered on the TPM (swtpm %d)", proc.pid)
        return proc.pid

    def power_off(self) -> None:
        """Shut the TPM down (``TPM2_Shutdown``) and stop its swtpm, if one runs."""
        self._process = None
        pid = recorded_pid(self.state_dir)
        if pid is not None:
            self._stop_pid(pid)
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / PID_FILE).unlink()

    def _stop_pid(self, pid: int) -> None:
        """Stop a swtpm this process did not start (a previous boot's, found by its pid)."""
        SwtpmInstance(self.state_dir).send_shutdown()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)  # swtpm runs in its own session: pgid == pid
        if not _wait_gone(pid, self._stop_timeout_s):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            _wait_gone(pid, self._stop_timeout_s)
        logger.info("powered off the TPM (swtpm %d)", pid)


def _spawn(instance: SwtpmInstance) -> subprocess.Popen[bytes]:
    """Start swtpm (``SwtpmInstance.command``) through a shim that sets PDEATHSIG."""
    command = instance.command()
    if shutil.which(command[0]) is None:
        raise Config("swtpm is not installed", hint="apt install swtpm", code="tpm.swtpm.missing")
    with instance.log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-S", "-c", _PDEATHSIG_SHIM, str(os.getpid()), *command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _await_socket(proc: subprocess.Popen[bytes], instance: SwtpmInstance, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if instance.listening():
            return True
        time.sleep(_POLL_S)
    return False


def _wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited (reaped if it is our child); whether it did in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        except ChildProcessError:  # not our child: watch it from outside
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
