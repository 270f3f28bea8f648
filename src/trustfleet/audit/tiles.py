"""The Merkle tree stored as C2SP tlog-tiles: extend it, and derive roots and proofs from tiles.

Every function here works from the tiles alone, through a :data:`ReadTile` callable, and reads
only what it needs: extending a tree reads the right-edge tile of each level it changes, a root
or a proof reads O(log N) tiles. A tile holds the hashes of perfect subtrees at a height that is
a multiple of 8; the hashes in between are recomputed from them, and a hash of a range that is
not a perfect subtree (the tree's right edge) is folded from the perfect subtrees it splits
into, exactly as RFC 9162 §2.1.1 splits it.

A tile's stored content may be wider than the tree asked about needs (the tile of a newer,
larger tree): only its prefix is read. A tile that ``read_tile`` cannot find (``KeyError``) or
that is too short is a :class:`ProofError` naming the tile's path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from trustfleet.audit._tileformat import (
    TILE_HEIGHT,
    TILE_WIDTH,
    decode_entry_bundle,
    encode_entry_bundle,
    entries_path,
    level_counts,
    parse_tile_path,
    tile_path,
    tile_width,
    tiles_for_size,
)
from trustfleet.audit.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, node_hash, root_of

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "ReadTile",
    "TileUpdate",
    "append_leaves",
    "consistency_proof",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entries_path",
    "inclusion_proof",
    "parse_tile_path",
    "tile_path",
    "tile_width",
    "tiles_for_size",
    "tree_root",
    "verify_tiles",
]

ReadTile = Callable[[int, int], bytes]
"""``(level, index) -> content`` of a stored hash tile; KeyError (or ProofError) if absent."""

_FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE


@dataclass(frozen=True)
class TileUpdate:
    """What :func:`append_leaves` changed.

    Attributes:
        size: The new tree size.
        root: The new root hash.
        tiles: ``(level, index) ->`` the new full content of every tile that changed.
    """

    size: int
    root: bytes
    tiles: dict[tuple[int, int], bytes]


class _TileHashes:
    """The hashes of the tree of ``size``, read from its tiles (each tile read at most once)."""

    def __init__(self, read_tile: ReadTile, size: int) -> None:
        self._read = read_tile
        self._size = size
        self._tiles: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, index: int) -> bytes:
        """The hashes of one tile the tree has (its prefix the tree needs, 32·width bytes)."""
        key = (level, index)
        content = self._tiles.get(key)
        if content is None:
            width = tile_width(level=level, index=index, size=self._size)
            content = self._tiles[key] = _read_tile(self._read, level, index, width)
        return content

    def perfect(self, height: int, index: int) -> bytes:
        """The hash of the perfect subtree of leaves ``[index·2^height, (index+1)·2^height)``."""
        level, below = divmod(height, TILE_HEIGHT)
        first = index << below
        content = self.tile(level, first >> TILE_HEIGHT)
        offset = (first % TILE_WIDTH) * HASH_SIZE
        if not below:
            return content[offset : offset + HASH_SIZE]
        return _fold(content[offset : offset + (HASH_SIZE << below)])

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH of the leaves ``[start, end)``, a range the RFC's recursion splits the tree into."""
        parts = [self.perfect(height, index) for height, index in _perfect_subtrees(start, end)]
        result = parts.pop()
        for part in reversed(parts):
            result = node_hash(part, result)
        return result


def _read_tile(read_tile: ReadTile, level: int, index: int, width: int) -> bytes:
    """The first ``width`` hashes of a stored tile."""
    path = tile_path(level, index, width)
    try:
        stored = read_tile(level, index)
    except KeyError as exc:
        raise ProofError(f"tile {path} is missing") from exc
    needed = width * HASH_SIZE
    if len(stored) < needed or len(stored) > _FULL_TILE_BYTES or len(stored) % HASH_SIZE:
        raise ProofError(f"tile {path} is {len(stored)} bytes, expected {needed}")
    return bytes(stored[:needed])


