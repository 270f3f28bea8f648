"""Eclipse Wakaama's DTLS example client as an independent LwM2M peer for the tests.

The client is built once from the pinned sources in ``../shared/vendor/wakaama`` (found from the
repository root upwards, see ``/work/shared/vendor/README.md``) into ``.venv/cache/wakaama-<key>``,
keyed by a hash of the vendored sources and built under a file lock, so xdist workers and later
runs reuse one build. A build needs cmake and a C compiler; without them the tests skip with the
reason (a failing build fails them).

The client reads commands from stdin (``quit``, ``update 123``, ``change /3/0/9 42``) and busy-loops
at end of file, so :class:`WakaamaClient` keeps a pipe to its stdin open for its whole life. What
the client does on the wire is written down in ``docs/lwm2m.md`` (``## Independent peers``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from trustfleet.errors import Unavailable
from trustfleet.sim.process import stop_group, wait_until

__all__ = [
    "BUILD_TIMEOUT_S",
    "CLIENT_TARGET",
    "WakaamaClient",
    "WakaamaUnavailable",
    "build_client",
    "find_vendor",
    "free_udp_port",
    "source_key",
]

CLIENT_TARGET = "lwm2mclient_tinydtls"
"""The cmake target (and binary name) of the tinydtls example client."""
BUILD_TIMEOUT_S = 900.0
"""Bound on one configure + build (a few minutes on two busy cores)."""
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]
VENDOR_ENV = "TF_WAKAAMA_SRC"
"""Environment variable naming another Wakaama source folder (default: the vendored one)."""


class WakaamaUnavailable(Exception):
    """The client cannot be built here for a missing tool (the tests skip with this reason)."""


def find_vendor(root: Path = REPO_ROOT) -> Path:
    """The vendored Wakaama folder: ``$TF_WAKAAMA_SRC``, else ``shared/vendor/wakaama`` next to
    the repository root or one of its parents (worktrees live one level deeper).

    Raises:
        WakaamaUnavailable: No such folder.
    """
    override = os.environ.get(VENDOR_ENV)
    if override:
        return Path(override)
    for folder in (root, *root.parents):
        candidate = folder.parent / "shared" / "vendor" / "wakaama"
        if (candidate / "CMakeLists.txt").is_file():
            return candidate
    raise WakaamaUnavailable(f"no shared/vendor/wakaama above {root}")


def source_key(vendor: Path) -> str:
    """A short hash over the vendored sources' paths and contents (the build cache key)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in vendor.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(str(path.relative_to(vendor)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that was free a moment ago (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_bound(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something holds UDP ``port`` on ``host`` (a server that has bound its socket)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _require_tools() -> None:
    missing = [tool for tool in ("cmake", "make") if shutil.which(tool) is None]
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        missing.append("a C compiler (cc)")
    if missing:
        raise WakaamaUnavailable("cannot build Wakaama: missing " + ", ".join(missing))


