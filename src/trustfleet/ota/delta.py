"""Delta updates: rebuild a new firmware image from the old one with bounded device memory.

The new image is cut into segments of at most 2 MiB. Each segment is one zstd frame compressed
with a raw-content dictionary made of the old-image extents the encoder found it to be derived
from (``zstd --patch-from`` semantics, but per segment, so the device holds one dictionary of at
most 6 MiB instead of the whole old image). The format and its bounds are in
:mod:`trustfleet.ota._delta_format`; the choice is argued, with measurements, in
``docs/adr/0005-delta-encoding.md``.

The server calls :func:`make_delta` when it publishes a release; the device calls
:func:`apply_delta` to write the new image into its inactive slot. The applier checks every
length, extent and frame before using it, never writes more than it was allowed, reads the old
image only inside its bounds (``pread``, no ``mmap``), and verifies the SHA-256 of the old image
before and of the output after; the caller still verifies the output against the TUF-signed
manifest and must discard it if :func:`apply_delta` raises.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from trustfleet.errors import InvalidInput, NotFound, Unavailable, VerificationFailed
from trustfleet.ota._delta_decode import Decompressor, copy_segment, open_old
from trustfleet.ota._delta_format import (
    EXTENT,
    HEADER,
    MAX_DICT_BYTES,
    MAX_EXTENTS,
    MAX_FRAME_BYTES,
    MAX_SEGMENT_BYTES,
    SEGMENT,
    Header,
    corrupt,
)
from trustfleet.ota._delta_match import Match, find_matches, segment_extents

__all__ = [
    "DEFAULT_LEVEL",
    "MAX_DELTA_MEMORY_BYTES",
    "MAX_ENCODE_IMAGE_BYTES",
    "DeltaInfo",
    "apply_delta",
    "make_delta",
]

logger = logging.getLogger(__name__)

MAX_DELTA_MEMORY_BYTES = 2 * MAX_DICT_BYTES + MAX_FRAME_BYTES + 2 * MAX_SEGMENT_BYTES + (1 << 20)
"""Bound on the decoder's working memory (dictionary and zstd's copy of it, one frame, one
output segment and its copy, zstd's context), besides the Python interpreter itself."""
MAX_ENCODE_IMAGE_BYTES = 1 << 30
"""Largest old or new image :func:`make_delta` reads into memory (1 GiB)."""
DEFAULT_LEVEL = 19
"""zstd level of the segments (see ADR 0005 for the measured trade-off)."""


@dataclass(frozen=True)
class DeltaInfo:
    """A delta that :func:`make_delta` wrote."""

    length: int
    sha256: str
    old_sha256: str
    new_sha256: str
    encoder: str


def _check_parameters(*, level: int, segment_bytes: int) -> None:
    if not 1 <= level <= zstandard.MAX_COMPRESSION_LEVEL or not (
        4096 <= segment_bytes <= MAX_SEGMENT_BYTES
    ):
        raise InvalidInput(
            f"bad delta parameters (level {level}, segment {segment_bytes} bytes)",
            hint=f"use level 1-22 and segments of 4096-{MAX_SEGMENT_BYTES} bytes",
            code="ota.delta.parameters",
        )


def _write_atomically(out: Path, chunks: Iterator[bytes]) -> tuple[int, str]:
    """Write the chunks to ``out`` through a temporary name; the length and SHA-256."""
    digest = hashlib.sha256()
    tmp = out.with_name(f".{out.name}.part")
    try:
        with tmp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
            length = fh.tell()
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Unavailable(
            f"cannot write the delta {out}: {exc.strerror}",
            hint="check the directory and the free space",
            code="ota.delta.write",
        ) from exc
    return length, digest.hexdigest()


def _read_image(path: Path, what: str) -> bytes:
    try:
        return _read_bounded(path, what)
    except OSError as exc:
        raise NotFound(
            f"cannot read the {what} image {path}: {exc.strerror}",
            hint="give the path of an existing image file",
            code="ota.delta.image_missing",
        ) from exc


def _read_bounded(path: Path, what: str) -> bytes:
    size = path.stat().st_size
    if size > MAX_ENCODE_IMAGE_BYTES:
        raise InvalidInput(
            f"the {what} image is {size} bytes, more than {MAX_ENCODE_IMAGE_BYTES}",
            hint="delta updates are made for images up to 1 GiB",
            code="ota.delta.image_too_large",
        )
    return path.read_bytes()


def _compress_segment(segment: bytes, dictionary: bytes, *, level: int) -> bytes:
    window_log = max(10, math.ceil(math.log2(len(dictionary) + len(segment) + 1)))
    params = zstandard.ZstdCompressionParameters.from_level(
        level, window_log=window_log, write_checksum=True, write_content_size=True
    )
    if dictionary:
        raw = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        compressor = zstandard.ZstdCompressor(dict_data=raw, compression_params=params)
    else:
        compressor = zstandard.ZstdCompressor(compression_params=params)
    return compressor.compress(segment)


