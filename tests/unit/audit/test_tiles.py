"""A Merkle tree kept only as C2SP tlog-tiles: appends, roots, proofs, checks, against RFC 9162."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable

import pytest
from rfc9162 import Reference, ref_leaf_hash

from trustfleet.audit import EMPTY_ROOT, ProofError
from trustfleet.audit.tiles import (
    ReadTile,
    append_leaves,
    consistency_proof,
    inclusion_proof,
    tiles_for_size,
    tree_root,
    verify_tiles,
)

Store = dict[tuple[int, int], bytes]


def _reader(store: Store, reads: list[tuple[int, int]] | None = None) -> ReadTile:
    def read(level: int, index: int) -> bytes:
        if reads is not None:
            reads.append((level, index))
        return store[(level, index)]

    return read


def _build(leaves: list[bytes], batches: list[int]) -> tuple[Store, list[bytes]]:
    """Append ``leaves`` in batches of the given sizes; the tiles and the root after each."""
    store: Store = {}
    roots, size = [], 0
    for batch in batches:
        update = append_leaves(
            size=size, read_tile=_reader(store), leaf_hashes=leaves[size : size + batch]
        )
        assert update.size == size + batch
        store.update(update.tiles)
        size = update.size
        roots.append(update.root)
    return store, roots


# -- the tree from tiles -------------------------------------------------------------------

SMALL = 70
SMALL_LEAVES = [ref_leaf_hash(b"leaf %d" % i) for i in range(SMALL)]
SMALL_REF = Reference(SMALL_LEAVES)


def test_small_trees_give_every_root_and_proof_of_the_rfc() -> None:
    store, roots = _build(SMALL_LEAVES, [1] * SMALL)
    assert roots == [SMALL_REF.root(size) for size in range(1, SMALL + 1)]
    read = _reader(store)  # tiles of the largest tree: every smaller tree reads their prefixes
    for size in range(SMALL + 1):
        assert tree_root(size=size, read_tile=read) == SMALL_REF.root(size)
        for index in range(size):
            proof = inclusion_proof(index=index, size=size, read_tile=read)
            assert proof == SMALL_REF.inclusion(index, size), (index, size)
        for old in range(size + 1):
            proof = consistency_proof(old_size=old, new_size=size, read_tile=read)
            assert proof == SMALL_REF.consistency(old, size), (old, size)


@pytest.fixture(scope="module")
def big() -> tuple[Store, list[bytes], Reference]:
    """A tree of 70,000 leaves (tiles at three levels) appended in random batches."""
    rng = random.Random(70_000)
    leaves = [ref_leaf_hash(i.to_bytes(4, "big")) for i in range(70_000)]
    batches, left = [], len(leaves)
    while left:
        batches.append(min(left, rng.choice([1, 2, 255, 256, 257, 1000, 4099, 65536])))
        left -= batches[-1]
    ref = Reference(leaves)
    store, roots = _build(leaves, batches)
    sizes = [sum(batches[: n + 1]) for n in range(len(batches))]
    assert roots == [ref.root(size) for size in sizes]
    return store, leaves, ref


def test_tiles_hold_the_spec_hashes(big: tuple[Store, list[bytes], Reference]) -> None:
    store, leaves, ref = big
    assert sorted((*key, len(value) // 32) for key, value in store.items()) == tiles_for_size(
        len(leaves)
    )
    assert all(len(value) % 32 == 0 for value in store.values())
    for (level, index), content in store.items():
        span = 256**level
        for position in range(len(content) // 32):
            first = (index * 256 + position) * span
            want = ref.mth(first, first + span)
            assert content[position * 32 : position * 32 + 32] == want, (level, index)


def test_random_proofs_from_tiles(big: tuple[Store, list[bytes], Reference]) -> None:
    store, leaves, ref = big
    read, rng = _reader(store), random.Random(11)
    sizes = [rng.randint(1, len(leaves)) for _ in range(150)] + [65536, 65537, 256, 257]
    for size in sizes:
        index, old = rng.randrange(size), rng.randint(0, size)
        assert tree_root(size=size, read_tile=read) == ref.root(size)
        assert inclusion_proof(index=index, size=size, read_tile=read) == ref.inclusion(index, size)
        proof = consistency_proof(old_size=old, new_size=size, read_tile=read)
        assert proof == ref.consistency(old, size), (old, size)


def _streaming_root(leaves: list[bytes]) -> bytes:
    """An independent iterative MTH: a stack of perfect subtrees merged as leaves arrive."""
    stack: list[tuple[int, bytes]] = []
    for leaf in leaves:
        height, value = 0, leaf
        while stack and stack[-1][0] == height:
            value = hashlib.sha256(b"\x01" + stack.pop()[1] + value).digest()
            height += 1
        stack.append((height, value))
    value = stack.pop()[1]
    while stack:
        value = hashlib.sha256(b"\x01" + stack.pop()[1] + value).digest()
    return value


def test_a_million_leaves_in_batches() -> None:
    sha256 = hashlib.sha256
    leaves = [sha256(b"\x00" + i.to_bytes(4, "big")).digest() for i in range(1_000_000)]
    rng = random.Random(10**6)
    batches, left = [], len(leaves)
    while left:
        batches.append(min(left, rng.randint(1, 20_000)))
        left -= batches[-1]
    store, roots = _build(leaves, batches)
    assert roots[-1] == _streaming_root(leaves)
    read = _reader(store)
    assert tree_root(size=len(leaves), read_tile=read) == roots[-1]
    assert tree_root(size=batches[0], read_tile=read) == roots[0]
    verify_tiles(size=len(leaves), root=roots[-1], read_tile=read)


# -- what is read --------------------------------------------------------------------------


def _never(level: int, index: int) -> bytes:
    raise AssertionError(f"read tile {level}/{index}")


def test_tile_updates_are_frozen() -> None:
    update = append_leaves(size=0, read_tile=_never, leaf_hashes=SMALL_LEAVES[:1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.size = 2  # type: ignore[misc]


def test_appending_to_an_empty_tree_reads_nothing() -> None:
    update = append_leaves(size=0, read_tile=_never, leaf_hashes=SMALL_LEAVES[:3])
    assert (update.size, update.root) == (3, SMALL_REF.root(3))
    assert update.tiles == {(0, 0): b"".join(SMALL_LEAVES[:3])}
    empty = append_leaves(size=0, read_tile=_never, leaf_hashes=[])
    assert (empty.size, empty.root, empty.tiles) == (0, EMPTY_ROOT, {})
    assert tree_root(size=0, read_tile=_never) == EMPTY_ROOT
    assert consistency_proof(old_size=0, new_size=5, read_tile=_never) == []
    assert consistency_proof(old_size=5, new_size=5, read_tile=_never) == []


def test_append_reads_only_the_right_edge(big: tuple[Store, list[bytes], Reference]) -> None:
    store, leaves, _ = big
    edge = {(level, index) for level, index, width in tiles_for_size(65_793) if width < 256}
    reads: list[tuple[int, int]] = []
    update = append_leaves(size=65_793, read_tile=_reader(store, reads), leaf_hashes=leaves[:600])
    assert set(reads) <= edge
    assert len(reads) == len(set(reads))
    assert set(update.tiles) == {(0, 257), (0, 258), (0, 259), (1, 1)}
    assert update.tiles[(0, 257)][:32] == leaves[65_792]


@pytest.mark.parametrize("size", [65_536, 65_537, 69_999, 70_000])
def test_proofs_read_few_tiles(big: tuple[Store, list[bytes], Reference], size: int) -> None:
    store, _, _ = big
    for index in (0, 1000, size // 2, size - 1):
        reads: list[tuple[int, int]] = []
        inclusion_proof(index=index, size=size, read_tile=_reader(store, reads))
        assert len(reads) == len(set(reads)) <= 6, reads
        reads.clear()
        consistency_proof(old_size=index + 1, new_size=size, read_tile=_reader(store, reads))
        assert len(reads) == len(set(reads)) <= 6, reads


# -- bad tiles, bad arguments --------------------------------------------------------------


def _altered(store: Store, key: tuple[int, int], content: bytes | None) -> ReadTile:
    changed = dict(store)
    if content is None:
        del changed[key]
    else:
        changed[key] = content
    return _reader(changed)


def _flip(content: bytes, at: int) -> bytes:
    return content[:at] + bytes([content[at] ^ 1]) + content[at + 1 :]


def test_verify_tiles_accepts_every_size(big: tuple[Store, list[bytes], Reference]) -> None:
    store, _, ref = big
    for size in (0, 1, 255, 256, 257, 65_535, 65_536, 65_793, 70_000):
        verify_tiles(size=size, root=ref.root(size), read_tile=_reader(store))


EDGE_70000 = "tile/2/000.p/1, tile/1/001.p/17, tile/0/273.p/112"


@pytest.mark.parametrize(
    ("key", "change", "reason"),
    [
        (
            (0, 100),
            lambda c: _flip(c, 5 * 32),
            "tile tile/0/100 does not agree with hash 100 of tile tile/1/000",
        ),
        (
            (0, 272),
            lambda c: _flip(c, 8191),
            "tile tile/0/272 does not agree with hash 16 of tile tile/1/001.p/17",
        ),
        (
            (1, 0),
            lambda c: _flip(c, 0),
            "tile tile/1/000 does not agree with hash 0 of tile tile/2/000.p/1",
        ),
        (
            (0, 273),
            lambda c: _flip(c, 0),
            f"the tiles of the right edge ({EDGE_70000}) do not lead to the root of size 70000",
        ),
        (
            (2, 0),
            lambda c: _flip(c, 31),
            f"the tiles of the right edge ({EDGE_70000}) do not lead to the root of size 70000",
        ),
        ((0, 5), lambda c: None, "tile tile/0/005 is missing"),
        ((0, 5), lambda c: c[:-32], "tile tile/0/005 is 8160 bytes, expected 8192"),
        ((1, 1), lambda c: c[: 16 * 32], "tile tile/1/001.p/17 is 512 bytes, expected 544"),
        ((0, 273), lambda c: c + b"\0", "tile tile/0/273.p/112 is 3585 bytes, expected 3584"),
        ((0, 273), lambda c: c * 3, "tile tile/0/273.p/112 is 10752 bytes, expected 3584"),
    ],
    ids=[
        "level0-full",
        "level0-last-full",
        "level1-full",
        "level0-partial",
        "top",
        "missing",
        "short-full",
        "short-partial",
        "ragged",
        "too-wide",
    ],
)
def test_verify_tiles_names_the_altered_tile(
    big: tuple[Store, list[bytes], Reference],
    key: tuple[int, int],
    change: Callable[[bytes], bytes | None],
    reason: str,
) -> None:
    store, _, ref = big
    read = _altered(store, key, change(store[key]))
    with pytest.raises(ProofError) as caught:
        verify_tiles(size=70_000, root=ref.root(70_000), read_tile=read)
    assert str(caught.value) == reason


def test_verify_tiles_refuses_another_root(big: tuple[Store, list[bytes], Reference]) -> None:
    store, _, ref = big
    with pytest.raises(ProofError, match="do not lead to the root of size 69999"):
        verify_tiles(size=69_999, root=ref.root(70_000), read_tile=_reader(store))
    with pytest.raises(ProofError, match=r"the tiles of the right edge \(\) do not lead"):
        verify_tiles(size=0, root=ref.root(1), read_tile=_never)


def test_wider_stored_tiles_are_read_by_prefix() -> None:
    store, _ = _build(SMALL_LEAVES, [SMALL])
    assert len(store[(0, 0)]) == SMALL * 32
    assert inclusion_proof(index=2, size=5, read_tile=_reader(store)) == SMALL_REF.inclusion(2, 5)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (
            lambda r: inclusion_proof(index=5, size=5, read_tile=r),
            "leaf index 5 is outside a tree of size 5",
        ),
        (
            lambda r: inclusion_proof(index=-1, size=5, read_tile=r),
            "leaf index -1 is outside a tree of size 5",
        ),
        (
            lambda r: consistency_proof(old_size=6, new_size=5, read_tile=r),
            "rollback: old size 6 > new size 5",
        ),
        (
            lambda r: consistency_proof(old_size=-1, new_size=5, read_tile=r),
            "tree size -1 is negative",
        ),
        (lambda r: tree_root(size=-1, read_tile=r), "tree size -1 is negative"),
        (lambda r: verify_tiles(size=-1, root=EMPTY_ROOT, read_tile=r), "tree size -1 is negative"),
        (
            lambda r: append_leaves(size=-1, read_tile=r, leaf_hashes=SMALL_LEAVES[:1]),
            "tree size -1 is negative",
        ),
        (
            lambda r: append_leaves(size=0, read_tile=r, leaf_hashes=[b"\0" * 32, b"entry"]),
            "leaf hash 1 is 5 bytes, expected 32",
        ),
        (
            lambda r: tree_root(size=71, read_tile=r),
            "tile tile/0/000.p/71 is 2240 bytes, expected 2272",
        ),
    ],
    ids=[
        "index-at-size",
        "index-negative",
        "rollback",
        "negative-old",
        "negative-root",
        "negative-verify",
        "negative-append",
        "leaf-not-hash",
        "beyond-stored",
    ],
)
def test_bad_arguments_are_refused(call: Callable[[ReadTile], object], reason: str) -> None:
    store, _ = _build(SMALL_LEAVES, [SMALL])
    with pytest.raises(ProofError) as caught:
        call(_reader(store))
    assert str(caught.value) == reason
