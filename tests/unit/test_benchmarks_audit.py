"""The audit benchmark's pure parts (benchmarks/_auditkit.py) compute what they claim.

Only what needs no store, token or clock: the in-memory tree the integration figures come from
has the RFC 9162 root of its leaves, and the proof figures measure real proofs of the right
sizes. No assertion on time.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _auditkit import build_tree, entry_bytes, proof_figures

from trustfleet.audit.merkle import leaf_hash, root_of


@pytest.mark.parametrize(("size", "batch"), [(1, 1), (300, 7), (70_000, 10_000)])
def test_the_tree_has_the_root_of_its_leaves(size: int, batch: int) -> None:
    tree = build_tree(size, batch=batch)
    assert tree.size == size
    assert tree.root == root_of([leaf_hash(entry_bytes(i)) for i in range(size)])
    assert tree.figures["checkpoints"] == math.ceil(size / batch)
    assert tree.figures["leaves"] == size


def test_entries_are_distinct() -> None:
    assert len({entry_bytes(i) for i in range(1000)}) == 1000


def test_proof_figures_measure_proofs_of_the_expected_sizes() -> None:
    size = 70_000
    figures = proof_figures(build_tree(size, batch=5_000), samples=40)
    bound = 32 * math.ceil(math.log2(size))
    assert figures["log2_bound_bytes"] == bound
    assert figures["inclusion_bytes_max"] <= bound
    assert 0 < figures["consistency_bytes_max"] <= 2 * bound
    assert figures["samples"] == 40
