"""The independent Go verifier of the audit log (tests/peers/tlogverify), built once and run.

:func:`build_tlogverify` compiles ``tests/peers/tlogverify/*.go`` offline against Debian's
``golang-golang-x-mod-dev`` into a cache directory keyed by the hash of the sources and the Go
version, under an exclusive file lock, so that pytest-xdist workers and later runs share one
binary. :func:`verify_ok` and :func:`verify_fails` run a subcommand and check its exit status
(0: verified, 1: verification failed, 2: usage error).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GO_HINT",
    "PEER_DIR",
    "Vectors",
    "build_tlogverify",
    "cache_root",
    "flip_byte",
    "generate",
    "run_tlogverify",
    "verify_fails",
    "verify_ok",
]

PEER_DIR = Path(__file__).resolve().parent.parent / "peers" / "tlogverify"
GO_HINT = "apt-get install golang-go golang-golang-x-mod-dev, or make deps"
GOPATH = "/usr/share/gocode"  # where Debian's golang-golang-x-mod-dev installs x/mod
BUILD_TIMEOUT_S = 240.0
RUN_TIMEOUT_S = 120.0
EXIT_FAILED = 1


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


def _build_key(go: str) -> str:
    version = subprocess.run(
        [go, "version"], capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT_S
    ).stdout
    digest = hashlib.sha256(version.encode())
    for source in sorted(PEER_DIR.glob("*.go")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
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


def build_tlogverify(cache: Path, *, go: str) -> Path:
    """Build the verifier (once per source and Go version) under ``cache``; returns its path.

    Args:
        cache: The cache directory, shared by workers and runs.
        go: The ``go`` executable.

    Raises:
        RuntimeError: The build failed (for example x/mod is not installed); says why.
    """
    target = cache / "tlogverify" / _build_key(go)
    binary = target / "tlogverify"
    with _exclusive(cache / "tlogverify" / ".lock"):
        if binary.is_file():
            return binary
        target.mkdir(parents=True, exist_ok=True)
        partial = target / "tlogverify.partial"
        build = subprocess.run(
            [go, "build", "-o", str(partial), "."],
            cwd=PEER_DIR,
            env=_go_env(target / "gocache"),
            capture_output=True,
            text=True,
            check=False,
            timeout=BUILD_TIMEOUT_S,
        )
        if build.returncode != 0:
            raise RuntimeError(f"go build of {PEER_DIR} failed ({GO_HINT}): {build.stderr.strip()}")
        partial.replace(binary)
        shutil.rmtree(target / "gocache", ignore_errors=True)
    return binary


def run_tlogverify(binary: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run one subcommand of the verifier; never raises on its exit status."""
    return subprocess.run(
        [str(binary), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )


def verify_ok(binary: Path, *args: str | Path) -> dict[str, Any]:
    """Run a subcommand that must succeed; returns its JSON result."""
    result = run_tlogverify(binary, *args)
    assert result.returncode == 0, f"tlogverify {args[0]} failed: {result.stderr.strip()}"
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def verify_fails(binary: Path, *args: str | Path) -> str:
    """Run a subcommand whose verification must fail (exit 1); returns its one-line reason."""
    result = run_tlogverify(binary, *args)
    assert result.returncode == EXIT_FAILED, (
        f"tlogverify {args[0]} exited {result.returncode}, want {EXIT_FAILED}: "
        f"{result.stdout.strip()} {result.stderr.strip()}"
    )
    reason = result.stderr.strip()
    assert reason and "\n" not in reason, f"want one line of reason, got {reason!r}"
    return reason


@dataclass(frozen=True)
class Vectors:
    """One ``tlogverify gen`` output directory and its ``vectors.json`` manifest."""

    root: Path
    manifest: dict[str, Any]

    @property
    def vkey(self) -> str:
        """The log's Ed25519 verifier key."""
        return str(self.manifest["vkey"])


def generate(binary: Path, out: Path, *, size: int, seed: str, origin: str) -> Vectors:
    """Run ``tlogverify gen``: a log of ``size`` deterministic entries, its proofs and tiles."""
    manifest = verify_ok(
        binary, "gen", "--n", str(size), "--seed", seed, "--origin", origin, "--out", out
    )
    assert json.loads((out / "vectors.json").read_text()) == manifest
    return Vectors(root=out, manifest=manifest)


def flip_byte(path: Path, offset: int) -> None:
    """Change one byte of a file (a base64 character stays a base64 character)."""
    data = bytearray(path.read_bytes())
    data[offset] = ord("B") if data[offset] == ord("A") else ord("A")
    path.write_bytes(bytes(data))