def make_delta(
    old: Path,
    new: Path,
    out: Path,
    *,
    level: int = DEFAULT_LEVEL,
    segment_bytes: int = MAX_SEGMENT_BYTES,
) -> DeltaInfo:
    """Write a delta that rebuilds ``new`` from ``old``.

    Args:
        old: The image the device has (the one installed in its active slot).
        new: The image to deliver.
        out: Where to write the delta (replaced atomically).
        level: zstd compression level (1-22).
        segment_bytes: New-image bytes per segment (at most ``MAX_SEGMENT_BYTES``).

    Returns:
        The delta's length and SHA-256 and the SHA-256 of both images.

    Raises:
        InvalidInput: An image is larger than ``MAX_ENCODE_IMAGE_BYTES`` or a parameter is out
            of range.
        NotFound: An image cannot be read.
        Unavailable: The delta cannot be written.
    """
    _check_parameters(level=level, segment_bytes=segment_bytes)
    old_data, new_data = _read_image(old, "old"), _read_image(new, "new")
    matches = find_matches(old_data, new_data)
    count = -(-len(new_data) // segment_bytes)
    header = Header(
        len(old_data),
        len(new_data),
        hashlib.sha256(old_data).digest(),
        hashlib.sha256(new_data).digest(),
        count,
    )
    chunks = _encode(
        old_data, new_data, header=header, matches=matches, level=level, step=segment_bytes
    )
    length, digest = _write_atomically(out, chunks)
    return DeltaInfo(
        length=length,
        sha256=digest,
        old_sha256=header.old_sha256.hex(),
        new_sha256=header.new_sha256.hex(),
        encoder=f"tfdelta1-zstd{level}",
    )


def _encode(
    old: bytes, new: bytes, *, header: Header, matches: list[Match], level: int, step: int
) -> Iterator[bytes]:
    yield header.pack()
    for start in range(0, len(new), step):
        end = min(len(new), start + step)
        extents = segment_extents(
            matches,
            start=start,
            end=end,
            old_length=len(old),
            max_bytes=MAX_DICT_BYTES,
        )
        extents = extents[:MAX_EXTENTS]
        dictionary = b"".join(old[o : o + n] for o, n in extents)
        frame = _compress_segment(new[start:end], dictionary, level=level)
        yield SEGMENT.pack(end - start, len(extents), len(frame))
        yield b"".join(EXTENT.pack(o, n) for o, n in extents)
        yield frame


def apply_delta(
    old: Path, delta: BinaryIO, out: BinaryIO, *, expected_length: int, max_output_bytes: int
) -> int:
    """Rebuild the new image from ``old`` and ``delta``, streaming it to ``out``.

    Args:
        old: The old image (the device's active slot); read by offset, never past its end.
        delta: The delta, read sequentially.
        out: Where the new image is written, segment by segment.
        expected_length: The new image's length from the signed manifest.
        max_output_bytes: Never write more than this (the slot's size).

    Returns:
        The number of bytes written (``expected_length``).

    Raises:
        InvalidInput: The delta would write more than ``max_output_bytes``
            (code ``ota.delta.too_large``).
        VerificationFailed: The delta is malformed, truncated or hostile
            (``ota.delta.corrupt``), was made for another old image
            (``ota.delta.base_mismatch``), or its output is not the image it promised
            (``ota.delta.length_mismatch``, ``ota.delta.output_mismatch``). Anything already
            written to ``out`` must then be discarded.
    """
    header = Header.unpack(delta.read(HEADER.size))
    _check_lengths(header, expected_length=expected_length, max_output_bytes=max_output_bytes)
    decompressor = Decompressor()
    digest = hashlib.sha256()
    written = 0
    with open_old(old, header=header) as image:
        for _ in range(header.segment_count):
            room = header.new_length - written
            written += copy_segment(image, delta, out, digest, decompressor, room=room)
    if written != header.new_length:
        raise corrupt("the delta's segments do not add up to the new image")
    if delta.read(1):
        raise corrupt("the delta has data after its last segment")
    if digest.digest() != header.new_sha256:
        raise VerificationFailed(
            "the image rebuilt from the delta is not the one the delta promised",
            hint="download the full image",
            code="ota.delta.output_mismatch",
        )
    return written


def _check_lengths(header: Header, *, expected_length: int, max_output_bytes: int) -> None:
    if header.new_length > max_output_bytes:
        raise InvalidInput(
            f"the delta would write {header.new_length} bytes, more than the allowed "
            f"{max_output_bytes}",
            hint="the image does not fit the slot; check the release",
            code="ota.delta.too_large",
        )
    if header.new_length != expected_length:
        raise VerificationFailed(
            f"the delta rebuilds {header.new_length} bytes, the manifest says {expected_length}",
            hint="the delta does not belong to this release",
            code="ota.delta.length_mismatch",
        )
    header.check_segment_count()
