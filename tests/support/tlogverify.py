"""The independent Go verifier of the audit log (tests/peers/tlogverify) in the tests.

The build is the harness's (:func:`trustfleet.sim.tlogverify.build_tlogverify`: one build
routine for the demo and the tests, cached by the hash of the sources and the Go version).
:func:`verify_ok` and :func:`verify_fails` run a subcommand and check its exit status
(0: verified, 1: verification failed, 2: usage error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustfleet.sim.tlogverify import (
    GO_HINT,
    PEER_DIR,
    build_tlogverify,
    cache_root,
    run_tlogverify,
)

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

EXIT_FAILED = 1


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
