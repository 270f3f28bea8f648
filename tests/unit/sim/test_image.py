"""Simulated firmware images: deterministic, filesystem-like, related across versions."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from trustfleet.cli.main import main
from trustfleet.errors import InvalidInput
from trustfleet.sim.image import build_image, parse_size

SIZE = 2 << 20
BLOCK = 4096
SUPER = struct.Struct("<8sI16s16sIQQQQ")
ENTRY = struct.Struct("<64sQQB3xI4x")


def _files(image: bytes) -> dict[str, bytes]:
    """Parse the image's superblock and inode table; check every file's CRC-32."""
    magic, fmt, _version, _seed, count, table, table_len, _data, size = SUPER.unpack_from(image)
    assert (magic, fmt, size, table_len) == (b"TFSIMG01", 1, len(image), count * ENTRY.size)
    files = {}
    for i in range(count):
        name, offset, length, kind, crc = ENTRY.unpack_from(image, table + i * ENTRY.size)
        content = image[offset : offset + length]
        assert offset % BLOCK == 0 and kind in {1, 2, 3, 4}
        assert zlib.crc32(content) == crc
        files[name.rstrip(b"\0").decode()] = content
    return files


def _new_blocks(old: bytes, new: bytes) -> float:
    """Fraction of the new image's 4 KiB blocks whose content is nowhere in the old image."""
    old_blocks = {old[i : i + BLOCK] for i in range(0, len(old), BLOCK)}
    new_blocks = [new[i : i + BLOCK] for i in range(0, len(new), BLOCK)]
    return sum(block not in old_blocks for block in new_blocks) / len(new_blocks)


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("images")
    out = {}
    for version in ("1.0.0", "1.0.1", "1.1.0", "2.0.0"):
        info = build_image(folder / f"{version}.bin", version=version, size_bytes=SIZE)
        data = info.path.read_bytes()
        assert info.length == len(data) == SIZE
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        out[version] = data
    return out


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("4MiB", 4 << 20),
        ("64MiB", 64 << 20),
        ("512KiB", 512 << 10),
        ("64mib", 64 << 20),
        ("1GiB", 1 << 30),
        (" 2M ", 2 << 20),
    ],
)
def test_parse_size_accepts_bytes_and_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "MiB", "-1", "4 MB", "1.5MiB", "4TiB", "2GiB", "1024", "0x100000", "9" * 14],
    ids=[
        "empty",
        "unit-only",
        "negative",
        "decimal-unit",
        "fraction",
        "unknown-unit",
        "too-large",
        "too-small",
        "hex",
        "too-many-digits",
    ],
)
def test_parse_size_refuses_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_size(text)
    assert info.value.code == "sim.image.size" and info.value.hint


def test_same_seed_and_version_give_the_same_bytes(
    tmp_path: Path, lineage: dict[str, bytes]
) -> None:
    again = build_image(tmp_path / "again.bin", version="1.0.1", size_bytes=SIZE)
    assert again.path.read_bytes() == lineage["1.0.1"]
    other = build_image(tmp_path / "other.bin", version="1.0.1", size_bytes=SIZE, seed="other")
    assert other.sha256 != again.sha256


def test_image_is_a_filesystem_of_varied_files(lineage: dict[str, bytes]) -> None:
    files = _files(lineage["1.0.0"])
    assert len(files) >= 30
    kinds = {name.rsplit(".", 1)[-1] for name in files}
    assert {"so", "png", "db", "conf"} <= kinds
    ratios = {
        ext: len(zlib.compress(b"".join(c for n, c in files.items() if n.endswith(ext)), 6))
        / sum(len(c) for n, c in files.items() if n.endswith(ext))
        for ext in (".so", ".png", ".conf")
    }
    assert ratios[".png"] > 0.99  # high-entropy blobs
    assert ratios[".so"] < 0.8 and ratios[".conf"] < 0.5  # code and text compress
    assert lineage["1.0.0"][-BLOCK:] == bytes(BLOCK)  # free space at the end


def test_patch_release_changes_a_few_files_and_shifts_the_rest(
    lineage: dict[str, bytes],
) -> None:
    old, new = _files(lineage["1.0.0"]), _files(lineage["1.0.1"])
    changed = [n for n in new if old.get(n) != new[n]]
    assert 1 <= len(changed) <= len(new) * 0.1
    assert _new_blocks(lineage["1.0.0"], lineage["1.0.1"]) < 0.05
    assert lineage["1.0.0"] != lineage["1.0.1"]


def test_major_release_changes_a_third_of_the_files(lineage: dict[str, bytes]) -> None:
    old, new = _files(lineage["1.0.0"]), _files(lineage["2.0.0"])
    changed = sum(old.get(n) != c for n, c in new.items())
    assert 0.2 * len(new) <= changed <= 0.5 * len(new)
    assert _new_blocks(lineage["1.0.0"], lineage["2.0.0"]) > _new_blocks(
        lineage["1.0.0"], lineage["1.0.1"]
    )
    old_order = [n for n in old if n in new]
    new_order = [n for n in new if n in old]
    assert old_order != new_order  # part of the image was re-laid out


def test_versions_form_a_lineage(lineage: dict[str, bytes]) -> None:
    base, minor = _files(lineage["1.0.0"]), _files(lineage["1.1.0"])
    same = sum(base.get(n) == c for n, c in minor.items())
    assert same >= 0.85 * len(minor)


@pytest.mark.parametrize(
    ("version", "size", "code"),
    [
        ("1.0", SIZE, "ota.version.invalid"),
        ("01.0.0", SIZE, "ota.version.invalid"),
        ("5000.0.0", SIZE, "sim.image.version_too_far"),
        ("1.0.0", 1024, "sim.image.size"),
        ("1.1000.0", 64 << 10, "sim.image.too_small"),
    ],
    ids=["short-version", "leading-zero", "too-far", "too-small-size", "does-not-fit"],
)
def test_bad_requests_are_refused(tmp_path: Path, version: str, size: int, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        build_image(tmp_path / "x.bin", version=version, size_bytes=size)
    assert info.value.code == code
    assert not list(tmp_path.iterdir())


def test_cli_writes_an_image_and_refuses_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lineage: dict[str, bytes]
) -> None:
    out = tmp_path / "img.bin"
    argv = ["sim", "image", "--version", "1.0.1", "--size", "2MiB", "--out", str(out), "--json"]
    assert main(argv) == 0
    assert out.read_bytes() == lineage["1.0.1"]
    assert hashlib.sha256(lineage["1.0.1"]).hexdigest() in capsys.readouterr().out
    assert main(["sim", "image", "--version", "1.0.1", "--size", "2XB", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a size" in err and "Hint" in err and "Traceback" not in err
