"""A transparency-log witness's decisions (C2SP tlog-witness ``add-checkpoint``), without I/O.

The witness keeps, per log origin, the last checkpoint it cosigned. A request carries an old
size, a consistency proof and a new checkpoint signed by the log; :func:`review` says what to
do with it, in the order of the specification (c2sp.org/tlog-witness):

* 400: the body is malformed, larger than its bound, or its old size exceeds the checkpoint's;
* 404: no log with the checkpoint's origin is configured;
* 403: no valid signature by a key of that log, or a signature by one of its keys that fails;
* 409: the old size is not the size the witness cosigned last (the answer carries that size);
* 422: the proof does not lead from the cosigned checkpoint to the new one, or a tree of size 0
  does not have the empty root. A checkpoint of the cosigned size with another root is a
  *split view*: the log signed two different trees of one size, proof of misbehaviour;
* 200: cosign (:func:`cosign_checkpoint`), and record the new checkpoint.

Every 422 of a validly signed checkpoint carries :class:`Evidence` (both checkpoints), which
the service keeps as an alert. The check of the old size and the update of the record must be
atomic: the caller holds a lock around :func:`review` and the write of what it returns.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from trustfleet.audit.checkpoint import Checkpoint, parse_checkpoint
from trustfleet.audit.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency
from trustfleet.audit.note import (
    MAX_NOTE_BYTES,
    Note,
    NoteError,
    NoteSignature,
    RawSigner,
    Verifier,
    cosign,
    parse_note,
    verify_note,
    with_signatures,
)
from trustfleet.errors import InvalidInput

__all__ = [
    "MAX_PROOF_HASHES",
    "MAX_REQUEST_BYTES",
    "AddCheckpoint",
    "Cosigned",
    "Decision",
    "Evidence",
    "Outcome",
    "WitnessRequestError",
    "cosign_checkpoint",
    "decide",
    "format_add_checkpoint",
    "format_signature_lines",
    "parse_add_checkpoint",
    "review",
]

MAX_PROOF_HASHES: Final = 63
"""Most consistency-proof lines a request may carry (the specification's bound)."""
MAX_REQUEST_BYTES: Final = MAX_NOTE_BYTES + 32 + MAX_PROOF_HASHES * 45
"""The largest request body: the old size line, 63 proof lines, the blank line, a note."""

_OLD_LINE = re.compile(rb"old (0|[1-9][0-9]{0,19})\n")
_B64_HASH = re.compile(rb"[A-Za-z0-9+/]{43}=")


class WitnessRequestError(InvalidInput):
    """An ``add-checkpoint`` body that does not follow the format."""


class Outcome(StrEnum):
    """What the witness answers, with its HTTP status in :data:`Decision.status`."""

    COSIGN = "cosign"
    BAD_REQUEST = "bad_request"
    UNKNOWN_LOG = "unknown_log"
    BAD_SIGNATURE = "bad_signature"
    SIZE_MISMATCH = "size_mismatch"
    INCONSISTENT = "inconsistent"
    SPLIT_VIEW = "split_view"


_STATUS: Final = {
    Outcome.COSIGN: 200,
    Outcome.BAD_REQUEST: 400,
    Outcome.UNKNOWN_LOG: 404,
    Outcome.BAD_SIGNATURE: 403,
    Outcome.SIZE_MISMATCH: 409,
    Outcome.INCONSISTENT: 422,
    Outcome.SPLIT_VIEW: 422,
}


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request.

    Attributes:
        old_size: The size of the checkpoint the log believes the witness cosigned last.
        proof: The consistency proof from ``old_size`` to the checkpoint (hashes).
        note: The signed note that holds the checkpoint.
        checkpoint: The checkpoint in the note's text.
    """

    old_size: int
    proof: tuple[bytes, ...]
    note: Note
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Cosigned:
    """The witness's record for one log: the last checkpoint it cosigned.

    Attributes:
        checkpoint: That checkpoint.
        note: The signed note as the witness keeps it: the log's signatures it verified and
            its own cosignature.
        time_s: When it cosigned (POSIX seconds, the cosignature's timestamp).
    """

    checkpoint: Checkpoint
    note: Note
    time_s: int


@dataclass(frozen=True)
class Evidence:
    """Two signed views of one log that cannot both be true (or a proof that failed).

    Attributes:
        origin: The log.
        cosigned: The note the witness cosigned last (``None`` if it never cosigned one).
        submitted: The note just submitted, signed by the log.
        reason: Why they disagree.
    """

    origin: str
    cosigned: Note | None
    submitted: Note
    reason: str


@dataclass(frozen=True)
class Decision:
    """What to answer one request, and why.

    Attributes:
        outcome: The kind of answer.
        reason: One line for the log and the response body.
        request: The parsed request (``None`` when it was malformed).
        known_size: For :attr:`Outcome.SIZE_MISMATCH`: the size the witness cosigned last.
        evidence: For a 422 of a validly signed checkpoint: both views, for an alert.
        verified: For :attr:`Outcome.COSIGN`: the log's keys whose signatures verified.
    """

    outcome: Outcome
    reason: str
    request: AddCheckpoint | None = None
    known_size: int | None = None
    evidence: Evidence | None = None
    verified: tuple[Verifier, ...] = ()

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return _STATUS[self.outcome]


def parse_add_checkpoint(body: bytes, *, max_bytes: int = MAX_REQUEST_BYTES) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` body strictly.

    Args:
        body: ``old <size>\\n``, up to 63 base64 hash lines, an empty line, a signed note.
        max_bytes: The largest body accepted.

    Returns:
        The request.

    Raises:
        InvalidInput: It is larger than ``max_bytes`` or malformed (a
            :class:`WitnessRequestError`, or the note's or checkpoint's own error).
    """
    if len(body) > max_bytes:
        raise WitnessRequestError(f"request body larger than {max_bytes} bytes")
    match = _OLD_LINE.match(body)
    if match is None:
        raise WitnessRequestError("request does not start with an 'old <size>' line")
    old_size = int(match.group(1))
    pos = match.end()
    proof: list[bytes] = []
    while not body.startswith(b"\n", pos):
        end = body.find(b"\n", pos)
        if end < 0:
            raise WitnessRequestError("request has no empty line before the checkpoint")
        if len(proof) == MAX_PROOF_HASHES:
            raise WitnessRequestError(f"consistency proof longer than {MAX_PROOF_HASHES} hashes")
        proof.append(_proof_hash(body[pos:end]))
        pos = end + 1
    note = parse_note(body[pos + 1 :])
    checkpoint = parse_checkpoint(note.text)
    return AddCheckpoint(old_size=old_size, proof=tuple(proof), note=note, checkpoint=checkpoint)


def _proof_hash(line: bytes) -> bytes:
    if not _B64_HASH.fullmatch(line):
        raise WitnessRequestError("a consistency proof line is not one base64 SHA-256 hash")
    try:
        value = base64.b64decode(line, validate=True)
    except binascii.Error as exc:
        raise WitnessRequestError("a consistency proof line is not valid base64") from exc
    if len(value) != HASH_SIZE or base64.b64encode(value) != line:
        raise WitnessRequestError("a consistency proof line is not canonical base64")
    return value


def format_add_checkpoint(*, old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The body of an ``add-checkpoint`` request (what a log sends a witness)."""
    lines = [f"old {old_size}\n".encode()]
    lines += [base64.b64encode(node) + b"\n" for node in proof]
    return b"".join([*lines, b"\n", note])


def review(
    body: bytes,
    *,
    logs: Mapping[str, Sequence[Verifier]],
    latest: Mapping[str, Cosigned],
    max_bytes: int = MAX_REQUEST_BYTES,
) -> Decision:
    """Parse a request body and decide on it (a malformed body is a 400 decision).

    Args:
        body: The request body.
        logs: The keys of each known log, by origin.
        latest: The last cosigned checkpoint of each log that has one, by origin.
        max_bytes: The largest body accepted.
    """
    try:
        request = parse_add_checkpoint(body, max_bytes=max_bytes)
    except InvalidInput as exc:  # the format's, the note's and the checkpoint's errors
        return Decision(Outcome.BAD_REQUEST, exc.message)
    origin = request.checkpoint.origin
    return decide(request, verifiers=logs.get(origin, ()), latest=latest.get(origin))


def decide(
    request: AddCheckpoint, *, verifiers: Sequence[Verifier], latest: Cosigned | None
) -> Decision:
    """Decide on a parsed request, in the specification's order of checks.

    Args:
        request: The request.
        verifiers: The keys of the log the checkpoint names (empty: an unknown log).
        latest: The last checkpoint the witness cosigned for that log, if any.
    """
    checkpoint = request.checkpoint
    if not verifiers:
        return Decision(Outcome.UNKNOWN_LOG, f"unknown log {checkpoint.origin!r}", request)
    try:
        verified = verify_note(request.note, verifiers=verifiers)
    except NoteError as exc:
        return Decision(Outcome.BAD_SIGNATURE, exc.message, request)
    if request.old_size > checkpoint.size:
        reason = f"old size {request.old_size} is larger than the checkpoint's {checkpoint.size}"
        return Decision(Outcome.BAD_REQUEST, reason, request)
    known = latest.checkpoint.size if latest is not None else 0
    if request.old_size != known:
        reason = f"old size {request.old_size} is not the cosigned size {known}"
        return Decision(Outcome.SIZE_MISMATCH, reason, request, known_size=known)
    failure = _consistency_failure(request, latest)
    if failure is not None:
        outcome, reason = failure
        evidence = Evidence(
            origin=checkpoint.origin,
            cosigned=latest.note if latest is not None else None,
            submitted=_keep_signatures(request.note, verified),
            reason=reason,
        )
        return Decision(outcome, reason, request, evidence=evidence)
    return Decision(Outcome.COSIGN, "consistent", request, verified=tuple(verified))


def _consistency_failure(
    request: AddCheckpoint, latest: Cosigned | None
) -> tuple[Outcome, str] | None:
    checkpoint = request.checkpoint
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        return Outcome.INCONSISTENT, "a checkpoint of size 0 must have the empty tree's root"
    if latest is None:  # old size 0: the empty tree is consistent with every tree
        if request.proof:
            return Outcome.INCONSISTENT, "a proof from size 0 must be empty"
        return None
    old = latest.checkpoint
    if old.size == checkpoint.size and old.root != checkpoint.root:
        return Outcome.SPLIT_VIEW, (
            f"split view: two checkpoints of size {old.size} with different roots"
        )
    try:
        verify_consistency(
            old_size=old.size,
            new_size=checkpoint.size,
            old_root=old.root,
            new_root=checkpoint.root,
            proof=request.proof,
        )
    except ProofError as exc:
        return Outcome.INCONSISTENT, f"consistency proof from size {old.size}: {exc.message}"
    return None


def _keep_signatures(note: Note, verified: Sequence[Verifier]) -> Note:
    """``note`` with only the signatures of ``verified`` keys (others are ignored, unchecked)."""
    known = {(v.name, v.key_id) for v in verified}
    kept = tuple(s for s in note.signatures if (s.name, s.key_id) in known)
    return Note(text=note.text, signatures=kept)


def cosign_checkpoint(
    decision: Decision, *, name: str, signer: RawSigner, timestamp_s: int
) -> tuple[NoteSignature, Cosigned]:
    """Cosign the checkpoint of a :attr:`Outcome.COSIGN` decision.

    Args:
        decision: A decision to cosign.
        name: The witness's name (its key name).
        signer: The witness's Ed25519 key.
        timestamp_s: The cosignature's time (POSIX seconds, not zero).

    Returns:
        The cosignature, and the record to keep for the log.

    Raises:
        InvalidInput: The decision is not to cosign, or the timestamp is not positive.
    """
    if decision.outcome is not Outcome.COSIGN or decision.request is None:
        raise InvalidInput(f"cannot cosign a checkpoint refused as {decision.outcome}")
    if timestamp_s <= 0:
        raise InvalidInput("a cosignature's timestamp must be positive")
    request = decision.request
    signature = cosign(request.note.text, name=name, signer=signer, timestamp_s=timestamp_s)
    kept = _keep_signatures(request.note, decision.verified)
    record = Cosigned(
        checkpoint=request.checkpoint,
        note=with_signatures(kept, [signature]),
        time_s=timestamp_s,
    )
    return signature, record


def format_signature_lines(signatures: Sequence[NoteSignature]) -> bytes:
    """Note signature lines (``— name base64(key id || signature)``), as a 200 answer's body."""
    return "".join(signature.line() for signature in signatures).encode("utf-8")
