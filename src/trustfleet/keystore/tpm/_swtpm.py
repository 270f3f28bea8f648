"""A software TPM 2.0 (swtpm) per simulated device: manufacture once, start, stop.

swtpm listens on two unix sockets in the device folder (the TPM and its control channel,
``<path>`` and ``<path>.ctrl`` as the tss2 swtpm TCTI expects), runs in its own process group
and is stopped by that group's id, after an orderly TPM2_Shutdown. Manufacturing uses the
simulated TPM vendor of ``_vendor``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

from trustfleet.errors import Config, Conflict, InvalidInput, Unavailable
from trustfleet.keystore.tpm._vendor import ManufacturerCa

__all__ = ["SwtpmInstance"]

logger = logging.getLogger(__name__)

SETUP_TIMEOUT_S = 60.0
"""How long manufacturing one TPM (``swtpm_setup``: EKs and their certificates) may take."""
MAX_UNIX_PATH_BYTES = 107
"""AF_UNIX path limit on Linux (108 with the terminating NUL)."""
SHUTDOWN_TIMEOUT_S = 1.0
"""How long ``stop`` waits to send TPM2_Shutdown (a client still connected delays it)."""
_STATE_FILE = "tpm2-00.permall"
# TPM2_Shutdown(TPM_SU_CLEAR): tag TPM_ST_NO_SESSIONS, size 12, TPM_CC_Shutdown, TPM_SU_CLEAR
_SHUTDOWN_COMMAND = bytes.fromhex("80010000000c000001450000")
_RESPONSE_HEADER_BYTES = 10
_SOCKET_NAME = "swtpm.sock"
_LOG_TAIL_BYTES = 2048
_SWTPM_UMASK = 0o077
_CTRL_SUFFIX = ".ctrl"


def _fits(path: Path) -> bool:
    return len(os.fsencode(str(path) + _CTRL_SUFFIX)) <= MAX_UNIX_PATH_BYTES


def socket_for(state_dir: Path) -> Path:
    """Where the swtpm of ``state_dir`` listens: in the folder, or in a short runtime folder.

    A unix socket path holds at most 107 bytes. When the state folder's path is too long,
    the sockets go to ``$XDG_RUNTIME_DIR`` (or ``/tmp/trustfleet-<uid>``, made 0700 and checked
    to be ours) under a name derived from the state folder, so each TPM keeps its own.

    Raises:
        Config: Even the runtime folder's path is too long, or it is not ours and private
            (code ``tpm.swtpm.path``).
    """
    inside = state_dir / _SOCKET_NAME
    if _fits(inside):
        return inside
    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/trustfleet-{os.getuid()}")  # noqa: S108  # checked: ours, 0700
    name = hashlib.sha256(os.fsencode(str(state_dir))).hexdigest()[:24]
    outside = runtime / f"swtpm-{name}.sock"
    if not _fits(outside):
        raise Config(
            f"the swtpm socket path {outside} is too long for a unix socket",
            hint="use a shorter device folder or XDG_RUNTIME_DIR",
            code="tpm.swtpm.path",
        )
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = runtime.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise Config(
            f"{runtime} is not a private folder of this user",
            hint="remove it, or set XDG_RUNTIME_DIR to a private folder",
            code="tpm.swtpm.path",
        )
    return outside


class SwtpmInstance:
    """One device's software TPM: its state folder and, while started, its swtpm process.

    Args:
        state_dir: The TPM's state folder (NVRAM, keys); the sockets and log live here too.
        ca: The simulated TPM vendor; needed only to manufacture the TPM the first time.
        swtpm: The ``swtpm`` binary.
        swtpm_setup: The ``swtpm_setup`` binary.
        start_timeout_s: How long to wait for the socket after starting swtpm.
        stop_timeout_s: How long to wait after SIGTERM before SIGKILL.

    Use as a context manager: ``with SwtpmInstance(dir, ca=ca) as tpm: Tpm(tcti=tpm.tcti)``.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        ca: ManufacturerCa | None = None,
        swtpm: str = "swtpm",
        swtpm_setup: str = "swtpm_setup",
        start_timeout_s: float = 5.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.ca = ca
        self._swtpm = swtpm
        self._swtpm_setup = swtpm_setup
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_path = socket_for(self.state_dir)

    @property
    def socket_path(self) -> Path:
        """The TPM command socket (the control socket is this path plus ``.ctrl``)."""
        return self._socket_path

    @property
    def log_path(self) -> Path:
        """swtpm's own output."""
        return self.state_dir / "swtpm.log"

    @property
    def tcti(self) -> str:
        """The TCTI string for tpm2-pytss (``ESAPI(tcti)``) and tpm2-tools."""
        return f"swtpm:path={self.socket_path}"

    def tools_env(self) -> dict[str, str]:
        """Environment entries that point tpm2-tools at this TPM (``TPM2TOOLS_TCTI``)."""
        return {"TPM2TOOLS_TCTI": self.tcti}

    @property
    def pid(self) -> int | None:
        """swtpm's process id (also its process group id) while it runs."""
        proc = self._process
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def manufactured(self) -> bool:
        """Whether the state folder holds a manufactured TPM."""
        return (self.state_dir / _STATE_FILE).is_file()

    def setup(self) -> None:
        """Manufacture the TPM once: EKs (RSA 2048, ECC), EK and platform certificates.

        Does nothing when the state folder already holds a TPM.

        Raises:
            Config: No manufacturer CA is configured, or swtpm_setup is missing.
            Unavailable: swtpm_setup failed or timed out.
        """
        if self.manufactured:
            return
        if self.ca is None:
            raise Config(
                f"the TPM in {self.state_dir} is not manufactured and no manufacturer CA is set",
                hint="pass ca=ManufacturerCa(folder) to SwtpmInstance",
                code="tpm.swtpm.no_ca",
            )
        self.ca.prepare()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        command = [
            self._swtpm_setup, "--tpm2", "--tpmstate", str(self.state_dir),
            "--create-ek-cert", "--create-platform-cert", "--not-overwrite",
            "--config", str(self.ca.setup_conf),
        ]  # fmt: skip
        _run_setup(command, state_dir=self.state_dir)
        logger.info("manufactured swtpm in %s", self.state_dir)

    def start(self) -> None:
        """Manufacture the TPM if needed and start swtpm; return once its socket accepts.

        Raises:
            InvalidInput: This instance is already started.
            Conflict: Another swtpm already serves this state folder.
            Config: swtpm is missing, or the TPM cannot be manufactured.
            Unavailable: swtpm exited or did not listen in time.
        """
        if self._process is not None:
            raise InvalidInput("this swtpm is already started", code="tpm.swtpm.started")
        self.setup()
        if _accepts(self.socket_path):
            raise Conflict(
                f"a TPM already listens on {self.socket_path}",
                hint="stop the other swtpm of this device first",
                code="tpm.swtpm.running",
            )
        self.remove_stale_sockets()
        self._spawn()
        try:
            self._await_socket()
        except BaseException:
            self.stop()
            raise
        logger.info("swtpm started (pid %s) in %s", self.pid, self.state_dir)

    def stop(self) -> None:
        """Shut the TPM down orderly, then stop swtpm by its process group.

        Like an operating system at power-off, it first sends ``TPM2_Shutdown(CLEAR)`` (an
        unclean power loss counts against dictionary-attack protection); then SIGTERM to the
        process group, SIGKILL after ``stop_timeout_s``.
        """
        proc, self._process = self._process, None
        if proc is None:
            return
        if proc.poll() is None:
            self.send_shutdown()
        _terminate_group(proc, timeout_s=self._stop_timeout_s)
        for path in (self.socket_path, Path(str(self.socket_path) + _CTRL_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def __enter__(self) -> SwtpmInstance:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        """The swtpm command line that serves this state folder on its sockets."""
        path = str(self.socket_path)
        return [
            self._swtpm, "socket", "--tpm2",
            "--tpmstate", f"dir={self.state_dir}",
            "--server", f"type=unixio,path={path}",
            "--ctrl", f"type=unixio,path={path}{_CTRL_SUFFIX}",
            "--flags", "not-need-init,startup-clear",
        ]  # fmt: skip

    def listening(self) -> bool:
        """Whether a TPM accepts connections on this folder's command socket."""
        return _accepts(self.socket_path)

    def send_shutdown(self) -> None:
        """Send TPM2_Shutdown(CLEAR), as an OS does at power-off; best effort."""
        _send_shutdown(self.socket_path, timeout_s=SHUTDOWN_TIMEOUT_S)

    def _spawn(self) -> None:
        try:
            with _open_log(self.log_path) as log:
                self._process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    umask=_SWTPM_UMASK,  # its state, lock and sockets: the owner's only
                )
        except FileNotFoundError as exc:
            raise Config(
                f"swtpm not found: {self._swtpm}",
                hint="apt install swtpm",
                code="tpm.swtpm.missing",
            ) from exc

    def remove_stale_sockets(self) -> None:
        """Remove socket files nobody listens on (left by a killed swtpm)."""
        for path in (self.socket_path, Path(str(self.socket_path) + _CTRL_SUFFIX)):
            if path.exists() and not _accepts(path):
                path.unlink()

    def _await_socket(self) -> None:
        assert self._process is not None  # noqa: S101 - set by start() just before
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise Unavailable(
                    f"swtpm exited with {self._process.returncode}: {_tail(self.log_path)}",
                    hint="is another swtpm using this state folder?",
                    code="tpm.swtpm.exited",
                )
            if _accepts(self.socket_path):
                return
            time.sleep(0.02)
        raise Unavailable(
            f"swtpm did not listen within {self._start_timeout_s:g} s",
            hint=f"see {self.log_path}",
            code="tpm.swtpm.timeout",
        )


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _send_shutdown(path: Path, *, timeout_s: float) -> None:
    """Send TPM2_Shutdown(CLEAR) on the command socket; best effort (the TPM may be busy)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
            sock.sendall(_SHUTDOWN_COMMAND)
            response = sock.recv(_RESPONSE_HEADER_BYTES)
        except OSError as exc:
            logger.warning("could not send TPM2_Shutdown to %s: %s", path, exc)
            return
    if response[6:10] != bytes(4):
        logger.warning("TPM2_Shutdown answered 0x%s", response[6:10].hex())


def _run_setup(command: list[str], *, state_dir: Path) -> None:
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            timeout=SETUP_TIMEOUT_S,
            check=False,
            start_new_session=True,
            umask=_SWTPM_UMASK,
        )
    except FileNotFoundError as exc:
        raise Config(
            f"swtpm_setup not found: {command[0]}",
            hint="apt install swtpm-tools",
            code="tpm.swtpm.missing",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(
            f"swtpm_setup did not finish within {SETUP_TIMEOUT_S:g} s", code="tpm.swtpm.setup"
        ) from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-_LOG_TAIL_BYTES:].decode("utf-8", "replace")
        raise Unavailable(
            f"swtpm_setup failed for {state_dir} ({result.returncode}): {output.strip()}",
            hint="check the manufacturer CA folder and the state folder permissions",
            code="tpm.swtpm.setup",
        )


def _open_log(path: Path) -> BinaryIO:
    """The swtpm log, appended to, mode 0600 whatever the umask, never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def _terminate_group(proc: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()[-_LOG_TAIL_BYTES:]
    except OSError:
        return "(no log)"
    return data.decode("utf-8", "replace").strip().replace("\n", " | ")
