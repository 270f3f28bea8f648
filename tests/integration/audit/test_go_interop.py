"""TrustFleet's audit modules and Go's sumdb code verify each other.

Go → Python: ``trustfleet.audit`` accepts the notes, proofs and tiles that ``tlogverify gen``
builds with Go's ``sumdb/note`` and ``sumdb/tlog``. Python → Go: a log built with
``tiles.append_leaves`` in several batches, signed with ``note.sign_note`` and cosigned by two
witnesses, verifies with the Go program (note, inclusion, consistency, tiles), and each tamper
of the Python-made log is rejected by it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from interop_support import ORIGIN, PyLog, SeededKey, make_entry, read_proof, write, write_proof

from support.tlogverify import Vectors, flip_byte, generate, verify_fails, verify_ok
from trustfleet.audit.checkpoint import Checkpoint, parse_checkpoint
from trustfleet.audit.merkle import (
    ProofError,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from trustfleet.audit.note import (
    COSIGNATURE_V1,
    ED25519,
    cosign,
    format_note,
    parse_note,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
    with_signatures,
)
from trustfleet.audit.tiles import (
    TILE_WIDTH,
    consistency_proof,
    decode_entry_bundle,
    encode_entry_bundle,
    entries_path,
    inclusion_proof,
    tile_path,
    tile_width,
    verify_tiles,
)

WITNESSES = ("witness.test/w1", "witness.test/w2")
COSIGNED_AT_S = 1_767_225_600  # a fixed time: tests never read the clock
BATCHES = (1, 3, 256, 257, 600, 1000)  # tree sizes after each append


# ---- Go → Python -------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[1, 1000, 70_000], ids=lambda n: f"go-{n}")
def go_vectors(
    request: pytest.FixtureRequest, tlogverify: Path, tmp_path_factory: pytest.TempPathFactory
) -> Vectors:
    """Go's vectors for 1 entry, 1,000 (partial tiles) and 70,000 (a level-2 tile)."""
    size: int = request.param
    return generate(
        tlogverify,
        tmp_path_factory.mktemp("go") / "v",
        size=size,
        seed="c0ffee",
        origin="go.test/log",
    )


def go_checkpoint(v: Vectors, name: str = "checkpoint") -> Checkpoint:
    verifier = parse_verifier_key(v.vkey)
    note = parse_note((v.root / name).read_bytes())
    assert verify_note(note, verifiers=[verifier]) == [verifier]
    return parse_checkpoint(note.text)


def test_python_verifies_go_notes_and_proofs(go_vectors: Vectors) -> None:
    v = go_vectors
    head = go_checkpoint(v)
    assert (head.origin, head.size) == (v.manifest["origin"], v.manifest["size"])
    assert base64.b64encode(head.root).decode() == v.manifest["root"]
    for index in v.manifest["inclusion"]:
        entry = (v.root / f"entries/{index}").read_bytes()
        proof = read_proof(v.root / f"proofs/incl-{index}")
        verify_inclusion(
            leaf=leaf_hash(entry), index=index, size=head.size, proof=proof, root=head.root
        )
    for size in v.manifest["consistency"]:
        old = go_checkpoint(v, f"old-{size}")
        proof = read_proof(v.root / f"proofs/cons-{size}")
        verify_consistency(
            old_size=old.size,
            new_size=head.size,
            old_root=old.root,
            new_root=head.root,
            proof=proof,
        )


