"""The delta decoder's bounds, one by one: header, segment count, zstd frames, extents, memory.

Each bound is tested exactly at its limit (accepted) and one past it (refused with
``ota.delta.corrupt``), on hand-made segments and frames; no encoder is involved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zstandard

from trustfleet.errors import NotFound, VerificationFailed
from trustfleet.ota import _delta_decode as dec
from trustfleet.ota import _delta_format as fmt

MAGIC = b"\x28\xb5\x2f\xfd"
MIB = 1 << 20
OLD = bytes(range(256)) * 64  # 16 KiB


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _corrupt(call: object, *args: object, **kwargs: object) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == "ota.delta.corrupt"
    return caught.value


def _block(kind: int, size: int, *, last: bool) -> bytes:
    return ((size << 3) | (kind << 1) | int(last)).to_bytes(3, "little")


def _frame(data: bytes, dictionary: bytes = b"") -> bytes:
    cparams = zstandard.ZstdCompressionParameters.from_level(
        3, write_checksum=True, write_content_size=True
    )
    kwargs: dict[str, object] = {}
    if dictionary:
        kwargs["dict_data"] = zstandard.ZstdCompressionDict(
            dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT
        )
    return zstandard.ZstdCompressor(compression_params=cparams, **kwargs).compress(data)  # type: ignore[arg-type]


# --- constants and layout ------------------------------------------------------------------


def test_bounds_and_layout_are_exact() -> None:
    assert fmt.MAGIC == b"TFDELTA\x00" and fmt.FORMAT_VERSION == 1
    assert fmt.MAX_SEGMENT_BYTES == 2 * MIB
    assert fmt.MAX_DICT_BYTES == 6 * MIB
    assert fmt.MAX_EXTENTS == 4096
    assert fmt.MAX_FRAME_BYTES == 2 * MIB + 16384 + 4096
    assert fmt.MAX_WINDOW_BYTES == 8 * MIB
    assert (fmt.HEADER.size, fmt.SEGMENT.size, fmt.EXTENT.size) == (96, 10, 12)
    assert fmt.SEGMENT.pack(1, 2, 3) == b"\x01\0\0\0\x02\0\x03\0\0\0"
    assert fmt.EXTENT.pack(1, 2) == b"\x01" + b"\0" * 7 + b"\x02\0\0\0"


def _header(**changes: object) -> fmt.Header:
    fields: dict[str, object] = {
        "old_length": 5,
        "new_length": 7,
        "old_sha256": b"\x11" * 32,
        "new_sha256": b"\x22" * 32,
        "segment_count": 3,
    }
    fields.update(changes)
    return fmt.Header(**fields)  # type: ignore[arg-type]


def test_header_packs_to_the_documented_bytes() -> None:
    raw = _header().pack()
    expected = b"TFDELTA\x00" + b"\x01\x00" + b"\x00\x00" + struct.pack("<QQ", 5, 7)
    expected += b"\x11" * 32 + b"\x22" * 32 + struct.pack("<I", 3)
    assert raw == expected
    assert fmt.Header.unpack(raw) == _header()


def test_header_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _header().segment_count = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        _header().pack()[:-1],
        _header().pack() + b"\0",
        b"BSDIFF40" + _header().pack()[8:],
        _header().pack()[:8] + b"\x02\x00" + _header().pack()[10:],  # version 2, flags 0
        _header().pack()[:8] + b"\x00\x00" + _header().pack()[10:],  # version 0
        _header().pack()[:10] + b"\x01\x00" + _header().pack()[12:],  # version 1, flags 1
    ],
    ids=["empty", "short", "long", "magic", "version-2", "version-0", "flags"],
)
def test_bad_header_is_corrupt(raw: bytes) -> None:
    _corrupt(fmt.Header.unpack, raw)


@pytest.mark.parametrize(
    ("count", "length"),
    [
        (0, 0),
        (1, 1),
        (7, 7),  # one byte per segment
        (1, 2 * MIB),
        (2, 2 * MIB + 1),  # ceil
        (3, 6 * MIB),
        (6 * MIB, 6 * MIB),
    ],
)
def test_possible_segment_counts_pass(count: int, length: int) -> None:
    _header(segment_count=count, new_length=length).check_segment_count()


@pytest.mark.parametrize(
    ("count", "length"),
    [
        (1, 0),
        (8, 7),
        (0, 1),
        (1, 2 * MIB + 1),
        (2, 6 * MIB),
        (2, 4 * MIB + 1),
        (1 << 42, (1 << 63) + 1),  # exact integer ceil: a float would round the +1 away
    ],
)
def test_impossible_segment_counts_are_corrupt(count: int, length: int) -> None:
    _corrupt(_header(segment_count=count, new_length=length).check_segment_count)


def test_corrupt_is_verification_failed_with_code_and_hint() -> None:
    error = fmt.corrupt("x")
    assert isinstance(error, VerificationFailed)
    assert (error.code, error.hint) == (
        "ota.delta.corrupt",
        "the delta is damaged or forged; download the full image instead",
    )


# --- zstd frame walking --------------------------------------------------------------------

SINGLE = MAGIC + b"\x20\x05"  # single segment, 1-byte content size 5, no checksum
SINGLE_SUM = MAGIC + b"\x24\x05"  # the same with a checksum


@pytest.mark.parametrize(
    ("frame", "length"),
    [
        (SINGLE + _block(0, 5, last=True) + b"abcde", 14),
        (SINGLE + _block(0, 5, last=True) + b"abcde" + b"tail", 14),
        (SINGLE + _block(1, 5, last=True) + b"a", 10),  # RLE: one byte whatever the size
        (SINGLE + _block(2, 4, last=True) + b"wxyz", 13),  # compressed: size bytes
        (SINGLE + _block(0, 0, last=True), 9),  # ends exactly after the block header
        (SINGLE + _block(0, 2, last=False) + b"ab" + _block(0, 3, last=True) + b"cde", 17),
        (SINGLE + _block(1, 9, last=False) + b"a" + _block(0, 1, last=True) + b"b", 14),
        (SINGLE_SUM + _block(0, 5, last=True) + b"abcde" + b"sum!", 18),
        (SINGLE + _block(0, 1 << 16, last=True) + b"\0" * (1 << 16), 9 + (1 << 16)),
    ],
    ids=[
        "raw",
        "raw-then-more",
        "rle",
        "compressed",
        "empty-last",
        "two-raw",
        "rle-then-raw",
        "checksum",
        "big-size-field",
    ],
)
def test_frame_length_walks_the_blocks(frame: bytes, length: int) -> None:
    assert fmt.frame_length(frame) == length


def test_frame_length_of_a_real_frame_is_its_length() -> None:
    frame = _frame(OLD)
    assert fmt.frame_length(frame + b"junk") == len(frame)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"not a zstd frame",
        MAGIC,
        SINGLE,  # no block header
        SINGLE + b"\x01\x00",  # block header cut
        SINGLE + _block(3, 0, last=True),  # reserved block type
        SINGLE + _block(0, 5, last=True) + b"abcd",  # block cut
        SINGLE + _block(1, 5, last=True),  # RLE byte missing
        SINGLE + _block(0, 1, last=False) + b"a",  # no last block
    ],
    ids=[
        "empty",
        "garbage",
        "magic-only",
        "no-block",
        "cut-block-header",
        "reserved",
        "cut-block",
        "cut-rle",
        "no-last-block",
    ],
)
def test_malformed_frame_is_corrupt(frame: bytes) -> None:
    _corrupt(fmt.frame_length, frame)


# --- the old image ---------------------------------------------------------------------------


def _old_header(data: bytes, length: int | None = None) -> fmt.Header:
    size = len(data) if length is None else length
    return fmt.Header(size, 0, _sha(data[:size]), b"\0" * 32, 0)


@contextmanager
def _image(tmp_path: Path, data: bytes = OLD) -> Iterator[dec.OldImage]:
    path = tmp_path / "old.bin"
    path.write_bytes(data)
    with dec.open_old(path, header=_old_header(data)) as image:
        yield image


def test_old_image_reads_inside_its_length(tmp_path: Path) -> None:
    with _image(tmp_path) as image:
        assert image.length == len(OLD)
        assert image.read(0, len(OLD)) == OLD
        assert image.read(len(OLD) - 1, 1) == OLD[-1:]
        assert image.read(len(OLD), 0) == b""
        assert image.read(300, 4) == OLD[300:304]


@pytest.mark.parametrize(
    ("offset", "length"),
    [(-1, 1), (0, -1), (len(OLD) - 1, 2), (len(OLD), 1), (0, len(OLD) + 1)],
)
def test_old_image_read_outside_is_corrupt(tmp_path: Path, offset: int, length: int) -> None:
    with _image(tmp_path) as image:
        _corrupt(image.read, offset, length)


def test_extents_are_concatenated_in_order(tmp_path: Path) -> None:
    with _image(tmp_path) as image:
        got = image.read_extents([(10, 5), (0, 3), (len(OLD) - 2, 2), (7, 0)])
        assert got == bytearray(OLD[10:15] + OLD[0:3] + OLD[-2:])
        assert image.read_extents([]) == bytearray()
        assert image.read_extents([(0, len(OLD))]) == bytearray(OLD)


@pytest.mark.parametrize(
    "extents",
    [[(-1, 1)], [(len(OLD) - 1, 2)], [(0, 1), (len(OLD), 1)], [((1 << 64) - 1, 10)]],
)
def test_extent_outside_the_old_image_is_corrupt(
    tmp_path: Path, extents: list[tuple[int, int]]
) -> None:
    with _image(tmp_path) as image:
        _corrupt(image.read_extents, extents)


def test_short_reads_continue_at_the_right_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.preadv

    def three_bytes_at_a_time(fd: int, buffers: list[memoryview], offset: int) -> int:
        return real(fd, [buffers[0][:3]], offset)

    with _image(tmp_path) as image:
        monkeypatch.setattr(os, "preadv", three_bytes_at_a_time)
        got = image.read_extents([(100, 10), (7, 4), (3000, 8)])
    assert got == bytearray(OLD[100:110] + OLD[7:11] + OLD[3000:3008])


def test_old_image_that_shrank_is_base_changed(tmp_path: Path) -> None:
    path = tmp_path / "old.bin"
    path.write_bytes(OLD)
    fd = os.open(path, os.O_RDONLY)
    try:
        image = dec.OldImage(fd, len(OLD) + 10)  # the file is 10 bytes shorter than it says
        for call, args in [
            (image.read, (0, len(OLD) + 10)),
            (image.read_extents, ([(8, len(OLD) + 2)],)),
        ]:
            with pytest.raises(VerificationFailed) as caught:
                call(*args)  # type: ignore[operator]
            assert caught.value.code == "ota.delta.base_changed"
            assert caught.value.hint == "retry the update"
    finally:
        os.close(fd)


class _Recording(dec.OldImage):
    def __init__(self, fd: int, length: int) -> None:
        super().__init__(fd, length)
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return super().read(offset, length)


def test_old_image_is_hashed_in_chunks_of_one_mib(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(64) * (MIB // 32) + b"tail!"  # 2 MiB + 5
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        image = _Recording(fd, len(data))
        assert image.sha256() == _sha(data)
        assert image.reads == [(0, MIB), (MIB, MIB), (2 * MIB, 5)]
        empty = _Recording(fd, 0)
        assert empty.sha256() == _sha(b"") and empty.reads == []
    finally:
        os.close(fd)


def test_open_old_checks_length_and_hash_and_closes(tmp_path: Path) -> None:
    path = tmp_path / "old.bin"
    path.write_bytes(OLD)
    with dec.open_old(path, header=_old_header(OLD)) as image:
        fd = image.fd
        assert image.read(0, 4) == OLD[:4]
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.parametrize(
    ("data", "header"),
    [
        (OLD, _old_header(OLD + b"x")),  # file shorter than the header says
        (OLD + b"x", _old_header(OLD)),  # a regular file must match exactly
        (OLD, fmt.Header(len(OLD), 0, b"\0" * 32, b"\0" * 32, 0)),  # other content
    ],
    ids=["shorter", "longer", "other-hash"],
)
def test_other_old_image_is_base_mismatch(tmp_path: Path, data: bytes, header: fmt.Header) -> None:
    path = tmp_path / "old.bin"
    path.write_bytes(data)
    with pytest.raises(VerificationFailed) as caught, dec.open_old(path, header=header):
        pass
    assert caught.value.code == "ota.delta.base_mismatch"


def test_missing_old_image_is_not_found(tmp_path: Path) -> None:
    with (
        pytest.raises(NotFound) as caught,
        dec.open_old(tmp_path / "nope", header=_old_header(OLD)),
    ):
        pass
    assert caught.value.code == "ota.delta.old_missing"


# --- the decompressor ------------------------------------------------------------------------


def test_empty_dictionary_uses_the_plain_context() -> None:
    decompressor = dec.Decompressor()
    plain = decompressor.for_dictionary(bytearray())
    assert plain is decompressor.for_dictionary(bytearray())
    with_dict = decompressor.for_dictionary(bytearray(OLD))
    assert with_dict is not plain
    frame = _frame(OLD[:100] + b"new", OLD)
    assert dec.Decompressor.decompress(with_dict, frame, size=103) == OLD[:100] + b"new"


def _windowed(exponent: int, mantissa: int, data: bytes) -> bytes:
    """A frame declaring a window (not single segment), 2-byte content size, checksum."""
    frame = MAGIC + bytes([0x44, (exponent << 3) | mantissa]) + struct.pack("<H", len(data) - 256)
    frame += _block(0, len(data), last=True) + data
    return frame + b"\0" * 4  # a checksum zstd will not accept


def test_window_of_exactly_the_bound_is_accepted() -> None:
    data = b"w" * 1000
    frame = _frame(data)
    params = zstandard.get_frame_parameters(frame)
    assert params.window_size <= fmt.MAX_WINDOW_BYTES
    assert (
        dec.Decompressor.decompress(
            dec.Decompressor().for_dictionary(bytearray()), frame, size=1000
        )
        == data
    )


@pytest.mark.parametrize(
    ("exponent", "mantissa"),
    [(13, 1), (14, 0)],  # 9 MiB and 16 MiB windows (the bound is 8 MiB)
)
def test_window_over_the_bound_is_corrupt(exponent: int, mantissa: int) -> None:
    frame = _windowed(exponent, mantissa, b"v" * 300)
    dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
    error = _corrupt(dec.Decompressor.decompress, dctx, frame, size=300)
    assert "window" in error.message


def test_window_at_the_bound_reaches_zstd() -> None:
    frame = _windowed(13, 0, b"v" * 300)  # 8 MiB
    dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
    with pytest.raises(zstandard.ZstdError):  # the fake checksum: zstd itself got the frame
        dec.Decompressor.decompress(dctx, frame, size=300)


@pytest.mark.parametrize("size", [99, 101, 0])
def test_frame_of_another_size_is_corrupt(size: int) -> None:
    frame = _frame(b"s" * 100)
    _corrupt(dec.Decompressor.decompress, zstandard.ZstdDecompressor(), frame, size=size)


def test_frame_without_checksum_is_corrupt() -> None:
    frame = SINGLE + _block(0, 5, last=True) + b"abcde"
    _corrupt(dec.Decompressor.decompress, zstandard.ZstdDecompressor(), frame, size=5)


def test_frame_naming_a_dictionary_is_corrupt() -> None:
    frame = MAGIC + b"\x25\x07\x05" + _block(0, 5, last=True) + b"abcde" + b"\0" * 4
    assert zstandard.get_frame_parameters(frame).dict_id == 7
    _corrupt(dec.Decompressor.decompress, zstandard.ZstdDecompressor(), frame, size=5)


# --- one segment -----------------------------------------------------------------------------


def _segment(
    new_len: int, extents: list[tuple[int, int]], frame: bytes, frame_len: int | None = None
) -> bytes:
    out = fmt.SEGMENT.pack(new_len, len(extents), len(frame) if frame_len is None else frame_len)
    return out + b"".join(fmt.EXTENT.pack(o, n) for o, n in extents) + frame


def _apply(image: dec.OldImage, blob: bytes, *, room: int) -> tuple[int, bytes, bytes, int]:
    stream, out, digest = io.BytesIO(blob), io.BytesIO(), hashlib.sha256()
    written = dec.copy_segment(image, stream, out, digest, dec.Decompressor(), room=room)
    return written, out.getvalue(), digest.digest(), stream.tell()


def _refused(image: dec.OldImage, blob: bytes, *, room: int) -> int:
    """Apply and expect ``ota.delta.corrupt``; returns how much of the delta was read."""
    stream = io.BytesIO(blob)
    with pytest.raises(VerificationFailed) as caught:
        dec.copy_segment(
            image, stream, io.BytesIO(), hashlib.sha256(), dec.Decompressor(), room=room
        )
    assert caught.value.code == "ota.delta.corrupt"
    return stream.tell()


NEW = OLD[:5000] + b"new bytes" + OLD[5000:8000]


def test_segment_rebuilds_writes_and_hashes(tmp_path: Path) -> None:
    blob = _segment(len(NEW), [(0, 4096), (4096, 4096)], _frame(NEW, OLD[:8192]))
    with _image(tmp_path) as image:
        assert _apply(image, blob + b"next", room=len(NEW)) == (len(NEW), NEW, _sha(NEW), len(blob))


def test_segment_of_exactly_the_room_passes_one_more_is_corrupt(tmp_path: Path) -> None:
    blob = _segment(len(NEW), [(0, 8192)], _frame(NEW, OLD[:8192]))
    with _image(tmp_path) as image:
        assert _apply(image, blob, room=len(NEW))[0] == len(NEW)
        assert _refused(image, blob, room=len(NEW) - 1) == fmt.SEGMENT.size


def test_segment_of_exactly_the_bound_passes_one_more_is_corrupt(tmp_path: Path) -> None:
    data = b"\0" * (2 * MIB)
    with _image(tmp_path) as image:
        blob = _segment(2 * MIB, [], _frame(data))
        assert _apply(image, blob, room=4 * MIB)[:2] == (2 * MIB, data)
        over = _segment(2 * MIB + 1, [], _frame(data + b"\0"))
        assert _refused(image, over, room=4 * MIB) == fmt.SEGMENT.size


def test_one_byte_segment_and_one_byte_frame_pass_the_bounds(tmp_path: Path) -> None:
    with _image(tmp_path) as image:
        assert _apply(image, _segment(1, [(0, 1)], _frame(OLD[:1], OLD[:1])), room=1)[1] == OLD[:1]
        one_byte_frame = _segment(5, [(0, 4)], b"x")  # within the bounds, then not a frame
        assert _refused(image, one_byte_frame, room=5) == fmt.SEGMENT.size + fmt.EXTENT.size + 1


def test_frame_shorter_than_its_declared_size_is_corrupt(tmp_path: Path) -> None:
    frame = bytearray(_frame(b"abcd"))  # single segment: content size at byte 5, checksum kept
    assert (frame[4], frame[5]) == (0x24, 4)
    frame[5] = 5
    with _image(tmp_path) as image:
        _refused(image, _segment(5, [], bytes(frame)), room=5)


def test_empty_segment_is_corrupt(tmp_path: Path) -> None:
    with _image(tmp_path) as image:
        assert _refused(image, _segment(0, [], _frame(b"")), room=10) == fmt.SEGMENT.size


def test_exactly_max_extents_pass_one_more_is_corrupt(tmp_path: Path) -> None:
    frame = _frame(OLD[:4096], OLD[:4096])
    with _image(tmp_path) as image:
        at = _segment(4096, [(i, 1) for i in range(4096)], frame)
        assert _apply(image, at, room=4096)[1] == OLD[:4096]
        over = _segment(4096, [(i, 1) for i in range(4097)], frame)
        assert _refused(image, over, room=4096) == fmt.SEGMENT.size


def test_dictionary_of_exactly_the_bound_passes_one_more_is_corrupt(tmp_path: Path) -> None:
    big = OLD * (6 * MIB // len(OLD))  # 6 MiB
    with _image(tmp_path, big + b"x") as image:
        frame = _frame(b"hello")
        at = _segment(5, [(0, 6 * MIB)], frame)
        assert _apply(image, at, room=5)[1] == b"hello"
        over = _segment(5, [(0, 3 * MIB), (1, 3 * MIB + 1)], frame)
        assert _refused(image, over, room=5) == fmt.SEGMENT.size + 2 * fmt.EXTENT.size


def test_frame_length_bounds(tmp_path: Path) -> None:
    with _image(tmp_path) as image:
        empty = _segment(5, [(0, 4)], b"", frame_len=0)
        assert _refused(image, empty, room=5) == fmt.SEGMENT.size
        over = _segment(5, [(0, 4)], b"", frame_len=fmt.MAX_FRAME_BYTES + 1)
        assert _refused(image, over, room=5) == fmt.SEGMENT.size
        at = _segment(5, [(0, 4)], b"", frame_len=fmt.MAX_FRAME_BYTES)  # truncated after
        assert _refused(image, at, room=5) == fmt.SEGMENT.size + fmt.EXTENT.size


def test_wrong_dictionary_is_corrupt(tmp_path: Path) -> None:
    data = OLD[200:300]
    with _image(tmp_path) as image:
        good = _segment(100, [(200, 100)], _frame(data, data))
        assert _apply(image, good, room=100)[1] == data
        _refused(image, _segment(100, [(0, 100)], _frame(data, data)), room=100)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        fmt.SEGMENT.pack(5, 1, 10)[:9],
        fmt.SEGMENT.pack(5, 2, 10) + fmt.EXTENT.pack(0, 1),  # extents cut
        _segment(5, [], _frame(b"hello"))[:-1],  # frame cut
        _segment(5, [], _frame(b"hello"), frame_len=len(_frame(b"hello")) + 4) + b"junk",
        _segment(5, [], _frame(b"hello")[:-1] + b"\0"),  # checksum wrong
    ],
    ids=["empty", "cut-header", "cut-extents", "cut-frame", "garbage-after", "checksum"],
)
def test_broken_segment_is_corrupt(tmp_path: Path, blob: bytes) -> None:
    with _image(tmp_path) as image:
        _refused(image, blob, room=5)
