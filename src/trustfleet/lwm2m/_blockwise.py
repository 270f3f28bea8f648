"""Block2 serving of firmware packages (RFC 7959 §2.4): one block read from memory or disk.

``GET /fw/<model>/<version>/manifest`` and ``.../image``: the block the client asks for (or the
server's ``block_size`` if it asks for none or a larger one), Size2 on the first block, an ETag
from the image's SHA-256 so that a client notices a changed package. The image is read with one
``seek`` + ``read`` per block, never whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.lwm2m.coap import Block, Option, option_uint

__all__ = ["BlockSlice", "block_slice", "etag_for", "read_block"]

_ETAG_BYTES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockSlice:
    """Which bytes one Block2 response carries."""

    block: Block
    offset: int
    length: int
    total: int

    def options(self, *, etag: bytes) -> tuple[tuple[int, bytes], ...]:
        """Block2, ETag and (on the first block) Size2."""
        opts = [(int(Option.ETAG), etag), (int(Option.BLOCK2), self.block.encode())]
        if self.block.num == 0:
            opts.append((int(Option.SIZE2), option_uint(self.total)))
        return tuple(opts)


def block_slice(requested: Block | None, *, total: int, block_size: int) -> BlockSlice:
    """The slice for a requested Block2 (None: the first block of the server's size).

    Raises:
        InvalidInput: The block starts past the end (code ``lwm2m.coap.block``; 4.02/4.00).
    """
    size = block_size if requested is None else min(requested.size, block_size)
    szx = Block.szx_for(size)
    num = 0 if requested is None else requested.offset // size
    offset = num * size
    if offset >= total and not (offset == 0 and total == 0):
        raise InvalidInput("The block is past the end.", code="lwm2m.coap.block")
    length = min(size, total - offset)
    more = offset + length < total
    return BlockSlice(
        block=Block(num=num, more=more, szx=szx), offset=offset, length=length, total=total
    )


def read_block(path: Path, piece: BlockSlice) -> bytes:
    """The slice's bytes of a file.

    Raises:
        NotFound: The file is gone or shorter than published (code ``lwm2m.fw.missing``).
    """
    try:
        with path.open("rb") as handle:
            handle.seek(piece.offset)
            data = handle.read(piece.length)
    except OSError as exc:
        raise NotFound("The firmware image is missing.", code="lwm2m.fw.missing") from exc
    if len(data) != piece.length:
        raise NotFound("The firmware image is shorter than published.", code="lwm2m.fw.missing")
    return data


def etag_for(digest_hex: str | bytes) -> bytes:
    """An ETag (8 bytes) from a SHA-256 hex digest, or of bytes."""
    if isinstance(digest_hex, bytes):
        return hashlib.sha256(digest_hex).digest()[:_ETAG_BYTES]
    return bytes.fromhex(digest_hex)[:_ETAG_BYTES]