def test_python_verifies_go_tiles(go_vectors: Vectors) -> None:
    v, head = go_vectors, go_checkpoint(go_vectors)
    log = v.root / "log"

    def read_tile(level: int, index: int) -> bytes:
        width = tile_width(level=level, index=index, size=head.size)
        return (log / tile_path(level, index, width)).read_bytes()

    verify_tiles(size=head.size, root=head.root, read_tile=read_tile)
    leaves: list[bytes] = []
    for k in range(-(-head.size // TILE_WIDTH)):
        width = min(TILE_WIDTH, head.size - k * TILE_WIDTH)
        entries = decode_entry_bundle((log / entries_path(k, width)).read_bytes())
        hashes = [leaf_hash(e) for e in entries]
        assert b"".join(hashes) == read_tile(0, k), f"bundle {k} does not match its hash tile"
        leaves += hashes
    assert root_of(leaves) == head.root


def test_python_rejects_a_go_proof_with_a_flipped_hash(go_vectors: Vectors) -> None:
    v, head = go_vectors, go_checkpoint(go_vectors)
    index = v.manifest["inclusion"][-1]
    proof = read_proof(v.root / f"proofs/incl-{index}")
    entry = (v.root / f"entries/{index}").read_bytes()
    if not proof:  # a one-entry tree: the proof is empty, so alter the entry instead
        entry += b"x"
    else:
        proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    with pytest.raises(ProofError):
        verify_inclusion(
            leaf=leaf_hash(entry), index=index, size=head.size, proof=proof, root=head.root
        )


# ---- Python → Go -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pylog() -> PyLog:
    """1,000 entries appended in batches that end inside, on and just past tile edges."""
    log = PyLog()
    for end in BATCHES:
        log.append([make_entry(i) for i in range(log.size, end)])
    assert root_of([leaf_hash(e) for e in log.entries]) == log.roots[log.size]
    return log


@pytest.fixture
def published(pylog: PyLog, tmp_path: Path) -> Path:
    """The Python log's tiles in a directory a test may alter."""
    return pylog.publish(tmp_path / "log")


def test_go_verifies_a_python_note_and_its_cosignatures(
    tlogverify: Path, pylog: PyLog, tmp_path: Path
) -> None:
    text = Checkpoint(
        origin=ORIGIN, size=pylog.size, root=pylog.roots[pylog.size], extensions=("x-ext one",)
    ).text()
    cosigs = [
        cosign(text, name=w, signer=SeededKey(w), timestamp_s=COSIGNED_AT_S + i)
        for i, w in enumerate(WITNESSES)
    ]
    note = with_signatures(sign_note(text, name=ORIGIN, signer=pylog.key), cosigs)
    path = write(tmp_path / "checkpoint", format_note(note))
    wkeys = [verifier_key(w, COSIGNATURE_V1, SeededKey(w).public_bytes_raw()) for w in WITNESSES]
    witness_args = [arg for k in wkeys for arg in ("--witness", k)]
    # Regression: the Go verifier once split a vkey on every "+", which base64 may contain.
    assert "+" in wkeys[0].split("+", 2)[2]
    result = verify_ok(tlogverify, "note", "--vkey", pylog.vkey, "--note", path, *witness_args)
    assert result["size"] == pylog.size
    assert result["root"] == base64.b64encode(pylog.roots[pylog.size]).decode()
    assert result["extensions"] == ["x-ext one"]
    assert result["witnesses"] == [
        {"name": w, "time": COSIGNED_AT_S + i} for i, w in enumerate(WITNESSES)
    ]
    stranger = verifier_key("witness.test/w3", COSIGNATURE_V1, SeededKey("w3").public_bytes_raw())
    reason = verify_fails(
        tlogverify, "note", "--vkey", pylog.vkey, "--note", path, "--witness", stranger
    )
    assert "no cosignature by witness.test/w3" in reason
    # A cosignature of another checkpoint, carried on this one, is a bad cosignature.
    older = cosign(
        pylog.text(3), name=WITNESSES[0], signer=SeededKey(WITNESSES[0]), timestamp_s=COSIGNED_AT_S
    )
    moved = write(tmp_path / "moved", format_note(with_signatures(note, [older])))
    reason = verify_fails(tlogverify, "note", "--vkey", pylog.vkey, "--note", moved, *witness_args)
    assert f"bad cosignature by {WITNESSES[0]}" in reason


def test_go_verifies_python_inclusion_proofs(
    tlogverify: Path, pylog: PyLog, tmp_path: Path
) -> None:
    head = write(tmp_path / "checkpoint", pylog.signed(pylog.size))
    for index in (0, 1, 2, 255, 256, 511, 512, 599, 777, pylog.size - 1):
        proof = inclusion_proof(index=index, size=pylog.size, read_tile=pylog.read_tile)
        entry = write(tmp_path / f"entry-{index}", pylog.entries[index])
        proof_file = write_proof(tmp_path / f"incl-{index}", proof)
        verify_ok(tlogverify, "inclusion", "--vkey", pylog.vkey, "--note", head,
                  "--index", str(index), "--entry", entry, "--proof", proof_file)  # fmt: skip


def test_go_verifies_python_consistency_proofs(
    tlogverify: Path, pylog: PyLog, tmp_path: Path
) -> None:
    head = write(tmp_path / "checkpoint", pylog.signed(pylog.size))
    for old_size in BATCHES:
        old = write(tmp_path / f"old-{old_size}", pylog.signed(old_size))
        proof = consistency_proof(old_size=old_size, new_size=pylog.size, read_tile=pylog.read_tile)
        proof_file = write_proof(tmp_path / f"cons-{old_size}", proof)
        verify_ok(tlogverify, "consistency", "--vkey", pylog.vkey, "--old", old, "--new", head,
                  "--proof", proof_file)  # fmt: skip


def test_go_verifies_python_tiles(tlogverify: Path, pylog: PyLog, published: Path) -> None:
    result = verify_ok(tlogverify, "tiles", "--vkey", pylog.vkey, "--base", published)
    assert (result["size"], result["entries"]) == (pylog.size, pylog.size)
    witness = WITNESSES[0]
    cosig = cosign(pylog.text(pylog.size), name=witness, signer=SeededKey(witness),
                   timestamp_s=COSIGNED_AT_S)  # fmt: skip
    note = with_signatures(parse_note((published / "checkpoint").read_bytes()), [cosig])
    write(published / "checkpoint", format_note(note))
    wkey = verifier_key(witness, COSIGNATURE_V1, SeededKey(witness).public_bytes_raw())
    args = ["tiles", "--vkey", pylog.vkey, "--base", published, "--witness", wkey]
    assert verify_ok(tlogverify, *args)["witnesses"] == [{"name": witness, "time": COSIGNED_AT_S}]


def swap_first_entries(base: Path) -> None:
    entries = decode_entry_bundle((base / entries_path(0)).read_bytes())
    entries[0], entries[1] = entries[1], entries[0]
    write(base / entries_path(0), encode_entry_bundle(entries))


def truncate_log(log: PyLog, base: Path) -> None:
    """Drop the last bundle's final entry (the checkpoint still claims it)."""
    k = (log.size - 1) // TILE_WIDTH
    last = base / entries_path(k, log.size - k * TILE_WIDTH)
    entries = decode_entry_bundle(last.read_bytes(), max_entries=TILE_WIDTH)
    write(last, encode_entry_bundle(entries[:-1]))


def forge_checkpoint(pylog: PyLog, base: Path) -> None:
    write(base / "checkpoint", pylog.signed(pylog.size, key=SeededKey("attacker")))


TileTamper = Callable[[PyLog, Path], None]
TILE_TAMPERS: list[tuple[str, TileTamper]] = [
    ("hash-tile-byte", lambda log, base: flip_byte(base / tile_path(0, 1), 77)),
    ("upper-tile-byte", lambda log, base: flip_byte(base / tile_path(1, 0, 3), 3)),
    ("entry-edited", lambda log, base: flip_byte(base / entries_path(2), 30)),
    ("entries-swapped", lambda log, base: swap_first_entries(base)),
    ("log-truncated", truncate_log),
    ("checkpoint-other-key", forge_checkpoint),
]


@pytest.mark.parametrize("tamper", [t[1] for t in TILE_TAMPERS], ids=[t[0] for t in TILE_TAMPERS])
def test_go_rejects_a_tampered_python_log(
    tlogverify: Path, pylog: PyLog, published: Path, tamper: TileTamper
) -> None:
    tamper(pylog, published)
    verify_fails(tlogverify, "tiles", "--vkey", pylog.vkey, "--base", published)


def test_go_reports_a_split_view_and_a_foreign_origin(
    tlogverify: Path, pylog: PyLog, tmp_path: Path
) -> None:
    forked = PyLog(key=pylog.key)
    forked.append([make_entry(i) for i in range(599)] + [b'{"forged":true}'])
    seen = write(tmp_path / "seen", pylog.signed(600))
    other = write(tmp_path / "other", forked.signed(600))
    empty = write(tmp_path / "empty-proof", b"")
    reason = verify_fails(tlogverify, "consistency", "--vkey", pylog.vkey, "--old", seen,
                          "--new", other, "--proof", empty)  # fmt: skip
    assert "split view" in reason
    renamed = write(tmp_path / "renamed", pylog.signed(600, name="another.test/log"))
    other_vkey = verifier_key("another.test/log", ED25519, pylog.key.public_bytes_raw())
    reason = verify_fails(tlogverify, "note", "--vkey", other_vkey, "--note", renamed)
    assert "origin" in reason
