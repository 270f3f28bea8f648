"""RFC 9162 hashing and proof verification, against the RFC's recursive definitions."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from rfc9162 import Reference, ref_leaf_hash

from trustfleet.audit import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 70
LEAVES = [ref_leaf_hash(b"entry %d" % i) for i in range(MAX_SIZE)]
REF = Reference(LEAVES)

# RFC 6962's test leaves (as in Certificate Transparency's and Go's test suites) and their roots.
CT_ENTRIES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _flip(value: bytes, bit: int = 0) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


def _variants(verify: Callable[..., None], **args: object) -> Callable[..., Callable[[], None]]:
    """Calls of ``verify`` with ``args``, some of them changed."""

    def check(**changes: object) -> Callable[[], None]:
        return lambda: verify(**{**args, **changes})

    return check


def _fails(check: Callable[[], None], match: str | None = None) -> None:
    with pytest.raises(ProofError, match=match):
        check()


def test_hashes_follow_rfc6962() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert HASH_SIZE == 32
    assert leaf_hash(b"").hex() == CT_ROOTS[0]
    assert root_of([]) == EMPTY_ROOT
    hashes = [leaf_hash(entry) for entry in CT_ENTRIES]
    assert [root_of(hashes[:n]).hex() for n in range(1, 9)] == CT_ROOTS
    assert node_hash(hashes[0], hashes[1]).hex() == CT_ROOTS[1]


def test_root_of_matches_mth_for_every_size() -> None:
    for size in range(MAX_SIZE + 1):
        assert root_of(LEAVES[:size]) == REF.root(size), size


def test_every_inclusion_proof_verifies_and_every_alteration_fails() -> None:
    for size in range(1, MAX_SIZE + 1):
        root = REF.root(size)
        for index in range(size):
            proof = REF.inclusion(index, size)
            verify_inclusion(leaf=LEAVES[index], index=index, size=size, proof=proof, root=root)
            _inclusion_alterations_fail(index, size, proof)


def _inclusion_alterations_fail(index: int, size: int, proof: list[bytes]) -> None:
    root, leaf = REF.root(size), LEAVES[index]

    check = _variants(verify_inclusion, leaf=leaf, index=index, size=size, proof=proof, root=root)
    for position in range(len(proof)):
        altered = [*proof[:position], _flip(proof[position]), *proof[position + 1 :]]
        _fails(check(proof=altered), "does not lead to the root")
    _fails(check(leaf=_flip(leaf)), "does not lead to the root")
    _fails(check(root=_flip(root, 7)), "does not lead to the root")
    _fails(check(proof=[*proof, LEAVES[0]]), "inclusion proof has")
    if proof:
        _fails(check(proof=proof[:-1]), "inclusion proof has")
    for other in {index - 1, index + 1} & set(range(size)):
        _fails(check(index=other))
    for other in (size - 1, size + 1):
        if index < other <= MAX_SIZE and REF.inclusion(index, other) != proof:
            _fails(check(size=other, root=REF.root(other)))


def test_every_consistency_proof_verifies_and_every_alteration_fails() -> None:
    for new in range(MAX_SIZE + 1):
        for old in range(new + 1):
            proof = REF.consistency(old, new)
            verify_consistency(
                old_size=old,
                new_size=new,
                old_root=REF.root(old),
                new_root=REF.root(new),
                proof=proof,
            )
            if 0 < old < new:
                _consistency_alterations_fail(old, new, proof)


def _consistency_alterations_fail(old: int, new: int, proof: list[bytes]) -> None:
    old_root, new_root = REF.root(old), REF.root(new)
    check = _variants(
        verify_consistency,
        old_size=old,
        new_size=new,
        old_root=old_root,
        new_root=new_root,
        proof=proof,
    )
    for position in range(len(proof)):
        altered = [*proof[:position], _flip(proof[position]), *proof[position + 1 :]]
        _fails(check(proof=altered), "does not lead to the (old|new) root")
    _fails(check(old_root=_flip(old_root)), "does not lead to the (old|new) root")
    _fails(check(new_root=_flip(new_root)), "does not lead to the new root")
    _fails(check(proof=[*proof, LEAVES[0]]), "consistency proof has")
    _fails(check(proof=proof[:-1]), "consistency proof has")
    _fails(check(proof=proof[1:]), "consistency proof has")
    if new - 1 > old and REF.consistency(old, new - 1) != proof:
        _fails(check(new_size=new - 1, new_root=REF.root(new - 1)))
    for other in (old - 1, old + 1):
        if 0 < other < new and REF.consistency(other, new) != proof:
            _fails(check(old_size=other, old_root=REF.root(other)))


def test_random_large_trees() -> None:
    rng = random.Random(11)
    leaves = [ref_leaf_hash(i.to_bytes(4, "big")) for i in range(70_000)]
    ref = Reference(leaves)
    for _ in range(60):
        size = rng.randint(1, len(leaves))
        index = rng.randrange(size)
        old = rng.randint(1, size)
        verify_inclusion(
            leaf=leaves[index],
            index=index,
            size=size,
            proof=ref.inclusion(index, size),
            root=ref.root(size),
        )
        verify_consistency(
            old_size=old,
            new_size=size,
            old_root=ref.root(old),
            new_root=ref.root(size),
            proof=ref.consistency(old, size),
        )
    assert root_of(leaves) == ref.root(len(leaves))


ROOT_9, ROOT_12 = REF.root(9), REF.root(12)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        (
            {"old_size": 12, "new_size": 9, "old_root": ROOT_12, "new_root": ROOT_9, "proof": []},
            "rollback: old size 12 > new size 9",
        ),
        (
            {"old_size": 9, "new_size": 9, "old_root": ROOT_9, "new_root": ROOT_12, "proof": []},
            "split view: same size 9, different roots",
        ),
        (
            {
                "old_size": 9,
                "new_size": 9,
                "old_root": ROOT_9,
                "new_root": ROOT_9,
                "proof": [ROOT_9],
            },
            "consistency proof has 1 hashes, expected 0",
        ),
        (
            {
                "old_size": 0,
                "new_size": 9,
                "old_root": EMPTY_ROOT,
                "new_root": ROOT_9,
                "proof": [ROOT_9],
            },
            "consistency proof has 1 hashes, expected 0",
        ),
        (
            {
                "old_size": -1,
                "new_size": 9,
                "old_root": EMPTY_ROOT,
                "new_root": ROOT_9,
                "proof": [],
            },
            "tree size -1 is negative",
        ),
        (
            {
                "old_size": 9,
                "new_size": 12,
                "old_root": ROOT_9[:31],
                "new_root": ROOT_12,
                "proof": REF.consistency(9, 12),
            },
            "old root hash is 31 bytes, expected 32",
        ),
        (
            {
                "old_size": 9,
                "new_size": 12,
                "old_root": ROOT_9,
                "new_root": ROOT_12 + b"\0",
                "proof": REF.consistency(9, 12),
            },
            "new root hash is 33 bytes, expected 32",
        ),
        (
            {
                "old_size": 9,
                "new_size": 12,
                "old_root": ROOT_9,
                "new_root": ROOT_12,
                "proof": [*REF.consistency(9, 12)[:-1], b"short"],
            },
            "consistency proof hash 3 is 5 bytes, expected 32",
        ),
        (
            {"old_size": 9, "new_size": 12, "old_root": ROOT_9, "new_root": ROOT_12, "proof": []},
            "consistency proof has 0 hashes, expected 4",
        ),
    ],
    ids=[
        "rollback",
        "split-view",
        "equal-sizes-nonempty",
        "from-empty-nonempty",
        "negative",
        "short-old-root",
        "long-new-root",
        "short-proof-hash",
        "empty-proof",
    ],
)
def test_consistency_rejects(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(ProofError) as caught:
        verify_consistency(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == reason


PROOF_5_9 = REF.inclusion(5, 9)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"index": 9, "size": 9}, "leaf index 9 is outside a tree of size 9"),
        ({"index": -1, "size": 9}, "leaf index -1 is outside a tree of size 9"),
        ({"index": 0, "size": 0}, "leaf index 0 is outside a tree of size 0"),
        ({"proof": PROOF_5_9[:3]}, "inclusion proof has 3 hashes, expected 4"),
        ({"proof": [*PROOF_5_9, ROOT_9]}, "inclusion proof has 5 hashes, expected 4"),
        ({"proof": [*PROOF_5_9[:3], b"x" * 64]}, "inclusion proof hash 3 is 64 bytes, expected 32"),
        ({"leaf": b"entry 5"}, "leaf hash is 7 bytes, expected 32"),
        ({"root": b""}, "root hash is 0 bytes, expected 32"),
        (
            {"root": ROOT_12},
            "inclusion proof for leaf 5 in a tree of size 9 does not lead to the root",
        ),
    ],
    ids=[
        "index-at-size",
        "negative-index",
        "empty-tree",
        "truncated",
        "extended",
        "long-proof-hash",
        "entry-not-hash",
        "empty-root",
        "other-root",
    ],
)
def test_inclusion_rejects(kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {
        "leaf": LEAVES[5],
        "index": 5,
        "size": 9,
        "proof": PROOF_5_9,
        "root": ROOT_9,
    }
    args.update(kwargs)
    with pytest.raises(ProofError) as caught:
        verify_inclusion(**args)  # type: ignore[arg-type]
    assert str(caught.value) == reason