def build_client(
    *, vendor: Path | None = None, cache: Path = REPO_ROOT / ".venv" / "cache"
) -> Path:
    """Build (or reuse) the tinydtls example client; the path of its binary.

    The sources are copied into a temporary folder next to the cache entry, configured and built
    there, and renamed into place when the build succeeded; a lock file serialises builders.

    Raises:
        WakaamaUnavailable: cmake or a compiler is missing, or there are no vendored sources.
        subprocess.CalledProcessError: The build failed (its output is in ``build.log``).
    """
    _require_tools()
    vendor = vendor or find_vendor()
    entry = cache / f"wakaama-{source_key(vendor)}"
    binary = entry / "build" / CLIENT_TARGET
    if binary.is_file():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{entry.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():  # another worker built it while we waited
            return binary
        work = Path(tempfile.mkdtemp(prefix=f"{entry.name}.", dir=cache))
        try:
            src = work / "src"
            shutil.copytree(vendor, src, ignore=shutil.ignore_patterns(".git", "build*"))
            with (work / "build.log").open("wb") as log:
                for argv in (
                    ["cmake", "-S", "examples/client/tinydtls", "-B", "build"],
                    ["cmake", "--build", "build", "-j2", "--target", CLIENT_TARGET],
                ):
                    subprocess.run(
                        argv, cwd=src, stdout=log, stderr=subprocess.STDOUT,
                        check=True, timeout=BUILD_TIMEOUT_S,
                    )  # fmt: skip
            shutil.copy2(work / "build.log", src / "build.log")
            src.rename(entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return binary


class WakaamaClient:
    """One running ``lwm2mclient_tinydtls`` in its own session, stdin kept open.

    Args:
        binary: The built client (:func:`build_client`).
        server_port: The (bootstrap) server's UDP port on 127.0.0.1.
        endpoint: The endpoint name (the device id).
        psk_identity: The PSK identity.
        psk_key: The PSK (passed to the client as hex on its command line: a test key only).
        log: Where its output goes.
        bootstrap: Start with client-initiated bootstrap (``-b``).
        lifetime_s: Registration lifetime (``-t``).
        local_port: The client's UDP port (``-l``; must differ between clients).
    """

    def __init__(
        self,
        binary: Path,
        *,
        server_port: int,
        endpoint: str,
        psk_identity: str,
        psk_key: bytes,
        log: Path,
        local_port: int,
        bootstrap: bool = False,
        lifetime_s: int = 60,
    ) -> None:
        self.argv = [
            str(binary), "-4", "-h", "127.0.0.1", "-p", str(server_port),
            "-l", str(local_port), "-n", endpoint, "-i", psk_identity,
            "-s", psk_key.hex(), "-t", str(lifetime_s),
        ]  # fmt: skip
        if bootstrap:
            self.argv.append("-b")
        stdbuf = shutil.which("stdbuf")
        if stdbuf is not None:  # its states go to a file: line-buffered, or they come late
            self.argv = [stdbuf, "-oL", "-eL", *self.argv]
        self.endpoint = endpoint
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:  # the argv holds the key: never shown
        state = "not started" if self.proc is None else f"pid {self.proc.pid}"
        return f"<WakaamaClient {self.endpoint} {state}>"

    def start(self) -> WakaamaClient:
        """Start the client; returns once it printed that it started.

        Raises:
            Unavailable: It exited or did not start within the bound.
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            self.wait_for(f'LWM2M Client "{self.endpoint}" started', timeout_s=READY_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        """Whether it was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def command(self, line: str) -> None:
        """Type one command line on its stdin (``quit``, ``update 123``, ``change /3/0/9 42``)."""
        if self.proc is None or self.proc.stdin is None or not self.running:
            raise Unavailable(f"wakaama client {self.endpoint} is not running")
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def log_text(self) -> str:
        """All it wrote so far (it dumps every datagram)."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def states(self) -> list[str]:
        """The client states it printed, in order (``STATE_READY``, ``STATE_BOOTSTRAPPING``...)."""
        return [
            line.split("State: ", 1)[1].strip()
            for line in self.log_text().splitlines()
            if "State: " in line
        ]

    def wait_for(self, text: str, *, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until ``text`` appears in its output.

        Raises:
            Unavailable: It exited first, or ``timeout_s`` passed.
        """

        def seen() -> bool:
            if text in self.log_text():
                return True
            if not self.running:
                raise Unavailable(f"wakaama client exited before {text!r}")
            return False

        wait_until(seen, timeout_s=timeout_s, what=f"wakaama {text!r}")

    def wait_state(self, state: str, *, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until its last printed state is ``state`` (e.g. ``STATE_READY``)."""

        def reached() -> bool:
            states = self.states()
            return bool(states) and states[-1] == state

        wait_until(reached, timeout_s=timeout_s, what=f"wakaama {state}")

    def stop(self) -> int | None:
        """Close its stdin and stop its process group (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return None
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        return stop_group(self.proc, timeout_s=STOP_TIMEOUT_S)

    def quit(self, *, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Ask it to de-register and quit (``quit``); stop it if it does not within the bound."""
        if self.running:
            self.command("quit")
            deadline = time.monotonic() + timeout_s
            while self.running and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.stop()

    def __enter__(self) -> WakaamaClient:
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
