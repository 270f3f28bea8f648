"""Encoder side: which parts of the old image each segment of the new image should see.

zstd finds the actual matches; this module only chooses, per segment of the new image, a small
set of old-image extents (its dictionary) that contains what the segment was derived from, even
when files moved far (a re-laid-out image). It indexes 32-byte blocks of the old image at every
``_STRIDE`` bytes, scans the new image for them (every offset where nothing matches, so a match
at any alignment is found within ``_STRIDE`` bytes), extends each hit forward, and turns the
hits that fall into a segment into merged, padded old-image ranges, capped at the dictionary
bound, most-used first.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Match", "find_matches", "segment_extents"]

_BLOCK = 32
_STRIDE = 128
_STEPS = (4096, 256, 16, 1)
_MERGE_GAP = 16 * 1024
_MARGIN = 2 * 1024


@dataclass(frozen=True)
class Match:
    """``length`` bytes of the new image at ``new_pos`` equal the old image at ``old_pos``."""

    new_pos: int
    old_pos: int
    length: int


def _index(old: bytes) -> dict[bytes, int]:
    index: dict[bytes, int] = {}
    for pos in range(0, len(old) - _BLOCK + 1, _STRIDE):
        index.setdefault(old[pos : pos + _BLOCK], pos)
    return index


def _extend(old: bytes, new: bytes, new_pos: int, old_pos: int) -> int:
    """How far the match at (new_pos, old_pos) goes forward."""
    length = 0
    for step in _STEPS:
        while (
            new_pos + length + step <= len(new)
            and old_pos + length + step <= len(old)
            and new[new_pos + length : new_pos + length + step]
            == old[old_pos + length : old_pos + length + step]
        ):
            length += step
    return length


def find_matches(old: bytes, new: bytes) -> list[Match]:
    """Runs of the new image found in the old one, in new-image order, not overlapping."""
    index = _index(old)
    matches: list[Match] = []
    pos = 0
    limit = len(new) - _BLOCK
    get = index.get
    while pos <= limit:
        old_pos = get(new[pos : pos + _BLOCK])
        if old_pos is None:
            pos += 1
            continue
        length = _extend(old, new, pos, old_pos)
        matches.append(Match(pos, old_pos, length))
        pos += length
    return matches


def _merge(ranges: list[tuple[int, int, int]], *, gap: int) -> list[tuple[int, int, int]]:
    """Merge (start, end, weight) ranges closer than ``gap``; weights add up."""
    merged: list[tuple[int, int, int]] = []
    for start, end, weight in sorted(ranges):
        if merged and start <= merged[-1][1] + gap:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2] + weight)
        else:
            merged.append((start, end, weight))
    return merged


def segment_extents(
    matches: list[Match], *, start: int, end: int, old_length: int, max_bytes: int
) -> list[tuple[int, int]]:
    """The old-image extents (offset, length) for the new-image segment [start, end)."""
    ranges = []
    for m in matches:
        lo, hi = max(start, m.new_pos), min(end, m.new_pos + m.length)
        if lo < hi:
            old_lo = m.old_pos + (lo - m.new_pos)
            ranges.append((old_lo, old_lo + (hi - lo), hi - lo))
    padded = [
        (max(0, a - _MARGIN), min(old_length, b + _MARGIN), w)
        for a, b, w in _merge(ranges, gap=_MERGE_GAP)
    ]
    chosen: list[tuple[int, int, int]] = []
    total = 0
    for a, b, w in sorted(_merge(padded, gap=0), key=lambda r: -r[2] / (r[1] - r[0])):
        take = min(b - a, max_bytes - total)
        if take <= 0:
            break
        chosen.append((a, a + take, w))
        total += take
    return [(a, b - a) for a, b, _ in sorted(chosen)]