def _fold(hashes: bytes) -> bytes:
    """MTH of concatenated hashes."""
    return root_of([hashes[at : at + HASH_SIZE] for at in range(0, len(hashes), HASH_SIZE)])


def _perfect_subtrees(start: int, end: int) -> Iterator[tuple[int, int]]:
    """``(height, index)`` of the perfect subtrees ``[start, end)`` splits into, left to right.

    ``start`` is a multiple of a power of two at least ``end - start`` (as in every range the
    RFC's recursion makes), so the subtrees follow the binary digits of ``end - start``.
    """
    while start < end:
        height = (end - start).bit_length() - 1
        yield height, start >> height
        start += 1 << height


def _split(count: int) -> int:
    """The largest power of two smaller than ``count`` (``count > 1``)."""
    return 1 << ((count - 1).bit_length() - 1)


def _check_size(size: int) -> None:
    if size < 0:
        raise ProofError(f"tree size {size} is negative")


def tree_root(*, size: int, read_tile: ReadTile) -> bytes:
    """The root hash of the tree of ``size``, from its tiles.

    Args:
        size: The tree size.
        read_tile: Reads a stored tile.

    Returns:
        The root hash (:data:`~trustfleet.audit.merkle.EMPTY_ROOT` for size 0, no tile read).

    Raises:
        ProofError: A tile the root needs is missing or too short.
    """
    _check_size(size)
    if size == 0:
        return EMPTY_ROOT
    return _TileHashes(read_tile, size).range_hash(0, size)


def inclusion_proof(*, index: int, size: int, read_tile: ReadTile) -> list[bytes]:
    """The inclusion proof (RFC 9162 §2.1.3.1 PATH) of leaf ``index`` in the tree of ``size``.

    Args:
        index: The leaf's index.
        size: The tree size.
        read_tile: Reads a stored tile.

    Returns:
        The proof's hashes, bottom up.

    Raises:
        ProofError: The index is outside the tree, or a tile is missing or too short.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    siblings: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            siblings.append((middle, end))
            end = middle
        else:
            siblings.append((start, middle))
            start = middle
    hashes = _TileHashes(read_tile, size)
    return [hashes.range_hash(*pair) for pair in reversed(siblings)]


def consistency_proof(*, old_size: int, new_size: int, read_tile: ReadTile) -> list[bytes]:
    """The consistency proof (RFC 9162 §2.1.4.1 PROOF) from ``old_size`` to ``new_size``.

    Args:
        old_size: The earlier tree's size.
        new_size: The later tree's size.
        read_tile: Reads a stored tile (of a tree at least ``new_size`` large).

    Returns:
        The proof's hashes; empty when ``old_size`` is 0 or equals ``new_size``.

    Raises:
        ProofError: ``old_size > new_size`` (a rollback), or a tile is missing or too short.
    """
    _check_size(old_size)
    if old_size > new_size:
        raise ProofError(f"rollback: old size {old_size} > new size {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    start, end, remaining, whole = 0, new_size, old_size, True
    while remaining != end - start:
        middle = start + _split(end - start)
        if remaining <= middle - start:
            ranges.append((middle, end))
            end = middle
        else:
            ranges.append((start, middle))
            remaining -= middle - start
            start, whole = middle, False
    if not whole:
        ranges.append((start, end))
    hashes = _TileHashes(read_tile, new_size)
    return [hashes.range_hash(*pair) for pair in reversed(ranges)]


def append_leaves(*, size: int, read_tile: ReadTile, leaf_hashes: Sequence[bytes]) -> TileUpdate:
    """Extend the tree of ``size`` by ``leaf_hashes``: the new tiles and the new root.

    Each level's right-edge tile is read once (when it is partial and the level changes); a
    batch of ``k`` leaves costs about ``2·k`` hashes plus the new root's.

    Args:
        size: The current tree size (0: ``read_tile`` is never called).
        read_tile: Reads a stored tile of the current tree.
        leaf_hashes: The new leaves' hashes, in order.

    Returns:
        The new size and root, and the new content of every tile that changed.

    Raises:
        ProofError: A leaf hash is not 32 bytes, or a tile is missing or too short.
    """
    _check_size(size)
    for position, value in enumerate(leaf_hashes):
        if len(value) != HASH_SIZE:
            raise ProofError(f"leaf hash {position} is {len(value)} bytes, expected {HASH_SIZE}")
    old = _TileHashes(read_tile, size)
    tiles: dict[tuple[int, int], bytes] = {}
    added, level, count = b"".join(leaf_hashes), 0, size
    while added:
        first, kept = divmod(count, TILE_WIDTH)
        edge = old.tile(level, first) if kept else b""
        added = _cut_tiles(edge + added, level=level, first=first, into=tiles)
        level, count = level + 1, count >> TILE_HEIGHT
    new_size = size + len(leaf_hashes)

    def read_new(tile_level: int, index: int) -> bytes:
        content = tiles.get((tile_level, index))
        return read_tile(tile_level, index) if content is None else content

    return TileUpdate(new_size, tree_root(size=new_size, read_tile=read_new), tiles)


def _cut_tiles(
    hashes: bytes, *, level: int, first: int, into: dict[tuple[int, int], bytes]
) -> bytes:
    """Store ``hashes`` as tiles ``first``, ``first+1``, … of ``level``; the full ones' MTHs."""
    above: list[bytes] = []
    for number, offset in enumerate(range(0, len(hashes), _FULL_TILE_BYTES)):
        content = hashes[offset : offset + _FULL_TILE_BYTES]
        into[(level, first + number)] = content
        if len(content) == _FULL_TILE_BYTES:
            above.append(_fold(content))
    return b"".join(above)


