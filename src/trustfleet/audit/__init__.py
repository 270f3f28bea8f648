"""The tamper-evident audit log: an RFC 9162 Merkle tree, signed notes, checkpoints, cosignatures.

:mod:`~trustfleet.audit.merkle` hashes leaves and nodes and verifies inclusion and consistency
proofs; :mod:`~trustfleet.audit.tiles` stores the tree as tiles of 256 hashes (C2SP tlog-tiles);
:mod:`~trustfleet.audit.note` and :mod:`~trustfleet.audit.checkpoint` are C2SP signed notes,
cosignatures and checkpoints. Everything here is pure: bytes in, bytes out, an
:class:`~trustfleet.errors.InvalidInput` with a one-line reason when something does not verify.
"""

from trustfleet.audit.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    CheckpointError,
    parse_checkpoint,
)
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
from trustfleet.audit.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    NoteError,
    NoteSignature,
    RawSigner,
    Verifier,
    cosign,
    cosignature_time,
    format_note,
    key_id,
    parse_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
    with_signatures,
)

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "CheckpointError",
    "Note",
    "NoteError",
    "NoteSignature",
    "ProofError",
    "RawSigner",
    "Verifier",
    "cosign",
    "cosignature_time",
    "format_note",
    "key_id",
    "leaf_hash",
    "node_hash",
    "parse_checkpoint",
    "parse_note",
    "parse_verifier_key",
    "root_of",
    "sign_note",
    "verifier_key",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
    "with_signatures",
]
