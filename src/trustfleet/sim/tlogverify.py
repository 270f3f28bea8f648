"""The independent Go verifier of the audit log (``tests/peers/tlogverify``), built once and run.

The verifier is written against Go's own checksum-database code (``golang.org/x/mod/sumdb/note``
and ``sumdb/tlog``) and shares nothing with the Python log it checks. :func:`build_tlogverify`
compiles it offline against Debian's ``golang-golang-x-mod-dev`` into a cache directory keyed by
the hash of the sources and the Go version, under an exclusive file lock, so that the demo,
pytest-xdist workers and later runs share one binary. One build routine for the demo and the
tests (``tests/support/tlogverify.py`` uses this one).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trustfleet.errors import Unavailable

__all__ = [
    "GO_HINT",
    "PEER_DIR",
    "build_tlogverify",
    "cache_root",
    "find_tlogverify",
    "run_tlogverify",
]

PEER_DIR = Path(__file__).resolve().parents[3] / "tests" / "peers" / "tlogverify"
"""The verifier's Go sources in a source checkout (absent from an installed package)."""
GO_HINT = "apt-get install golang-go golang-golang-x-mod-dev, or make deps"
GOPATH = "/usr/share/gocode"  # where Debian's golang-golang-x-mod-dev installs x/mod
BUILD_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 120.0


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/trustfleet`` (default ``~/.cache/trustfleet``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trustfleet"


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (created if missing) for the block."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_key(go: str, source: Path) -> str:
    version = subprocess.run(
        [go, "version"], capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT_S
    ).stdout
    digest = hashlib.sha256(version.encode())
    for path in sorted(source.glob("*.go")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _go_env(gocache: Path) -> dict[str, str]:
    """The offline GOPATH-mode build: no modules, no proxy, no cgo, a private build cache."""
    env = dict(os.environ)
    env.update(
        GO111MODULE="off",
        GOPATH=GOPATH,
        GOPROXY="off",
        GOFLAGS="",
        CGO_ENABLED="0",
        GOCACHE=str(gocache),
    )
    return env


def build_tlogverify(cache: Path, *, go: str, source: Path = PEER_DIR) -> Path:
    """Build the verifier (once per source and Go version) under ``cache``; returns its path.

    Args:
        cache: The cache directory, shared by workers and runs.
        go: The ``go`` executable.
        source: The folder of the verifier's Go sources.

    Raises:
        RuntimeError: The build failed (for example x/mod is not installed); says why.
    """
    target = cache / "tlogverify" / _build_key(go, source)
    binary = target / "tlogverify"
    with _exclusive(cache / "tlogverify" / ".lock"):
        if binary.is_file():
            return binary
        target.mkdir(parents=True, exist_ok=True)
        partial = target / "tlogverify.partial"
        build = subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=source,
            env=_go_env(target / "gocache"),
            capture_output=True,
            text=True,
            check=False,
            timeout=BUILD_TIMEOUT_S,
        )
        if build.returncode != 0:
            raise RuntimeError(f"go build of {source} failed ({GO_HINT}): {build.stderr.strip()}")
        partial.replace(binary)
        shutil.rmtree(target / "gocache", ignore_errors=True)
    return binary


def find_tlogverify(source: Path = PEER_DIR) -> Path:
    """The built verifier for the demo: built (or found in the cache) from a source checkout.

    Raises:
        Unavailable: Go is not installed, or the sources are not here (an installed package);
            the message says which.
        RuntimeError: Go is installed but the build failed.
    """
    go = shutil.which("go")
    if go is None:
        raise Unavailable("go is not installed", hint=GO_HINT)
    if not any(source.glob("*.go")):
        raise Unavailable(f"the verifier's sources are not at {source} (not a source checkout)")
    return build_tlogverify(cache_root(), go=go, source=source)


def run_tlogverify(binary: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run one subcommand of the verifier; never raises on its exit status."""
    return subprocess.run(
        [str(binary), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
