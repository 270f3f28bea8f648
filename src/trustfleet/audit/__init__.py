"""The tamper-evident audit log: an RFC 9162 Merkle tree published as C2SP tlog-tiles.

:mod:`~trustfleet.audit.merkle` hashes leaves and nodes and verifies inclusion and consistency
proofs; :mod:`~trustfleet.audit.tiles` stores the tree as tiles of 256 hashes, extends it and
derives roots and proofs from the tiles alone. Everything here is pure: bytes in, bytes out, a
:class:`ProofError` with a one-line reason when something does not verify.
"""

from trustfleet.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

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
