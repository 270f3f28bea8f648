"""The C2SP tlog-tiles resource names, tile widths and entry bundles (re-exported by ``tiles``).

A tile at level ``L``, index ``N`` holds the tree's hashes at height ``8·L`` for positions
``N·256 … N·256+W-1``; it is served at ``tile/<L>/<N>[.p/<W>]``, where ``<N>`` is written in
zero-padded groups of three digits, all but the last prefixed with ``x`` (``x001/x234/067``).
An entry bundle (``tile/entries/<N>[.p/<W>]``) is the level-0 tile's entries, each a 2-byte
big-endian length followed by the entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from trustfleet.audit.merkle import ProofError

__all__ = [
    "MAX_ENTRY_BYTES",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entries_path",
    "level_counts",
    "parse_tile_path",
    "tile_path",
    "tile_width",
    "tiles_for_size",
]

TILE_HEIGHT: Final = 8
"""Tree levels one tile spans."""
TILE_WIDTH: Final = 256
"""Hashes in a full tile (``2 ** TILE_HEIGHT``)."""
MAX_TILE_LEVEL: Final = 63
"""The highest tile level a path may name (tlog-tiles: 0 to 63)."""
MAX_ENTRY_BYTES: Final = 0xFFFF
"""The largest entry a bundle can hold (a 2-byte length)."""
MAX_TILE_INDEX: Final = 1 << 64
"""Tile indexes are below 2**64 (no tree is larger)."""

_LENGTH_BYTES: Final = 2
_PATH: Final = re.compile(
    r"tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/){0,6}[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?"
)


def _index_path(index: int) -> str:
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def _suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ProofError(f"tile width {width} is outside 1..{TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def _check_index(index: int) -> None:
    if not 0 <= index < MAX_TILE_INDEX:
        raise ProofError(f"tile index {index} is outside 0..2**64-1")


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The path of a hash tile, e.g. ``tile/0/x001/234`` or ``tile/1/005.p/7``.

    Args:
        level: The tile's level, 0 to 63.
        index: The tile's index within its level.
        width: The tile's width, 1 to 256 (256: a full tile, no ``.p/`` suffix).

    Returns:
        The path relative to the log's prefix.

    Raises:
        ProofError: A level, index or width out of range.
    """
    if not 0 <= level <= MAX_TILE_LEVEL:
        raise ProofError(f"tile level {level} is outside 0..{MAX_TILE_LEVEL}")
    _check_index(index)
    return f"tile/{level}/{_index_path(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """The path of an entry bundle, e.g. ``tile/entries/x001/234.p/9``.

    Args:
        index: The bundle's index (that of its level-0 tile).
        width: The number of entries, 1 to 256 (256: a full bundle, no ``.p/`` suffix).

    Returns:
        The path relative to the log's prefix.

    Raises:
        ProofError: An index or width out of range.
    """
    _check_index(index)
    return f"tile/entries/{_index_path(index)}{_suffix(width)}"


def parse_tile_path(path: str) -> tuple[int | None, int, int]:
    """Parse a tile or entry bundle path; only the canonical form is accepted.

    Args:
        path: ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``.

    Returns:
        ``(level, index, width)``: level None for an entry bundle, width 256 for a full tile.

    Raises:
        ProofError: The path is not the canonical form of a tile or bundle path (leading
            zeros, missing ``x`` groups, a width of 0 or 256 in ``.p/``, a level out of range).
    """
    match = _PATH.fullmatch(path)
    if match is None:
        raise ProofError(f"{path!r} is not a tile path")
    kind, index_text, width_text = match.groups()
    level = None if kind == "entries" else int(kind)
    index = int(index_text.replace("x", "").replace("/", ""))
    width = int(width_text) if width_text else TILE_WIDTH
    try:
        canonical = entries_path(index, width) if level is None else tile_path(level, index, width)
    except ProofError as exc:
        raise ProofError(f"{path!r} is not a tile path: {exc}") from exc
    if canonical != path:
        raise ProofError(f"{path!r} is not a tile path (canonical form: {canonical!r})")
    return level, index, width


def tiles_for_size(size: int) -> list[tuple[int, int, int]]:
    """Every hash tile a tree of ``size`` publishes, level by level.

    Args:
        size: The tree size.

    Returns:
        ``(level, index, width)`` of each tile, full ones first within a level, then the
        partial one if the level has one.
    """
    found: list[tuple[int, int, int]] = []
    for level, count in enumerate(level_counts(size)):
        full, partial = divmod(count, TILE_WIDTH)
        found.extend((level, index, TILE_WIDTH) for index in range(full))
        if partial:
            found.append((level, full, partial))
    return found


def level_counts(size: int) -> list[int]:
    """The number of hashes at each tile level of a tree of ``size``, level 0 first.

    Args:
        size: The tree size.

    Returns:
        ``size``, ``size >> 8``, … down to the last non-zero one (empty for size 0).
    """
    counts: list[int] = []
    while size > 0:
        counts.append(size)
        size >>= TILE_HEIGHT
    return counts


def tile_width(*, level: int, index: int, size: int) -> int:
    """The width of a tile in a tree of ``size``.

    Args:
        level: The tile's level.
        index: The tile's index within the level.
        size: The tree size.

    Returns:
        256 for a full tile, 1-255 for the partial one, 0 when the tree has no such tile.
    """
    count = size >> (TILE_HEIGHT * level)
    full = count >> TILE_HEIGHT
    if index < full:
        return TILE_WIDTH
    if index == full:
        return count % TILE_WIDTH
    return 0


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Encode up to 256 entries as a tlog-tiles entry bundle.

    Args:
        entries: The entries, each at most 65535 bytes.

    Returns:
        Each entry's 2-byte big-endian length followed by its bytes, concatenated.

    Raises:
        ProofError: More than 256 entries, or an entry longer than 65535 bytes.
    """
    if len(entries) > TILE_WIDTH:
        raise ProofError(f"entry bundle of {len(entries)} entries, at most {TILE_WIDTH}")
    parts: list[bytes] = []
    for position, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_BYTES:
            raise ProofError(
                f"entry {position} is {len(entry)} bytes, an entry bundle holds at most "
                f"{MAX_ENTRY_BYTES}"
            )
        parts.append(len(entry).to_bytes(_LENGTH_BYTES, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_entry_bundle(data: bytes, *, max_entries: int = TILE_WIDTH) -> list[bytes]:
    """Decode an entry bundle strictly.

    Args:
        data: The bundle's bytes.
        max_entries: The most entries to accept (the bundle's expected width).

    Returns:
        The entries, in order.

    Raises:
        ProofError: More than ``max_entries`` entries, or data that ends inside a length
            prefix or an entry.
    """
    entries: list[bytes] = []
    view, offset, end = memoryview(data), 0, len(data)
    while offset < end:
        if len(entries) == max_entries:
            raise ProofError(f"entry bundle has more than {max_entries} entries")
        if end - offset < _LENGTH_BYTES:
            raise ProofError(f"entry bundle ends inside the length of entry {len(entries)}")
        length = int.from_bytes(view[offset : offset + _LENGTH_BYTES], "big")
        offset += _LENGTH_BYTES
        if end - offset < length:
            raise ProofError(
                f"entry bundle's entry {len(entries)} has {length} bytes, only "
                f"{end - offset} remain"
            )
        entries.append(bytes(view[offset : offset + length]))
        offset += length
    return entries
