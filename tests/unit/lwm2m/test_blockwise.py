"""Block2 slices of firmware packages (RFC 7959 §2.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.lwm2m._blockwise import block_slice, etag_for, read_block
from trustfleet.lwm2m.coap import Block, Option


def test_first_block_has_size2_and_etag() -> None:
    piece = block_slice(None, total=100, block_size=64)
    assert (piece.offset, piece.length, piece.block.more, piece.block.size) == (0, 64, True, 64)
    numbers = [n for n, _ in piece.options(etag=etag_for("ab" * 32))]
    assert numbers == [Option.ETAG, Option.BLOCK2, Option.SIZE2]


def test_client_asks_smaller_and_larger_blocks() -> None:
    smaller = block_slice(Block(num=3, more=False, szx=0), total=100, block_size=64)
    assert (smaller.offset, smaller.length, smaller.block.more) == (48, 16, True)
    # a larger size is answered with the server's (late negotiation on block 0, RFC 7959 §2.4)
    larger = block_slice(Block(num=0, more=False, szx=6), total=100, block_size=64)
    assert (larger.block.size, larger.offset, larger.length, larger.block.more) == (64, 0, 64, True)


@pytest.mark.parametrize(
    ("num", "total"), [(2, 100), (1, 64), (1000, 10)], ids=["past-end", "exactly-end", "far"]
)
def test_block_past_end_refused(num: int, total: int) -> None:
    with pytest.raises(InvalidInput):
        block_slice(Block(num=num, more=False, szx=2), total=total, block_size=64)


def test_read_block_and_short_file(tmp_path: Path) -> None:
    path = tmp_path / "img"
    path.write_bytes(bytes(range(100)))
    piece = block_slice(Block(num=1, more=False, szx=2), total=100, block_size=64)
    assert read_block(path, piece) == bytes(range(64, 100))
    path.write_bytes(b"short")
    with pytest.raises(NotFound):
        read_block(path, piece)
    with pytest.raises(NotFound):
        read_block(tmp_path / "gone", piece)
