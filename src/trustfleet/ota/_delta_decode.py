"""Decoder side of the delta format: bounded reads of the old image, one segment at a time.

Everything here runs on the device with input from the network: each length, extent and frame
is checked against the bounds of :mod:`trustfleet.ota._delta_format` before it is used; the old
image is read with ``pread`` inside its length only; one dictionary, one frame and one segment
are alive at a time.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import zstandard

from trustfleet.errors import NotFound, VerificationFailed
from trustfleet.ota._delta_format import (
    EXTENT,
    MAX_DICT_BYTES,
    MAX_EXTENTS,
    MAX_FRAME_BYTES,
    MAX_SEGMENT_BYTES,
    MAX_WINDOW_BYTES,
    SEGMENT,
    Header,
    corrupt,
    frame_length,
)

__all__ = ["Decompressor", "OldImage", "copy_segment", "open_old"]

_HASH_CHUNK = 1 << 20


class OldImage:
    """Bounded reads of the old image by offset (``pread``), never past its end."""

    def __init__(self, fd: int, length: int) -> None:
        self.fd = fd
        self.length = length

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.length:
            raise corrupt(message=f"an extent [{offset}, +{length}) lies outside the old image")
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise _base_changed()
        return data

    def read_extents(self, extents: list[tuple[int, int]]) -> bytearray:
        """The extents, concatenated into one buffer (no intermediate copies)."""
        buffer = bytearray(sum(length for _, length in extents))
        with memoryview(buffer) as view:
            at = 0
            for offset, length in extents:
                if offset < 0 or offset + length > self.length:
                    raise corrupt(
                        message=f"an extent [{offset}, +{length}) lies outside the old image"
                    )
                got = 0
                while got < length:
                    n = os.preadv(self.fd, [view[at + got : at + length]], offset + got)
                    if n <= 0:
                        raise _base_changed()
                    got += n
                at += length
        return buffer

    def sha256(self) -> bytes:
        digest = hashlib.sha256()
        for offset in range(0, self.length, _HASH_CHUNK):
            digest.update(self.read(offset, min(_HASH_CHUNK, self.length - offset)))
        return digest.digest()


def _base_changed() -> VerificationFailed:
    return VerificationFailed(
        "the old image changed while the delta was applied",
        hint="retry the update",
        code="ota.delta.base_changed",
    )


def _base_mismatch() -> VerificationFailed:
    return VerificationFailed(
        "the delta was made for another old image",
        hint="download the full image, or the delta from the installed version",
        code="ota.delta.base_mismatch",
    )


@contextmanager
def open_old(old: Path, *, header: Header) -> Iterator[OldImage]:
    """The old image, checked against the header (length and SHA-256).

    A regular file must have exactly the header's length; a block device (a real slot) may be
    larger, and only its first ``old_length`` bytes are the image.
    """
    try:
        fd = os.open(old, os.O_RDONLY)
    except OSError as exc:
        raise NotFound(
            f"cannot open the old image {old}: {exc.strerror}",
            hint="the active slot's image is needed to apply a delta",
            code="ota.delta.old_missing",
        ) from exc
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        exact = stat.S_ISREG(os.fstat(fd).st_mode)
        if size < header.old_length or (exact and size != header.old_length):
            raise _base_mismatch()
        image = OldImage(fd, header.old_length)
        if image.sha256() != header.old_sha256:
            raise _base_mismatch()
        yield image
    finally:
        os.close(fd)


def _read_exact(stream: BinaryIO, size: int, *, message: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise corrupt(message=message)
    return data


class Decompressor:
    """zstd contexts that refuse frames whose window exceeds the bound."""

    def __init__(self) -> None:
        self._plain = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)

    def for_dictionary(self, dictionary: bytearray) -> zstandard.ZstdDecompressor:
        """A context whose raw-content dictionary is ``dictionary`` (copied by zstandard)."""
        if not dictionary:
            return self._plain
        raw = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        return zstandard.ZstdDecompressor(dict_data=raw, max_window_size=MAX_WINDOW_BYTES)

    @staticmethod
    def decompress(dctx: zstandard.ZstdDecompressor, frame: bytes, *, size: int) -> bytes:
        """The frame's content, which must be exactly ``size`` bytes."""
        params = zstandard.get_frame_parameters(frame)
        if params.content_size != size or params.dict_id != 0 or not params.has_checksum:
            raise corrupt(message="a zstd frame does not declare its segment's size and checksum")
        if params.window_size > MAX_WINDOW_BYTES:
            raise corrupt(message=f"a zstd frame asks for a {params.window_size}-byte window")
        # libzstd refuses (ZstdError) a frame whose output is not its declared content size
        return dctx.decompress(frame, max_output_size=size)


def copy_segment(
    image: OldImage,
    delta: BinaryIO,
    out: BinaryIO,
    digest: hashlib._Hash,
    decompressor: Decompressor,
    *,
    room: int,
) -> int:
    """Rebuild one segment and write it; its bytes are freed before the next one."""
    segment = _apply_segment(image, delta, decompressor, room=room)
    out.write(segment)
    digest.update(segment)
    return len(segment)


def _apply_segment(
    image: OldImage, delta: BinaryIO, decompressor: Decompressor, *, room: int
) -> bytes:
    new_len, extent_count, frame_len = SEGMENT.unpack(
        _read_exact(delta, SEGMENT.size, message="the delta is truncated (in a segment header)")
    )
    if not 0 < new_len <= min(room, MAX_SEGMENT_BYTES):
        raise corrupt(message=f"a segment of {new_len} bytes is out of bounds")
    if extent_count > MAX_EXTENTS or not 0 < frame_len <= MAX_FRAME_BYTES:
        raise corrupt(
            message=f"a segment's {extent_count} extents or {frame_len}-byte frame "
            "exceed the bounds"
        )
    raw = _read_exact(
        delta, extent_count * EXTENT.size, message="the delta is truncated (in the extents)"
    )
    extents = [EXTENT.unpack_from(raw, i * EXTENT.size) for i in range(extent_count)]
    if sum(length for _, length in extents) > MAX_DICT_BYTES:
        raise corrupt(message="a segment's dictionary is larger than the bound")
    dctx = decompressor.for_dictionary(image.read_extents(extents))  # the buffer dies here
    frame = _read_exact(delta, frame_len, message="the delta is truncated (in a zstd frame)")
    if frame_length(frame) != frame_len:
        raise corrupt(message="a zstd frame is followed by garbage")
    try:
        return decompressor.decompress(dctx, frame, size=new_len)
    except zstandard.ZstdError as exc:
        raise corrupt(message=f"a zstd frame does not decompress: {exc}") from exc
