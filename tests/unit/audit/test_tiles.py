"""C2SP tlog-tiles: paths, entry bundles, and a tree kept only as tiles, against RFC 9162."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rfc9162 import Reference, ref_leaf_hash

from trustfleet.audit import EMPTY_ROOT, ProofError
from trustfleet.audit.tiles import (
    ReadTile,
    append_leaves,
    consistency_proof,
    decode_entry_bundle,
    encode_entry_bundle,
    entries_path,
    inclusion_proof,
    parse_tile_path,
    tile_path,
    tile_width,
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


# -- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 0, 256, "tile/0/000"),
        (0, 1234, 256, "tile/0/x001/234"),
        (1, 5, 7, "tile/1/005.p/7"),
        (2, 1234067, 255, "tile/2/x001/x234/067.p/255"),
        (63, 999, 1, "tile/63/999.p/1"),
        (None, 1234, 9, "tile/entries/x001/234.p/9"),
        (None, 1000, 256, "tile/entries/x001/000"),
        (0, 2**64 - 1, 256, "tile/0/x018/x446/x744/x073/x709/x551/615"),
    ],
)
def test_tile_paths_round_trip(level: int | None, index: int, width: int, path: str) -> None:
    made = entries_path(index, width) if level is None else tile_path(level, index, width)
    assert made == path
    assert parse_tile_path(path) == (level, index, width)


@given(
    level=st.one_of(st.none(), st.integers(0, 63)),
    index=st.integers(0, 2**64 - 1),
    width=st.integers(1, 256),
)
def test_every_tile_path_round_trips(level: int | None, index: int, width: int) -> None:
    path = entries_path(index, width) if level is None else tile_path(level, index, width)
    assert parse_tile_path(path) == (level, index, width)


@pytest.mark.parametrize(
    "path",
    [
        "tile/00/000",
        "tile/01/000",
        "tile/0/x000/001",
        "tile/0/0001",
        "tile/0/01",
        "tile/0/001/234",
        "tile/0/x001",
        "tile/0/x001/x234",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/64/000",
        "tile/-1/000",
        "tile/entries/000.p/0",
        "tile/entries/x000/000",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/entries/x018/x446/x744/x073/x709/x551/616",
        "tiles/0/000",
        "tile/0/000/",
        "/tile/0/000",
        "tile/0/000\n",
        "tile/0/\u0660\u0660\u0660",
        "tile/0",
        "",
    ],
)
def test_malformed_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(ProofError, match="is not a tile path"):
        parse_tile_path(path)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: tile_path(-1, 0), "tile level -1 is outside 0..63"),
        (lambda: tile_path(64, 0), "tile level 64 is outside 0..63"),
        (lambda: tile_path(0, -1), "tile index -1 is outside 0..2**64-1"),
        (lambda: tile_path(0, 2**64), f"tile index {2**64} is outside 0..2**64-1"),
        (lambda: tile_path(0, 0, 0), "tile width 0 is outside 1..256"),
        (lambda: entries_path(0, 257), "tile width 257 is outside 1..256"),
        (lambda: entries_path(-1), "tile index -1 is outside 0..2**64-1"),
    ],
    ids=["level-neg", "level-64", "index-neg", "index-2-64", "width-0", "width-257", "entries-neg"],
)
def test_tile_path_refuses_out_of_range(call: Callable[[], str], reason: str) -> None:
    with pytest.raises(ProofError) as caught:
        call()
    assert str(caught.value) == reason


def test_tiles_for_size_follows_the_spec_examples() -> None:
    assert tiles_for_size(0) == []
    assert tiles_for_size(256) == [(0, 0, 256), (1, 0, 1)]
    found = tiles_for_size(70_000)
    assert found[:273] == [(0, index, 256) for index in range(273)]
    assert found[273:] == [(0, 273, 112), (1, 0, 256), (1, 1, 17), (2, 0, 1)]
    for size in (1, 255, 256, 257, 65535, 65536, 70_000):
        published = {(level, index): width for level, index, width in tiles_for_size(size)}
        for level in range(4):
            for index in range(300):
                width = tile_width(level=level, index=index, size=size)
                assert width == published.get((level, index), 0), (size, level, index)


# -- entry bundles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [[], [b""], [b"a", b"", b"bc"], [b"x" * 0xFFFF], [bytes([n]) for n in range(256)]],
    ids=["none", "one-empty", "mixed", "largest-entry", "full-bundle"],
)
def test_entry_bundles_round_trip(entries: list[bytes]) -> None:
    data = encode_entry_bundle(entries)
    assert len(data) == sum(2 + len(entry) for entry in entries)
    assert decode_entry_bundle(data) == entries


def test_entry_bundle_layout() -> None:
    assert encode_entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"


@pytest.mark.parametrize(
    ("data", "max_entries", "reason"),
    [
        (b"\x00", 256, "entry bundle ends inside the length of entry 0"),
        (b"\x00\x01a\x00", 256, "entry bundle ends inside the length of entry 1"),
        (b"\x00\x05abc", 256, "entry bundle's entry 0 has 5 bytes, only 3 remain"),
        (b"\x00\x01a\x00\x02b", 256, "entry bundle's entry 1 has 2 bytes, only 1 remain"),
        (b"\x00\x00" * 257, 256, "entry bundle has more than 256 entries"),
        (b"\x00\x01a\x00\x01b", 1, "entry bundle has more than 1 entries"),
    ],
    ids=["short-length", "trailing-byte", "short-entry", "short-last", "too-many", "over-max"],
)
def test_malformed_entry_bundles_are_refused(data: bytes, max_entries: int, reason: str) -> None:
    with pytest.raises(ProofError) as caught:
        decode_entry_bundle(data, max_entries=max_entries)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([b"ok", b"x" * 0x10000], "entry 1 is 65536 bytes, an entry bundle holds at most 65535"),
        ([b""] * 257, "entry bundle of 257 entries, at most 256"),
    ],
    ids=["entry-too-long", "too-many"],
)
def test_entry_bundle_encoding_refuses(entries: list[bytes], reason: str) -> None:
    with pytest.raises(ProofError) as caught:
        encode_entry_bundle(entries)
    assert str(caught.value) == reason


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_entry_bundle_round_trip_property(entries: list[bytes]) -> None:
    assert decode_entry_bundle(encode_entry_bundle(entries)) == entries


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
