"""The audit benchmark's pure parts: the Merkle tree in memory, its proofs, their sizes and times.

Nothing here touches a store, a token or the disk: the tiles live in a dict, the checkpoints are
signed with an in-memory Ed25519 key (``cryptography``), so the figures are the cost of the tree
and of the proofs alone (benchmarks/audit.py measures the store and the token around them).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trustfleet.audit.checkpoint import Checkpoint
from trustfleet.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from trustfleet.audit.note import format_note, sign_note
from trustfleet.audit.tiles import (
    ReadTile,
    append_leaves,
    consistency_proof,
    inclusion_proof,
    tree_root,
)

__all__ = [
    "ORIGIN",
    "MemorySigner",
    "MemoryTree",
    "build_tree",
    "entry_bytes",
    "proof_figures",
]

ORIGIN = "bench.trustfleet.local/audit"
_ENTRY = (
    b'{"actor":"operator:alice@ops1","details":{"reason":"keyCompromise","serial":"%08d"},'
    b'"origin":"cli:10.0.0.7","outcome":"ok","subject":"device:dev-%08d",'
    b'"time":"2026-12-02T15:00:00.000000Z","type":"certificate.revoked"}'
)
"""A typical entry (≈ 230 bytes); the index makes each one distinct."""


class MemorySigner:
    """An Ed25519 key in memory that signs notes like the token's key (``RawSigner``)."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()

    def public_bytes_raw(self) -> bytes:
        """The 32-byte public key."""
        return self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message``."""
        return self._key.sign(message)


@dataclass
class MemoryTree:
    """A tree of ``size`` leaves held as tiles in a dict, with its signed checkpoints' figures."""

    size: int
    root: bytes
    tiles: dict[tuple[int, int], bytes]
    figures: dict[str, Any]


def _reader(tiles: dict[tuple[int, int], bytes]) -> ReadTile:
    """A ``ReadTile`` over a dict of tiles (KeyError when absent, as the tiles module expects)."""

    def read(level: int, index: int) -> bytes:
        return tiles[(level, index)]

    return read


def entry_bytes(index: int) -> bytes:
    """The bytes of the benchmark's entry ``index`` (distinct for every index)."""
    return _ENTRY % (index, index)


def build_tree(size: int, *, batch: int, signer: MemorySigner | None = None) -> MemoryTree:
    """Integrate ``size`` entries ``batch`` at a time, signing a checkpoint after each batch.

    Each round hashes its entries (leaf hashes), extends the tiles with ``append_leaves`` and
    signs the checkpoint note (as ``services.audit.integrate`` does, without the store).
    """
    signer = signer or MemorySigner()
    tiles: dict[tuple[int, int], bytes] = {}
    now, root, rounds = 0, b"", 0
    hash_s = append_s = sign_s = 0.0
    clock = time.perf_counter
    while now < size:
        count = min(batch, size - now)
        t0 = clock()
        leaves = [leaf_hash(entry_bytes(i)) for i in range(now, now + count)]
        t1 = clock()
        update = append_leaves(size=now, read_tile=_reader(tiles), leaf_hashes=leaves)
        tiles.update(update.tiles)
        t2 = clock()
        checkpoint = Checkpoint(origin=ORIGIN, size=update.size, root=update.root)
        format_note(sign_note(checkpoint.text(), name=ORIGIN, signer=signer))
        t3 = clock()
        hash_s, append_s, sign_s = hash_s + t1 - t0, append_s + t2 - t1, sign_s + t3 - t2
        now, root, rounds = update.size, update.root, rounds + 1
    total_s = hash_s + append_s + sign_s
    figures = {
        "leaves": size,
        "batch": batch,
        "checkpoints": rounds,
        "seconds": total_s,
        "entries_per_s": size / total_s if total_s else None,
        "leaf_hash_s": hash_s,
        "append_leaves_s": append_s,
        "sign_s": sign_s,
        "tiles": len(tiles),
    }
    return MemoryTree(size=now, root=root, tiles=tiles, figures=figures)


def _one_sample(tree: MemoryTree, read: ReadTile, *, index: int, old: int) -> dict[str, float]:
    """Make and verify one inclusion proof (leaf ``index``) and one consistency proof (from
    ``old``); their hash counts and the seconds each step took."""
    size, root, clock = tree.size, tree.root, time.perf_counter
    leaf = leaf_hash(entry_bytes(index))
    old_root = tree_root(size=old, read_tile=read)
    t0 = clock()
    path = inclusion_proof(index=index, size=size, read_tile=read)
    t1 = clock()
    verify_inclusion(leaf=leaf, index=index, size=size, proof=path, root=root)
    t2 = clock()
    proof = consistency_proof(old_size=old, new_size=size, read_tile=read)
    t3 = clock()
    verify_consistency(old_size=old, new_size=size, old_root=old_root, new_root=root, proof=proof)
    t4 = clock()
    return {
        "inclusion_bytes": 32 * len(path),
        "inclusion_make_us": (t1 - t0) * 1e6,
        "inclusion_verify_us": (t2 - t1) * 1e6,
        "consistency_bytes": 32 * len(proof),
        "consistency_make_us": (t3 - t2) * 1e6,
        "consistency_verify_us": (t4 - t3) * 1e6,
    }


def proof_figures(tree: MemoryTree, *, samples: int, seed: int = 11) -> dict[str, Any]:
    """Sizes of inclusion and consistency proofs in ``tree``, and the median time to make
    (from the tiles) and to verify each, over ``samples`` random leaves / old sizes.

    Every proof made is verified; a proof that fails raises (the figures would be wrong).
    """
    rng, read = random.Random(seed), _reader(tree.tiles)
    runs = [
        _one_sample(tree, read, index=rng.randrange(tree.size), old=rng.randrange(1, tree.size))
        for _ in range(samples)
    ]
    figures: dict[str, Any] = {
        "size": tree.size,
        "samples": samples,
        "log2_bound_bytes": 32 * math.ceil(math.log2(tree.size)),
    }
    for key in runs[0]:
        values = [run[key] for run in runs]
        if key.endswith("_bytes"):
            figures[key + "_max"] = max(values)
            figures[key + "_median"] = statistics.median(values)
        else:
            figures[key] = statistics.median(values)
    return figures
