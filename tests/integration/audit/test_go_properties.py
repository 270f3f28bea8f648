"""Property: for any tree built by ``tiles.append_leaves`` (in two appends, split anywhere), the
checkpoint, an inclusion proof of any leaf and a consistency proof from any older size (its root
from ``merkle.root_of``) made by ``trustfleet.audit`` verify with Go's ``sumdb/tlog``; a proof
for the wrong leaf does not.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interop_support import PyLog, make_entry, write, write_proof

from support.tlogverify import run_tlogverify, verify_ok
from trustfleet.audit.merkle import leaf_hash, root_of
from trustfleet.audit.tiles import consistency_proof, inclusion_proof

MAX_SIZE = 1300  # past five level-0 tiles, into a partial level-1 tile of width 5


@st.composite
def trees(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """(size, first append's size, a leaf index, an older size)."""
    size = draw(st.integers(min_value=1, max_value=MAX_SIZE))
    split = draw(st.integers(min_value=0, max_value=size))
    index = draw(st.integers(min_value=0, max_value=size - 1))
    old_size = draw(st.integers(min_value=1, max_value=size))
    return size, split, index, old_size


def build(size: int, split: int) -> PyLog:
    log = PyLog()
    for end in (split, size):
        if end > log.size:
            log.append([make_entry(i) for i in range(log.size, end)])
    return log


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=trees())
def test_python_proofs_verify_with_go(tlogverify: Path, case: tuple[int, int, int, int]) -> None:
    size, split, index, old_size = case
    log = build(size, split)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        head = write(tmp / "head", log.signed(size))
        entry = write(tmp / "entry", log.entries[index])
        proof = inclusion_proof(index=index, size=size, read_tile=log.read_tile)
        incl = write_proof(tmp / "incl", proof)
        args = ["inclusion", "--vkey", log.vkey, "--note", head, "--entry", entry, "--proof", incl]
        verify_ok(tlogverify, *args, "--index", str(index))
        if size > 1:  # the same proof for another leaf must not verify
            other = run_tlogverify(tlogverify, *args, "--index", str((index + 1) % size))
            assert other.returncode == 1, other.stderr
        log.roots[old_size] = root_of([leaf_hash(e) for e in log.entries[:old_size]])
        old = write(tmp / "old", log.signed(old_size))
        cons = consistency_proof(old_size=old_size, new_size=size, read_tile=log.read_tile)
        verify_ok(tlogverify, "consistency", "--vkey", log.vkey, "--old", old, "--new", head,
                  "--proof", write_proof(tmp / "cons", cons))  # fmt: skip
