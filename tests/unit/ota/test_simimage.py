"""The simulated image format's reader: component lists, bounds and corrupt tables."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.ota.simimage import (
    BLOCK,
    COMPONENTS_FILE,
    ENTRY,
    SUPERBLOCK,
    parse_components,
    read_components,
    render_components,
)
from trustfleet.sim.image import build_image

SIZE = 1 << 20


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_image(
        tmp_path_factory.mktemp("img") / "a.bin", version="1.2.3", size_bytes=SIZE
    ).path


def _file(data: bytes, name: str) -> bytes:
    count = SUPERBLOCK.unpack_from(data)[4]
    for i in range(count):
        entry, offset, length, _kind, _crc = ENTRY.unpack_from(data, BLOCK + i * ENTRY.size)
        if entry.rstrip(b"\0").decode() == name:
            return data[offset : offset + length]
    raise AssertionError(name)


def test_the_simulator_lists_its_binaries_with_their_digests(image: Path) -> None:
    components = read_components(image, max_bytes=SIZE)
    assert components
    data = image.read_bytes()
    for c in components:
        content = _file(data, f"usr/lib/{c.name}")
        assert c.sha256 == hashlib.sha256(content).hexdigest()
        assert c.purl == f"pkg:generic/{c.name}@{c.version}"
    assert render_components(components) == _file(data, COMPONENTS_FILE)


def test_the_component_list_is_deterministic_and_follows_the_lineage(tmp_path: Path) -> None:
    one = build_image(tmp_path / "1.bin", version="1.2.3", size_bytes=SIZE).path
    two = build_image(tmp_path / "2.bin", version="1.2.3", size_bytes=SIZE).path
    assert read_components(one, max_bytes=SIZE) == read_components(two, max_bytes=SIZE)
    later = build_image(tmp_path / "3.bin", version="2.0.0", size_bytes=SIZE).path
    assert read_components(later, max_bytes=SIZE) != read_components(one, max_bytes=SIZE)


def test_another_file_is_not_a_simulated_image(tmp_path: Path) -> None:
    other = tmp_path / "real.bin"
    other.write_bytes(b"\x7fELF" + bytes(8000))
    assert read_components(other, max_bytes=SIZE) is None
    tiny = tmp_path / "tiny.bin"
    tiny.write_bytes(b"TF")
    assert read_components(tiny, max_bytes=SIZE) is None


def _corrupt_count(data: bytearray) -> None:
    struct.pack_into("<I", data, 44, 70000)


def _corrupt_size(data: bytearray) -> None:
    struct.pack_into("<Q", data, SUPERBLOCK.size - 8, 12345)


def _corrupt_entry(data: bytearray) -> None:
    struct.pack_into("<Q", data, BLOCK + 64, 1 << 40)


def _corrupt_listing(data: bytearray) -> None:
    count = SUPERBLOCK.unpack_from(data)[4]
    offset = ENTRY.unpack_from(data, BLOCK + (count - 1) * ENTRY.size)[1]
    data[offset + 5] ^= 0xFF


@pytest.mark.parametrize(
    "corrupt",
    [_corrupt_count, _corrupt_size, _corrupt_entry, _corrupt_listing],
    ids=["file-count", "image-size", "entry-outside", "listing-crc"],
)
def test_a_corrupt_image_is_refused(image: Path, tmp_path: Path, corrupt: object) -> None:
    data = bytearray(image.read_bytes())
    corrupt(data)  # type: ignore[operator]
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidInput) as info:
        read_components(bad, max_bytes=SIZE)
    assert info.value.code == "ota.simimage.invalid"


def test_an_oversize_image_is_refused(image: Path) -> None:
    with pytest.raises(InvalidInput, match="larger than"):
        read_components(image, max_bytes=SIZE - 1)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"schema":"other","components":[]}',
        b'{"schema":"trustfleet.sim-components/1","components":[{"name":"a"}]}',
        b'{"schema":"trustfleet.sim-components/1","components":[{"name":"a","version":"1",'
        b'"purl":"p","sha256":"XY"}]}',
    ],
    ids=["not-json", "schema", "fields", "sha256"],
)
def test_a_bad_component_list_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_components(data)
    assert info.value.code == "ota.simimage.invalid"
