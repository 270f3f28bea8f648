"""A log built by ``trustfleet.audit`` for the Go verifier to check (test_go_interop.py,
test_go_properties.py): entries, tiles from ``tiles.append_leaves``, signed checkpoints, the
C2SP tlog-tiles layout on disk.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trustfleet.audit.checkpoint import Checkpoint
from trustfleet.audit.merkle import leaf_hash
from trustfleet.audit.note import ED25519, format_note, sign_note, verifier_key
from trustfleet.audit.tiles import (
    TILE_WIDTH,
    append_leaves,
    encode_entry_bundle,
    entries_path,
    tile_path,
)

__all__ = ["ORIGIN", "PyLog", "SeededKey", "make_entry", "read_proof", "write", "write_proof"]

ORIGIN = "trustfleet.test/audit"


class SeededKey:
    """An Ed25519 key from ``cryptography`` that satisfies ``note.RawSigner``."""

    def __init__(self, label: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())

    def public_bytes_raw(self) -> bytes:
        """The 32-byte public key."""
        return self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)


def read_proof(path: Path) -> list[bytes]:
    """A proof file's hashes (one base64 hash per line)."""
    return [base64.b64decode(line) for line in path.read_text().split()]


def write_proof(path: Path, proof: list[bytes]) -> Path:
    """Write a proof as the Go verifier reads it: one base64 hash per line."""
    path.write_text("".join(base64.b64encode(h).decode() + "\n" for h in proof))
    return path


def make_entry(i: int) -> bytes:
    """Entry i in the log's format: canonical JSON of one event (leaf index = id - 1)."""
    return (
        f'{{"actor":"operator:alice","details":{{"n":{i}}},"id":{i + 1},"origin":"{ORIGIN}",'
        f'"outcome":"ok","subject":"device-{i % 7}","time":"2026-12-02T15:00:00.{i:06d}Z",'
        f'"type":"test.event"}}'
    ).encode()


@dataclass
class PyLog:
    """A log built by trustfleet.audit: entries, tiles and a signed checkpoint per batch."""

    key: SeededKey = field(default_factory=lambda: SeededKey("log"))
    entries: list[bytes] = field(default_factory=list)
    tiles: dict[tuple[int, int], bytes] = field(default_factory=dict)
    roots: dict[int, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """The number of entries."""
        return len(self.entries)

    @property
    def vkey(self) -> str:
        """The log key's verifier key (named after the origin)."""
        return verifier_key(ORIGIN, ED25519, self.key.public_bytes_raw())

    def read_tile(self, level: int, index: int) -> bytes:
        """The tiles' ``ReadTile``: the latest content of a tile (KeyError when absent)."""
        return self.tiles[(level, index)]

    def append(self, entries: list[bytes]) -> None:
        """Append entries with ``tiles.append_leaves``; records the new size's root."""
        update = append_leaves(
            size=self.size, read_tile=self.read_tile, leaf_hashes=[leaf_hash(e) for e in entries]
        )
        self.tiles.update(update.tiles)
        self.entries += entries
        assert update.size == self.size
        self.roots[self.size] = update.root

    def text(self, size: int) -> str:
        """The checkpoint text of the tree of ``size`` (its root must be known)."""
        return Checkpoint(origin=ORIGIN, size=size, root=self.roots[size]).text()

    def signed(self, size: int, *, name: str = ORIGIN, key: SeededKey | None = None) -> bytes:
        """The checkpoint of ``size`` as a signed note (by the log key unless ``key``)."""
        return format_note(sign_note(self.text(size), name=name, signer=key or self.key))

    def publish(self, base: Path) -> Path:
        """Write the C2SP tlog-tiles layout of the whole log under ``base``."""
        for (level, index), content in self.tiles.items():
            write(base / tile_path(level, index, len(content) // 32), content)
        for k in range(-(-self.size // TILE_WIDTH)):
            bundle = self.entries[k * TILE_WIDTH : (k + 1) * TILE_WIDTH]
            write(base / entries_path(k, len(bundle)), encode_entry_bundle(bundle))
        write(base / "checkpoint", self.signed(self.size))
        return base


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (parents created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
