"""RFC 6962 / RFC 9162 Merkle tree hashing and the verification of its proofs.

A leaf hash is ``SHA-256(0x00 || entry)``, an interior node ``SHA-256(0x01 || left || right)``
and the root of ``n`` leaves splits them at the largest power of two below ``n`` (RFC 9162
§2.1.1). :func:`verify_inclusion` and :func:`verify_consistency` are the RFC's §2.1.3.2 and
§2.1.4.2 algorithms; both check the proof's length first, so a truncated or padded proof fails
with a reason that says so, and any failure is a :class:`ProofError` with a one-line reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from trustfleet.errors import InvalidInput

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
"""Bytes of a SHA-256 hash: every leaf, node and root."""
EMPTY_ROOT: Final[bytes] = hashlib.sha256(b"").digest()
"""The root of the empty tree, ``SHA-256("")`` (RFC 9162 §2.1.1)."""

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


class ProofError(InvalidInput):
    """A proof, a tree hash or a tile that does not verify (the message says why)."""


def leaf_hash(entry: bytes) -> bytes:
    """The hash of one log entry.

    Args:
        entry: The entry's bytes.

    Returns:
        ``SHA-256(0x00 || entry)``.
    """
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node.

    Args:
        left: The left child's hash.
        right: The right child's hash.

    Returns:
        ``SHA-256(0x01 || left || right)``.
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of a sequence of leaf hashes.

    Computed bottom-up, level by level: pairs are hashed and an odd last node is carried up
    unchanged, which gives the same tree as the RFC's split at the largest power of two.

    Args:
        leaf_hashes: The leaves' hashes, in order.

    Returns:
        The root hash; :data:`EMPTY_ROOT` for no leaves.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [
            sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], *, kind: str, expected: int) -> None:
    if len(proof) != expected:
        raise ProofError(f"{kind} proof has {len(proof)} hashes, expected {expected}")
    for position, value in enumerate(proof):
        _check_hash(value, f"{kind} proof hash {position}")


def _inclusion_length(index: int, size: int) -> tuple[int, int]:
    """The (inner, border) split of an inclusion proof's length (as Go's tlog computes it)."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def verify_inclusion(
    *, leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that the leaf hash ``leaf`` is at ``index`` in the tree of ``size`` with ``root``.

    Args:
        leaf: The leaf's HASH (:func:`leaf_hash` of the entry).
        index: The leaf's index, from 0.
        size: The tree size the proof is for.
        proof: The audit path, bottom up (RFC 9162 §2.1.3.1).
        root: The root hash of the tree of ``size``.

    Raises:
        ProofError: The index is outside the tree, the proof has the wrong length or hash
            sizes, or it does not lead to ``root``.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    _check_proof(proof, kind="inclusion", expected=sum(_inclusion_length(index, size)))
    # RFC 9162 §2.1.3.2 step 6. Once fn == sn the node is on the tree's right edge and every
    # remaining hash is a left sibling, so the RFC's shifting past levels that have no sibling
    # only serves its final "sn == 0" check, which the length check above replaces.
    fn, sn, result = index, size - 1, leaf
    for value in proof:
        result = node_hash(value, result) if fn & 1 or fn == sn else node_hash(result, value)
        fn >>= 1
        sn >>= 1
    if result != root:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {size} does not lead to the root"
        )


def verify_consistency(
    *,
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of ``new_size`` extends the tree of ``old_size`` (append-only).

    Args:
        old_size: The earlier tree's size.
        new_size: The later tree's size.
        old_root: The earlier tree's root hash.
        new_root: The later tree's root hash.
        proof: The consistency proof (RFC 9162 §2.1.4.1).

    Raises:
        ProofError: A rollback (``old_size > new_size``), a split view (equal sizes, different
            roots), a proof of the wrong length, or one that does not lead to both roots.
    """
    if old_size < 0:
        raise ProofError(f"tree size {old_size} is negative")
    if old_size > new_size:
        raise ProofError(f"rollback: old size {old_size} > new size {new_size}")
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    if old_size == new_size:
        _check_proof(proof, kind="consistency", expected=0)
        if old_root != new_root:
            raise ProofError(f"split view: same size {old_size}, different roots")
        return
    if old_size == 0:
        _check_proof(proof, kind="consistency", expected=0)
        return
    _check_proof(proof, kind="consistency", expected=_consistency_length(old_size, new_size))
    old_result, new_result = _consistency_roots(old_size, new_size, old_root, proof)
    if old_result != old_root:
        raise ProofError(
            f"consistency proof from size {old_size} to {new_size} does not lead to the old root"
        )
    if new_result != new_root:
        raise ProofError(
            f"consistency proof from size {old_size} to {new_size} does not lead to the new root"
        )


def _consistency_length(old_size: int, new_size: int) -> int:
    """The number of hashes in the consistency proof between two sizes, ``0 < old < new``."""
    inner, border = _inclusion_length(old_size - 1, new_size)
    shift = (old_size ^ (old_size - 1)).bit_length() - 1  # trailing zero bits
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


def _consistency_roots(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 2-7: the old and new roots the proof leads to.

    The proof's length was checked first, so the walk ends exactly at the root: the RFC's
    ``sn == 0`` checks cannot fail, and its shifting past the levels without a sibling once
    ``fn == sn`` (the right edge, where every remaining hash is a left sibling) is not needed.
    """
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_result = new_result = path[0]
    for value in path[1:]:
        if fn & 1 or fn == sn:
            old_result = node_hash(value, old_result)
            new_result = node_hash(value, new_result)
        else:
            new_result = node_hash(new_result, value)
        fn >>= 1
        sn >>= 1
    return old_result, new_result
