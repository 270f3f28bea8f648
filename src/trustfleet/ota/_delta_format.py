"""The TrustFleet delta format, version 1: layout, bounds, and the checks a decoder makes.

::

    header   "TFDELTA\\0"  u16 format (1)  u16 flags (0)  u64 old_length  u64 new_length
             32 bytes old SHA-256  32 bytes new SHA-256  u32 segment_count
    segment  u32 new_len  u16 extent_count  u32 frame_len
             extent_count x (u64 old_offset, u32 length)
             frame_len bytes: one zstd frame (content size and checksum present) whose
             raw-content dictionary is the concatenation of the extents read from the old image
    (end of file)

All integers are little-endian. A segment rebuilds ``new_len`` bytes of the new image; the
segments are in order and their lengths add up to ``new_length``. The bounds below are what
keeps the decoder's memory fixed: one dictionary (at most :data:`MAX_DICT_BYTES`), one frame
(at most :data:`MAX_FRAME_BYTES`) and one output segment (at most :data:`MAX_SEGMENT_BYTES`)
at a time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import zstandard

from trustfleet.errors import VerificationFailed

__all__ = [
    "EXTENT",
    "FORMAT_VERSION",
    "HEADER",
    "MAGIC",
    "MAX_DICT_BYTES",
    "MAX_EXTENTS",
    "MAX_FRAME_BYTES",
    "MAX_SEGMENT_BYTES",
    "MAX_WINDOW_BYTES",
    "SEGMENT",
    "Header",
    "corrupt",
    "frame_length",
]

MAGIC = b"TFDELTA\x00"
FORMAT_VERSION = 1
MAX_SEGMENT_BYTES = 2 << 20
"""Largest piece of the new image one segment rebuilds (2 MiB)."""
MAX_DICT_BYTES = 6 << 20
"""Largest dictionary (old-image extents) of one segment (6 MiB)."""
MAX_EXTENTS = 4096
"""Most old-image extents one segment may name."""
MAX_FRAME_BYTES = MAX_SEGMENT_BYTES + MAX_SEGMENT_BYTES // 128 + 4096
"""Largest compressed frame (zstd's worst-case bound of one segment, rounded up)."""
MAX_WINDOW_BYTES = 8 << 20
"""Largest zstd window a frame may declare (dictionary + segment fit in it)."""

HEADER = struct.Struct("<8sHHQQ32s32sI")
SEGMENT = struct.Struct("<IHI")
EXTENT = struct.Struct("<QI")

_BLOCK_HEADER = 3
_RLE_BLOCK = 1
_RESERVED_BLOCK = 3


@dataclass(frozen=True)
class Header:
    """The parsed fixed header of a delta."""

    old_length: int
    new_length: int
    old_sha256: bytes
    new_sha256: bytes
    segment_count: int

    def pack(self) -> bytes:
        """The header's bytes."""
        return HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            0,
            self.old_length,
            self.new_length,
            self.old_sha256,
            self.new_sha256,
            self.segment_count,
        )

    @classmethod
    def unpack(cls, raw: bytes) -> Header:
        """Parse and check a header.

        Raises:
            VerificationFailed: Truncated, wrong magic, unknown format version or flags
                (code ``ota.delta.corrupt``).
        """
        if len(raw) != HEADER.size:
            raise corrupt(message="the delta is shorter than its header")
        magic, version, flags, old_len, new_len, old_sha, new_sha, count = HEADER.unpack(raw)
        if magic != MAGIC:
            raise corrupt(message="the file is not a TrustFleet delta (bad magic)")
        if version != FORMAT_VERSION or flags != 0:
            raise corrupt(message=f"unsupported delta format version {version} (flags {flags:#x})")
        return cls(old_len, new_len, old_sha, new_sha, count)

    def check_segment_count(self) -> None:
        """Refuse a segment count the new length cannot have (each segment: 1 byte to the bound).

        Raises:
            VerificationFailed: It cannot (code ``ota.delta.corrupt``).
        """
        count, length = self.segment_count, self.new_length
        if count > length or count < -(-length // MAX_SEGMENT_BYTES):
            raise corrupt(message=f"{count} segments cannot rebuild {length} bytes")


def corrupt(message: str) -> VerificationFailed:
    """The one error of a malformed, truncated or hostile delta (``message`` is text only)."""
    return VerificationFailed(
        message,
        hint="the delta is damaged or forged; download the full image instead",
        code="ota.delta.corrupt",
    )


def frame_length(frame: bytes) -> int:
    """The exact length of the zstd frame at the start of ``frame`` (walking its blocks).

    Raises:
        VerificationFailed: The frame header or a block header is malformed or truncated.
    """
    try:
        params = zstandard.get_frame_parameters(frame)
        pos = zstandard.frame_header_size(frame)
    except zstandard.ZstdError as exc:
        raise corrupt(message=f"bad zstd frame header: {exc}") from exc
    while True:
        # a block header cut short still moves pos past the end: refused below
        value = int.from_bytes(frame[pos : pos + _BLOCK_HEADER], "little")
        last, kind, size = value & 1, (value >> 1) & 3, value >> 3
        if kind == _RESERVED_BLOCK:
            raise corrupt(message="a zstd frame has a reserved block type")
        pos += _BLOCK_HEADER + (1 if kind == _RLE_BLOCK else size)
        if pos > len(frame):
            raise corrupt(message="a zstd frame ends inside a block")
        if last:
            break
    return pos + (4 if params.has_checksum else 0)
