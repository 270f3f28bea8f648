"""Delta updates: round trips on simulated images, properties, and hostile deltas refused."""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput, NotFound, TrustFleetError, VerificationFailed
from trustfleet.ota.delta import MAX_DELTA_MEMORY_BYTES, DeltaInfo, apply_delta, make_delta
from trustfleet.sim.image import build_image

SIZE = 2 << 20
SEGMENT = 256 * 1024
LEVEL = 9
HEADER = struct.Struct("<8sHHQQ32s32sI")
SEG = struct.Struct("<IHI")
EXTENT = struct.Struct("<QI")
LIMIT = 1 << 30


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("delta-images")
    out = {}
    for version in ("1.0.0", "1.0.1", "2.0.0"):
        out[version] = build_image(folder / f"{version}.bin", version=version, size_bytes=SIZE).path
    return out


def _round_trip(tmp: Path, old: Path, new: Path, **kwargs: int) -> tuple[DeltaInfo, bytes]:
    delta = tmp / "d.delta"
    info = make_delta(old, new, delta, **kwargs)
    raw = delta.read_bytes()
    assert (info.length, info.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert info.old_sha256 == hashlib.sha256(old.read_bytes()).hexdigest()
    out = io.BytesIO()
    expected = new.read_bytes()
    with delta.open("rb") as fh:
        written = apply_delta(old, fh, out, expected_length=len(expected), max_output_bytes=LIMIT)
    assert written == len(expected) and out.getvalue() == expected
    assert info.new_sha256 == hashlib.sha256(expected).hexdigest()
    return info, raw


@pytest.mark.parametrize("pair", [("1.0.0", "1.0.1"), ("1.0.0", "2.0.0"), ("2.0.0", "1.0.1")])
def test_round_trip_between_simulated_releases(
    tmp_path: Path, images: dict[str, Path], pair: tuple[str, str]
) -> None:
    info, _ = _round_trip(
        tmp_path, images[pair[0]], images[pair[1]], level=LEVEL, segment_bytes=SEGMENT
    )
    assert info.encoder == f"tfdelta1-zstd{LEVEL}"
    full = len(zstandard.ZstdCompressor(level=LEVEL).compress(images[pair[1]].read_bytes()))
    assert info.length < full / 2  # the old image really serves as dictionary


def test_patch_release_delta_is_a_small_fraction_of_the_image(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    minor, _ = _round_trip(tmp_path, images["1.0.0"], images["1.0.1"])  # default parameters
    major, _ = _round_trip(tmp_path, images["1.0.0"], images["2.0.0"], level=LEVEL)
    assert minor.length < SIZE * 0.05
    assert minor.length < major.length


def test_same_pair_gives_the_same_delta(tmp_path: Path, images: dict[str, Path]) -> None:
    one = make_delta(images["1.0.0"], images["1.0.1"], tmp_path / "a", level=3)
    two = make_delta(images["1.0.0"], images["1.0.1"], tmp_path / "b", level=3)
    assert one == two and (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_missing_old_image_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        apply_delta(
            tmp_path / "nope",
            io.BytesIO(GOOD),
            io.BytesIO(),
            expected_length=len(NEW),
            max_output_bytes=LIMIT,
        )
    assert info.value.code == "ota.delta.old_missing"


def _variant(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make_new",
    [
        lambda old: old,
        lambda old: old[: len(old) // 3],
        lambda old: old + old[:100_000] + b"tail",
        lambda old: b"",
        lambda old: b"x",
        lambda old: old[500_000:] + old[:500_000],
    ],
    ids=["identical", "shorter", "longer", "empty-new", "one-byte", "rotated"],
)
def test_round_trip_edge_pairs(
    tmp_path: Path, images: dict[str, Path], make_new: Callable[[bytes], bytes]
) -> None:
    old = images["1.0.0"]
    new = _variant(tmp_path, "new.bin", make_new(old.read_bytes()))
    info, _ = _round_trip(tmp_path, old, new, level=LEVEL, segment_bytes=SEGMENT)
    if new.stat().st_size in {0, SIZE}:
        assert info.length < 20_000


def test_round_trip_from_an_empty_old_image(tmp_path: Path, images: dict[str, Path]) -> None:
    empty = _variant(tmp_path, "empty.bin", b"")
    new = _variant(tmp_path, "small.bin", images["1.0.1"].read_bytes()[:300_000])
    _round_trip(tmp_path, empty, new, level=3, segment_bytes=65536)


_edits = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace"]),
        st.integers(0, 1 << 14),
        st.binary(min_size=0, max_size=64),
    ),
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=st.binary(min_size=0, max_size=12_000), edits=_edits, seed=st.integers(0, 3))
def test_property_any_edited_pair_round_trips(
    tmp_path: Path, old: bytes, edits: list[tuple[str, int, bytes]], seed: int
) -> None:
    old = old * (1 + seed)  # repeated content, so matches exist
    new = bytearray(old)
    for op, pos, data in edits:
        at = pos % (len(new) + 1)
        if op == "insert":
            new[at:at] = data
        elif op == "delete":
            del new[at : at + len(data)]
        else:
            new[at : at + len(data)] = data
    old_path = _variant(tmp_path, "old.bin", old)
    new_path = _variant(tmp_path, "new.bin", bytes(new))
    _round_trip(tmp_path, old_path, new_path, level=1, segment_bytes=4096)


def test_memory_bound_is_documented_and_small() -> None:
    assert MAX_DELTA_MEMORY_BYTES <= 32 << 20


# -- hostile deltas ---------------------------------------------------------------------------

OLD = bytes(range(256)) * 64  # 16 KiB
NEW = OLD[:5000] + b"new bytes" + OLD[5000:]


def _frame(data: bytes, dictionary: bytes = b"", **params: int) -> bytes:
    cparams = zstandard.ZstdCompressionParameters.from_level(
        3, write_checksum=True, write_content_size=True, **params
    )
    raw = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    cctx = zstandard.ZstdCompressor(
        compression_params=cparams, **({"dict_data": raw} if dictionary else {})
    )
    return cctx.compress(data)


def _delta(
    segments: list[tuple[int, list[tuple[int, int]], bytes]],
    *,
    magic: bytes = b"TFDELTA\x00",
    version: int = 1,
    flags: int = 0,
    old: bytes = OLD,
    new_length: int = len(NEW),
    new_sha: bytes | None = None,
    count: int | None = None,
) -> bytes:
    new_sha = new_sha if new_sha is not None else hashlib.sha256(NEW).digest()
    out = HEADER.pack(
        magic,
        version,
        flags,
        len(old),
        new_length,
        hashlib.sha256(old).digest(),
        new_sha,
        len(segments) if count is None else count,
    )
    for new_len, extents, frame in segments:
        out += SEG.pack(new_len, len(extents), len(frame))
        out += b"".join(EXTENT.pack(o, n) for o, n in extents)
        out += frame
    return out


def _good_segments() -> list[tuple[int, list[tuple[int, int]], bytes]]:
    first, second = NEW[:8000], NEW[8000:]
    return [
        (len(first), [(0, 8192)], _frame(first, OLD[:8192])),
        (len(second), [(4096, len(OLD) - 4096)], _frame(second, OLD[4096:])),
    ]


def _with(
    index: int,
    *,
    new_len: int | None = None,
    extents: list[tuple[int, int]] | None = None,
    frame: bytes | None = None,
) -> list[tuple[int, list[tuple[int, int]], bytes]]:
    segments = _good_segments()
    old_len, old_extents, old_frame = segments[index]
    segments[index] = (
        old_len if new_len is None else new_len,
        old_extents if extents is None else extents,
        old_frame if frame is None else frame,
    )
    return segments


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]


GOOD = _delta(_good_segments())
BIG_WINDOW = (  # a hand-made frame declaring a 128 MiB window: FHD, window, FCS, raw block, crc
    b"\x28\xb5\x2f\xfd"
    + bytes([0x44, 17 << 3])
    + struct.pack("<H", 8000 - 256)
    + ((8000 << 3) | 1).to_bytes(3, "little")
    + NEW[:8000]
    + b"\0\0\0\0"
)

HOSTILE: list[tuple[str, bytes, type[TrustFleetError], str]] = [
    ("empty", b"", VerificationFailed, "ota.delta.corrupt"),
    ("truncated-header", GOOD[:50], VerificationFailed, "ota.delta.corrupt"),
    ("truncated-segment-header", GOOD[: HEADER.size + 5], VerificationFailed, "ota.delta.corrupt"),
    ("truncated-frame", GOOD[:-10], VerificationFailed, "ota.delta.corrupt"),
    (
        "bad-magic",
        _delta(_good_segments(), magic=b"BSDIFF40"),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    ("wrong-version", _delta(_good_segments(), version=2), VerificationFailed, "ota.delta.corrupt"),
    ("unknown-flags", _delta(_good_segments(), flags=1), VerificationFailed, "ota.delta.corrupt"),
    (
        "length-over-limit",
        _delta(_good_segments(), new_length=(1 << 30) + 1),
        InvalidInput,
        "ota.delta.too_large",
    ),
    (
        "length-not-the-manifest's",
        _delta(_good_segments(), new_length=len(NEW) - 1),
        VerificationFailed,
        "ota.delta.length_mismatch",
    ),
    (
        "too-many-segments",
        _delta(_good_segments(), count=len(NEW) + 1),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "too-few-segments",
        _delta(_good_segments(), count=1),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "segment-over-bound",
        _delta(_with(0, new_len=(2 << 20) + 1)),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "segment-past-the-end",
        _delta(_with(1, new_len=len(NEW))),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    ("zero-length-segment", _delta(_with(0, new_len=0)), VerificationFailed, "ota.delta.corrupt"),
    (
        "extent-outside-old",
        _delta(_with(0, extents=[(len(OLD) - 100, 200)])),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "extent-offset-overflow",
        _delta(_with(0, extents=[((1 << 64) - 1, 10)])),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "dictionary-over-bound",
        _delta(_with(0, extents=[(0, len(OLD))] * 400)),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "too-many-extents",
        _delta(_with(0, extents=[(0, 1)] * 4097)),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "frame-over-bound",
        _delta(_with(0, frame=b"\0" * (3 << 20))),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "garbage-frame",
        _delta(_with(0, frame=bytes(range(256)) * 4)),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "flipped-frame-byte",
        _delta(_with(0, frame=_flip(_good_segments()[0][2], 30))),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "frame-of-wrong-size",
        _delta(_with(0, frame=_frame(NEW[:7999], OLD[:8192]))),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "garbage-after-frame",
        _delta(_with(0, frame=_good_segments()[0][2] + b"junk")),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "window-over-bound",
        _delta(_with(0, extents=[], frame=BIG_WINDOW)),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    (
        "wrong-dictionary",
        _delta(_with(1, extents=[(1, len(OLD) - 4096)])),
        VerificationFailed,
        "ota.delta.corrupt",
    ),
    ("trailing-data", GOOD + b"\0", VerificationFailed, "ota.delta.corrupt"),
    (
        "other-old-image",
        _delta(_good_segments(), old=OLD[::-1]),
        VerificationFailed,
        "ota.delta.base_mismatch",
    ),
    (
        "promises-other-output",
        _delta(_good_segments(), new_sha=b"\1" * 32),
        VerificationFailed,
        "ota.delta.output_mismatch",
    ),
]


def test_the_hand_made_good_delta_applies(tmp_path: Path) -> None:
    old = _variant(tmp_path, "old.bin", OLD)
    out = io.BytesIO()
    assert apply_delta(
        old, io.BytesIO(GOOD), out, expected_length=len(NEW), max_output_bytes=len(NEW)
    ) == len(NEW)
    assert out.getvalue() == NEW


@pytest.mark.parametrize(
    ("blob", "error", "code"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_delta_is_refused(
    tmp_path: Path, blob: bytes, error: type[TrustFleetError], code: str
) -> None:
    old = _variant(tmp_path, "old.bin", OLD)
    out = io.BytesIO()
    with pytest.raises(error) as info:
        apply_delta(old, io.BytesIO(blob), out, expected_length=len(NEW), max_output_bytes=LIMIT)
    assert info.value.code == code
    assert info.value.hint and "\n" not in info.value.one_line()
    assert len(out.getvalue()) <= len(NEW)


def test_output_never_exceeds_max_output_bytes(tmp_path: Path) -> None:
    old = _variant(tmp_path, "old.bin", OLD)
    out = io.BytesIO()
    with pytest.raises(InvalidInput) as info:
        apply_delta(
            old, io.BytesIO(GOOD), out, expected_length=len(NEW), max_output_bytes=len(NEW) - 1
        )
    assert info.value.code == "ota.delta.too_large" and out.getvalue() == b""


def test_bad_encoder_parameters_are_refused(tmp_path: Path) -> None:
    old = _variant(tmp_path, "old.bin", OLD)
    for kwargs in ({"level": 0}, {"level": 23}, {"segment_bytes": 100}, {"segment_bytes": 3 << 20}):
        with pytest.raises(InvalidInput) as info:
            make_delta(old, old, tmp_path / "d", **kwargs)
        assert info.value.code == "ota.delta.parameters"