def verify_tiles(*, size: int, root: bytes, read_tile: ReadTile) -> None:
    """Check every hash tile of the tree of ``size`` against ``root``, top down.

    The right-edge tiles (the partial tile of each level) must give ``root``; then each full
    tile must hash to its entry in the tile above, which is already checked, so the first
    mismatch names the tile that was altered.

    Args:
        size: The tree size.
        root: The tree's root hash (from a verified checkpoint).
        read_tile: Reads a stored tile.

    Raises:
        ProofError: Naming the first tile that does not agree (or the right-edge tiles, when
            they do not give ``root``), or a tile that is missing or too short.
    """
    if tree_root(size=size, read_tile=read_tile) != root:  # checks the size
        edge = [tile_path(level, index, width) for level, index, width in _edge_tiles(size)]
        raise ProofError(
            f"the tiles of the right edge ({', '.join(edge)}) do not lead to the root of size "
            f"{size}"
        )
    for level in reversed(range(1, len(level_counts(size)))):
        _verify_level(level, size=size, read_tile=read_tile)


def _verify_level(level: int, *, size: int, read_tile: ReadTile) -> None:
    """Each hash of ``level`` is the MTH of the full tile below it."""
    count = size >> (TILE_HEIGHT * level)
    for index in range(-(-count // TILE_WIDTH)):
        width = tile_width(level=level, index=index, size=size)
        content = _read_tile(read_tile, level, index, width)
        for position in range(width):
            below = index * TILE_WIDTH + position
            expected = content[position * HASH_SIZE : (position + 1) * HASH_SIZE]
            if _fold(_read_tile(read_tile, level - 1, below, TILE_WIDTH)) != expected:
                raise ProofError(
                    f"tile {tile_path(level - 1, below)} does not agree with hash {position} "
                    f"of tile {tile_path(level, index, width)}"
                )


def _edge_tiles(size: int) -> list[tuple[int, int, int]]:
    """The partial tiles of a tree of ``size``, top level first."""
    found: list[tuple[int, int, int]] = []
    for level, count in enumerate(level_counts(size)):
        index, width = divmod(count, TILE_WIDTH)
        if width:
            found.insert(0, (level, index, width))
    return found
