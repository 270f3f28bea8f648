"""C2SP tlog-tiles resource names, tile widths and entry bundles."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.audit import ProofError
from trustfleet.audit.tiles import (
    decode_entry_bundle,
    encode_entry_bundle,
    entries_path,
    parse_tile_path,
    tile_path,
    tile_width,
    tiles_for_size,
)

# -- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 0, 256, "tile/0/000"),
        (0, 1234, 256, "tile/0/x001/234"),
        (1, 5, 7, "tile/1/005.p/7"),
        (2, 1234067, 255, "tile/2/x001/x234/067.p/255"),
        (63, 999, 1, "tile/63/999.p/1"),
        (None, 1234, 9, "tile/entries/x001/234.p/9"),
        (None, 1000, 256, "tile/entries/x001/000"),
        (0, 2**64 - 1, 256, "tile/0/x018/x446/x744/x073/x709/x551/615"),
    ],
)
def test_tile_paths_round_trip(level: int | None, index: int, width: int, path: str) -> None:
    made = entries_path(index, width) if level is None else tile_path(level, index, width)
    assert made == path
    assert parse_tile_path(path) == (level, index, width)


@given(
    level=st.one_of(st.none(), st.integers(0, 63)),
    index=st.integers(0, 2**64 - 1),
    width=st.integers(1, 256),
)
def test_every_tile_path_round_trips(level: int | None, index: int, width: int) -> None:
    path = entries_path(index, width) if level is None else tile_path(level, index, width)
    assert parse_tile_path(path) == (level, index, width)


@pytest.mark.parametrize(
    "path",
    [
        "tile/00/000",
        "tile/01/000",
        "tile/0/x000/001",
        "tile/0/0001",
        "tile/0/01",
        "tile/0/001/234",
        "tile/0/x001",
        "tile/0/x001/x234",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/64/000",
        "tile/-1/000",
        "tile/entries/000.p/0",
        "tile/entries/x000/000",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/entries/x018/x446/x744/x073/x709/x551/616",
        "tiles/0/000",
        "tile/0/000/",
        "/tile/0/000",
        "tile/0/000\n",
        "tile/0/\u0660\u0660\u0660",
        "tile/0",
        "",
    ],
)
def test_malformed_tile_paths_are_refused(path: str) -> None:
    with pytest.raises(ProofError, match="is not a tile path"):
        parse_tile_path(path)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: tile_path(-1, 0), "tile level -1 is outside 0..63"),
        (lambda: tile_path(64, 0), "tile level 64 is outside 0..63"),
        (lambda: tile_path(0, -1), "tile index -1 is outside 0..2**64-1"),
        (lambda: tile_path(0, 2**64), f"tile index {2**64} is outside 0..2**64-1"),
        (lambda: tile_path(0, 0, 0), "tile width 0 is outside 1..256"),
        (lambda: entries_path(0, 257), "tile width 257 is outside 1..256"),
        (lambda: entries_path(-1), "tile index -1 is outside 0..2**64-1"),
    ],
    ids=["level-neg", "level-64", "index-neg", "index-2-64", "width-0", "width-257", "entries-neg"],
)
def test_tile_path_refuses_out_of_range(call: Callable[[], str], reason: str) -> None:
    with pytest.raises(ProofError) as caught:
        call()
    assert str(caught.value) == reason


def test_tiles_for_size_follows_the_spec_examples() -> None:
    assert tiles_for_size(0) == []
    assert tiles_for_size(256) == [(0, 0, 256), (1, 0, 1)]
    found = tiles_for_size(70_000)
    assert found[:273] == [(0, index, 256) for index in range(273)]
    assert found[273:] == [(0, 273, 112), (1, 0, 256), (1, 1, 17), (2, 0, 1)]
    for size in (1, 255, 256, 257, 65535, 65536, 70_000):
        published = {(level, index): width for level, index, width in tiles_for_size(size)}
        for level in range(4):
            for index in range(300):
                width = tile_width(level=level, index=index, size=size)
                assert width == published.get((level, index), 0), (size, level, index)


# -- entry bundles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [[], [b""], [b"a", b"", b"bc"], [b"x" * 0xFFFF], [bytes([n]) for n in range(256)]],
    ids=["none", "one-empty", "mixed", "largest-entry", "full-bundle"],
)
def test_entry_bundles_round_trip(entries: list[bytes]) -> None:
    data = encode_entry_bundle(entries)
    assert len(data) == sum(2 + len(entry) for entry in entries)
    assert decode_entry_bundle(data) == entries


def test_entry_bundle_layout() -> None:
    assert encode_entry_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"


@pytest.mark.parametrize(
    ("data", "max_entries", "reason"),
    [
        (b"\x00", 256, "entry bundle ends inside the length of entry 0"),
        (b"\x00\x01a\x00", 256, "entry bundle ends inside the length of entry 1"),
        (b"\x00\x05abc", 256, "entry bundle's entry 0 has 5 bytes, only 3 remain"),
        (b"\x00\x01a\x00\x02b", 256, "entry bundle's entry 1 has 2 bytes, only 1 remain"),
        (b"\x00\x00" * 257, 256, "entry bundle has more than 256 entries"),
        (b"\x00\x01a\x00\x01b", 1, "entry bundle has more than 1 entries"),
    ],
    ids=["short-length", "trailing-byte", "short-entry", "short-last", "too-many", "over-max"],
)
def test_malformed_entry_bundles_are_refused(data: bytes, max_entries: int, reason: str) -> None:
    with pytest.raises(ProofError) as caught:
        decode_entry_bundle(data, max_entries=max_entries)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([b"ok", b"x" * 0x10000], "entry 1 is 65536 bytes, an entry bundle holds at most 65535"),
        ([b""] * 257, "entry bundle of 257 entries, at most 256"),
    ],
    ids=["entry-too-long", "too-many"],
)
def test_entry_bundle_encoding_refuses(entries: list[bytes], reason: str) -> None:
    with pytest.raises(ProofError) as caught:
        encode_entry_bundle(entries)
    assert str(caught.value) == reason


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_entry_bundle_round_trip_property(entries: list[bytes]) -> None:
    assert decode_entry_bundle(encode_entry_bundle(entries)) == entries
