"""The tamper-evident audit log (docs/audit.md): an RFC 9162 Merkle tree of the security events,
published as C2SP tlog-tiles, with checkpoints in C2SP signed notes and witness cosignatures.

Pure modules, bytes in and bytes out, each failure a one-line :class:`ProofError` /
:class:`NoteError` / ... (all :class:`~trustfleet.errors.InvalidInput`):

- :mod:`~trustfleet.audit.entry`: an event's entry bytes (canonical JSON)
- :mod:`~trustfleet.audit.merkle`: leaf and node hashes, inclusion and consistency verification
- :mod:`~trustfleet.audit.tiles`: the tree as tiles of 256 hashes; roots and proofs from tiles
- :mod:`~trustfleet.audit.note`, :mod:`~trustfleet.audit.checkpoint`: signed notes, checkpoints,
  cosignatures (the signing key stays in a token: :class:`RawSigner`)
- :mod:`~trustfleet.audit.proof_file`: offline inclusion proofs (C2SP tlog-proof)
- :mod:`~trustfleet.audit.logcheck`: which entries of a log changed, went missing or moved
- :mod:`~trustfleet.audit.witness`: a witness's decisions (C2SP tlog-witness)
- :mod:`~trustfleet.audit.context`: who acts and from where, recorded on each event
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
