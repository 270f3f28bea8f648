"""The witness's decisions (c2sp.org/tlog-witness add-checkpoint), each outcome, without I/O."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rfc9162 import Reference, ref_leaf_hash

from support.softkeys import SoftEd25519Key
from trustfleet.audit import (
    COSIGNATURE_V1,
    ED25519,
    EMPTY_ROOT,
    Checkpoint,
    Note,
    NoteSignature,
    Verifier,
    cosignature_time,
    format_note,
    parse_note,
    sign_note,
    verify_note,
)
from trustfleet.audit.witness import (
    MAX_PROOF_HASHES,
    MAX_REQUEST_BYTES,
    Cosigned,
    Decision,
    Outcome,
    cosign_checkpoint,
    format_add_checkpoint,
    format_signature_lines,
    parse_add_checkpoint,
    review,
)
from trustfleet.errors import InvalidInput

ORIGIN = "log.example/audit"
WITNESS = "witness.example/w1"
REF = Reference([ref_leaf_hash(b"event %d" % i) for i in range(40)])
NOW_S = 1_790_000_000


LOG_KEY = SoftEd25519Key(1)
OTHER_KEY = SoftEd25519Key(2)
WITNESS_KEY = SoftEd25519Key(3)
LOG = Verifier(ORIGIN, ED25519, LOG_KEY.public_bytes_raw())
LOGS = {ORIGIN: [LOG]}
WITNESS_VERIFIER = Verifier(WITNESS, COSIGNATURE_V1, WITNESS_KEY.public_bytes_raw())


def _note(
    size: int, *, root: bytes | None = None, key: SoftEd25519Key = LOG_KEY, origin: str = ORIGIN
) -> Note:
    checkpoint = Checkpoint(origin, size, REF.root(size) if root is None else root)
    return sign_note(checkpoint.text(), name=ORIGIN, signer=key)


def _body(
    old: int, size: int, *, proof: list[bytes] | None = None, note: Note | None = None
) -> bytes:
    proof = REF.consistency(old, size) if proof is None else proof
    return format_add_checkpoint(old_size=old, proof=proof, note=format_note(note or _note(size)))


def _cosigned(size: int, *, root: bytes | None = None) -> dict[str, Cosigned]:
    decision = review(_body(0, size, note=_note(size, root=root)), logs=LOGS, latest={})
    _, record = cosign_checkpoint(decision, name=WITNESS, signer=WITNESS_KEY, timestamp_s=NOW_S)
    return {ORIGIN: record}


def _review(body: bytes, latest: dict[str, Cosigned] | None = None) -> Decision:
    return review(body, logs=LOGS, latest=latest or {})


def test_the_first_checkpoint_is_cosigned_and_the_cosignature_verifies() -> None:
    decision = _review(_body(0, 5))
    assert (decision.outcome, decision.status) == (Outcome.COSIGN, 200)
    signature, record = cosign_checkpoint(
        decision, name=WITNESS, signer=WITNESS_KEY, timestamp_s=NOW_S
    )
    assert cosignature_time(signature) == NOW_S
    assert record.checkpoint == Checkpoint(ORIGIN, 5, REF.root(5))
    assert record.time_s == NOW_S
    # The record keeps the log's signature and the cosignature; both verify.
    assert verify_note(record.note, verifiers=[LOG, WITNESS_VERIFIER]) == [LOG, WITNESS_VERIFIER]
    # The answer's lines, appended to the checkpoint, are the cosignature (the spec's parse).
    note = format_note(_note(5))
    appended = parse_note(note + format_signature_lines([signature]))
    assert appended.signatures[-1] == signature


@pytest.mark.parametrize(("old", "new"), [(5, 6), (5, 8), (5, 33), (5, 5)], ids=str)
def test_a_consistent_checkpoint_is_cosigned(old: int, new: int) -> None:
    decision = _review(_body(old, new), _cosigned(old))
    assert decision.outcome is Outcome.COSIGN, decision.reason


def test_an_unknown_signature_is_ignored_and_not_kept() -> None:
    stranger = sign_note(_note(5).text, name="stranger.example", signer=OTHER_KEY).signatures
    note = _note(5)
    note = Note(note.text, (*stranger, *note.signatures))
    decision = _review(_body(0, 5, note=note))
    assert decision.outcome is Outcome.COSIGN
    _, record = cosign_checkpoint(decision, name=WITNESS, signer=WITNESS_KEY, timestamp_s=NOW_S)
    assert [s.name for s in record.note.signatures] == [ORIGIN, WITNESS]


@pytest.mark.parametrize(
    ("old", "latest", "known"),
    [(3, None, 0), (0, 5, 5), (4, 5, 5), (6, 5, 5)],
    ids=["never-cosigned", "old-zero-but-known", "stale", "ahead"],
)
def test_an_old_size_that_is_not_the_cosigned_one_is_409_with_that_size(
    old: int, latest: int | None, known: int
) -> None:
    decision = _review(_body(old, 9), _cosigned(latest) if latest else None)
    assert (decision.outcome, decision.status, decision.known_size) == (
        Outcome.SIZE_MISMATCH, 409, known,
    )  # fmt: skip


def test_an_unknown_log_is_404() -> None:
    body = _body(0, 5, note=_note(5, origin="other.example/log"))
    decision = _review(body)
    assert (decision.outcome, decision.status) == (Outcome.UNKNOWN_LOG, 404)


def _forged() -> Note:
    return _note(5, key=OTHER_KEY)  # the log's name, another key: an unknown key id


def _bad_signature() -> Note:
    note = _note(5)
    sig = note.signatures[0]
    broken = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    return Note(note.text, (broken,))


@pytest.mark.parametrize(
    ("make", "reason"),
    [(_forged, "no signature by a known key"), (_bad_signature, f"bad signature by {ORIGIN}")],
    ids=["forged-with-another-key", "bad-signature-by-the-log-key"],
)
def test_a_checkpoint_without_a_valid_log_signature_is_403(make: object, reason: str) -> None:
    note = make()  # type: ignore[operator]  # one of the two makers above
    decision = _review(_body(0, 5, note=note))
    assert (decision.outcome, decision.status, decision.reason) == (
        Outcome.BAD_SIGNATURE, 403, reason,
    )  # fmt: skip
    assert decision.evidence is None


def test_an_old_size_beyond_the_checkpoint_is_400() -> None:
    decision = _review(_body(6, 5, proof=[]), _cosigned(6))
    assert (decision.outcome, decision.status) == (Outcome.BAD_REQUEST, 400)


def test_a_split_view_is_422_with_both_checkpoints_as_evidence() -> None:
    latest = _cosigned(8)
    other = _note(8, root=REF.root(9))
    decision = _review(_body(8, 8, proof=[], note=other), latest)
    assert (decision.outcome, decision.status) == (Outcome.SPLIT_VIEW, 422)
    assert "split view" in decision.reason
    evidence = decision.evidence
    assert evidence is not None
    assert evidence.origin == ORIGIN
    assert evidence.cosigned == latest[ORIGIN].note
    assert evidence.submitted == other


def _flip(proof: list[bytes]) -> list[bytes]:
    return [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]


@pytest.mark.parametrize(
    ("old", "new", "proof", "root"),
    [
        (5, 9, _flip(REF.consistency(5, 9)), None),
        (5, 9, REF.consistency(5, 9)[:-1], None),
        (5, 9, REF.consistency(5, 9), REF.root(10)),
        (5, 5, [REF.root(5)], None),
    ],
    ids=["altered-proof", "short-proof", "another-tree", "proof-between-equal-sizes"],
)
def test_a_proof_that_fails_is_422_with_evidence(
    old: int, new: int, proof: list[bytes], root: bytes | None
) -> None:
    latest = _cosigned(old)
    decision = _review(_body(old, new, proof=proof, note=_note(new, root=root)), latest)
    assert (decision.outcome, decision.status) == (Outcome.INCONSISTENT, 422), decision.reason
    assert decision.evidence is not None
    assert decision.evidence.cosigned == latest[ORIGIN].note


@pytest.mark.parametrize(
    ("size", "root", "proof", "reason"),
    [
        (0, bytes(32), [], "size 0 must have the empty tree's root"),
        (5, None, [REF.root(5)], "a proof from size 0 must be empty"),
    ],
    ids=["empty-tree-wrong-root", "proof-from-zero"],
)
def test_checks_from_size_zero_are_422(
    size: int, root: bytes | None, proof: list[bytes], reason: str
) -> None:
    decision = _review(_body(0, size, proof=proof, note=_note(size, root=root)))
    assert (decision.outcome, decision.status) == (Outcome.INCONSISTENT, 422)
    assert reason in decision.reason
    assert decision.evidence is not None
    assert decision.evidence.cosigned is None


def test_the_empty_tree_is_cosigned() -> None:
    decision = _review(_body(0, 0, note=_note(0, root=EMPTY_ROOT)))
    assert decision.outcome is Outcome.COSIGN


_NOTE = format_note(_note(5))
_HASH = base64.b64encode(bytes(32))
MALFORMED = {
    "empty": b"",
    "no-old-line": _NOTE,
    "leading-zero": b"old 05\n\n" + _NOTE,
    "negative": b"old -1\n\n" + _NOTE,
    "no-newline-after-old": b"old 5",
    "proof-not-base64": b"old 5\n!!!!\n\n" + _NOTE,
    "proof-short-hash": b"old 5\n" + base64.b64encode(bytes(31)) + b"\n\n" + _NOTE,
    "proof-non-canonical": b"old 5\n" + _HASH[:-2] + b"B=\n\n" + _NOTE,
    "too-many-proof-lines": b"old 5\n" + (_HASH + b"\n") * (MAX_PROOF_HASHES + 1) + b"\n" + _NOTE,
    "no-blank-line": b"old 5\n" + _HASH + b"\n",
    "malformed-note": b"old 0\n\nnot a note",
    "not-a-checkpoint": b"old 0\n\n"
    + format_note(sign_note("hello\n", name=ORIGIN, signer=LOG_KEY)),
    "too-large": b"old 0\n\n" + b"x" * MAX_REQUEST_BYTES,
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_is_400(body: bytes) -> None:
    decision = _review(body)
    assert (decision.outcome, decision.status) == (Outcome.BAD_REQUEST, 400)
    assert decision.reason


def test_a_request_round_trips() -> None:
    proof = REF.consistency(5, 33)
    request = parse_add_checkpoint(format_add_checkpoint(old_size=5, proof=proof, note=_NOTE))
    assert (request.old_size, list(request.proof)) == (5, proof)
    assert request.checkpoint == Checkpoint(ORIGIN, 5, REF.root(5))


def test_only_a_decision_to_cosign_is_cosigned() -> None:
    refused = _review(_body(3, 5))
    with pytest.raises(InvalidInput, match="cannot cosign"):
        cosign_checkpoint(refused, name=WITNESS, signer=WITNESS_KEY, timestamp_s=NOW_S)
    with pytest.raises(InvalidInput, match="timestamp must be positive"):
        cosign_checkpoint(_review(_body(0, 5)), name=WITNESS, signer=WITNESS_KEY, timestamp_s=0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.builds(lambda tail: b"old 0\n" + tail, st.binary(max_size=300)))
def test_any_body_gets_a_decision_never_an_exception(body: bytes) -> None:
    assert _review(body, _cosigned(5)).status in {400, 403, 404, 409, 422}
