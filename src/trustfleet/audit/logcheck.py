"""Checking a log's entries against its signed tree: which entries changed, went missing, moved.

Pure: the caller reads the entries (the database's events) and the tiles, and has verified the
checkpoint's signature. :func:`check_entries` walks the entries once, in id order, with memory
bounded by the number of entries that do not match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from trustfleet.audit.merkle import ProofError, leaf_hash
from trustfleet.audit.tiles import TILE_WIDTH, ReadTile, verify_tiles

__all__ = ["Finding", "LogCheck", "check_entries"]

_MAX_NAMED: Final = 20  # entries named in one finding's message


@dataclass(frozen=True)
class Finding:
    """One thing wrong with the log.

    Attributes:
        kind: ``tiles``, ``edited``, ``missing``, ``swapped``, ``moved``, ``truncated``.
        message: One line naming what changed.
        entries: The entry ids concerned.
    """

    kind: str
    message: str
    entries: tuple[int, ...] = ()


@dataclass
class LogCheck:
    """The result of :func:`check_entries`.

    Attributes:
        size: The checkpoint's size.
        checked: Entries compared with the tree.
        pending: Entries past the checkpoint (not integrated yet: not an error).
        findings: What is wrong; empty when the log is intact.
    """

    size: int
    checked: int = 0
    pending: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """Whether nothing is wrong."""
        return not self.findings


def _ids(ids: Iterable[int]) -> str:
    listed = sorted(ids)
    text = ", ".join(str(i) for i in listed[:_MAX_NAMED])
    return text + (f" and {len(listed) - _MAX_NAMED} more" if len(listed) > _MAX_NAMED else "")


class _LeafHashes:
    """The logged leaf hashes, read tile by tile from level 0."""

    def __init__(self, read_tile: ReadTile) -> None:
        self._read_tile = read_tile
        self._tile_index = -1
        self._tile = b""

    def __call__(self, index: int) -> bytes:
        tile_index, offset = divmod(index, TILE_WIDTH)
        if tile_index != self._tile_index:
            self._tile, self._tile_index = self._read_tile(0, tile_index), tile_index
        return self._tile[32 * offset : 32 * offset + 32]


def check_entries(
    *, size: int, root: bytes, read_tile: ReadTile, entries: Iterable[tuple[int, bytes]]
) -> LogCheck:
    """Compare entries (``(id, bytes)`` in increasing id order) with a tree of ``size``.

    The tiles are first checked against ``root`` (a signed checkpoint's); then each entry's
    leaf hash against the logged one, so every difference is named by entry id.
    """
    report = LogCheck(size=size)
    try:
        verify_tiles(size=size, root=root, read_tile=read_tile)
    except ProofError as exc:
        report.findings.append(
            Finding("tiles", f"the tree's tiles do not match the checkpoint: {exc}")
        )
        return report
    logged = _LeafHashes(read_tile)
    wrong: dict[int, bytes] = {}  # id -> the leaf hash the database's entry has now
    missing: list[int] = []
    expected = 1
    for entry_id, data in entries:
        if entry_id > size:
            report.pending += 1
            continue
        missing.extend(range(expected, entry_id))
        expected = entry_id + 1
        report.checked += 1
        have = leaf_hash(data)
        if have != logged(entry_id - 1):
            wrong[entry_id] = have
    _missing_findings(report, missing, expected)
    _wrong_findings(report, wrong, logged)
    return report


def _missing_findings(report: LogCheck, missing: list[int], expected: int) -> None:
    if missing:
        report.findings.append(
            Finding(
                "missing", f"entries deleted from the database: {_ids(missing)}", tuple(missing)
            )
        )
    if expected <= report.size:
        tail = tuple(range(expected, report.size + 1))
        report.findings.append(
            Finding(
                "truncated",
                f"log truncated: the checkpoint covers {report.size} entries, the database "
                f"stops at entry {expected - 1}",
                tail[:_MAX_NAMED],
            )
        )


def _wrong_findings(report: LogCheck, wrong: dict[int, bytes], logged: _LeafHashes) -> None:
    if not wrong:
        return
    logged_at = {logged(i - 1): i for i in wrong}  # where each wrong entry's hash was logged
    swapped: list[tuple[int, int]] = []
    moved: list[int] = []
    edited: list[int] = []
    for entry_id, have in sorted(wrong.items()):
        other = logged_at.get(have)
        if other is not None and wrong.get(other) == logged(entry_id - 1):
            if entry_id < other:
                swapped.append((entry_id, other))
        elif other is not None:
            moved.append(entry_id)
        else:
            edited.append(entry_id)
    for a, b in swapped:
        report.findings.append(Finding("swapped", f"entries {a} and {b} swapped", (a, b)))
    if moved:
        report.findings.append(
            Finding("moved", f"entries renumbered or moved: {_ids(moved)}", tuple(moved))
        )
    if edited:
        report.findings.append(
            Finding("edited", f"entries edited in the database: {_ids(edited)}", tuple(edited))
        )
