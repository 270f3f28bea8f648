"""A small, strict CBOR (RFC 8949) codec for SenML-CBOR and COSE_Sign1.

Only what those two need: unsigned/negative integers, byte and text strings, arrays and maps of
definite length, tags, false/true/null and half/single/double floats. Decoding is bounded (depth,
item count, input length); indefinite lengths, other simple values and trailing bytes are
refused. Encoding is deterministic (RFC 8949 §4.2.1 preferred integer and length forms; floats
as doubles, maps in the given order).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from trustfleet.errors import InvalidInput

__all__ = ["CborError", "Tag", "dumps", "loads"]

CborValue = object


class CborError(InvalidInput):
    """Malformed or out-of-bounds CBOR."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Malformed CBOR: {reason}", code="lwm2m.cbor.malformed")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Tag:
    """A tagged item."""

    tag: int
    value: object


def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([major << 5 | arg])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | extra]) + arg.to_bytes(size, "big")
    raise ValueError("CBOR integer out of range")


def _dumps_scalar(value: object) -> bytes | None:
    if value is None or isinstance(value, bool):
        return {None: b"\xf6", True: b"\xf5", False: b"\xf4"}[value]
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _head(3, len(raw)) + raw
    return None


def dumps(value: object) -> bytes:
    """Encode a value (bool, int, float, str, bytes, list/tuple, dict, None, Tag)."""
    scalar = _dumps_scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, list | tuple):
        return _head(4, len(value)) + b"".join(dumps(v) for v in value)
    if isinstance(value, dict):
        return _head(5, len(value)) + b"".join(dumps(k) + dumps(v) for k, v in value.items())
    if isinstance(value, Tag):
        return _head(6, value.tag) + dumps(value.value)
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


class _Reader:
    def __init__(self, data: bytes, *, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise CborError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def head(self) -> tuple[int, int, int]:
        first = self.take(1)[0]
        major, info = first >> 5, first & 0x1F
        if info < 24:
            return major, info, info
        if info > 27:
            raise CborError("indefinite length or reserved additional information")
        size = 1 << (info - 24)
        return major, info, int.from_bytes(self.take(size), "big")

    def item(self, depth: int) -> object:
        if depth > self.max_depth:
            raise CborError("nested too deeply")
        self.items_left -= 1
        if self.items_left < 0:
            raise CborError("too many items")
        major, info, arg = self.head()
        if major == 4:
            if arg > self.items_left:
                raise CborError("too many items")
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            return self._map(arg, depth)
        if major == 6:
            return Tag(arg, self.item(depth + 1))
        if major == 7:
            return self._simple(info, arg)
        return self._atom(major, arg)

    def _atom(self, major: int, arg: int) -> object:
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        raw = self.take(arg)
        if major == 2:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CborError("text string is not UTF-8") from exc

    def _map(self, count: int, depth: int) -> dict[object, object]:
        if 2 * count > self.items_left:
            raise CborError("too many items")
        out: dict[object, object] = {}
        for _ in range(count):
            key = self.item(depth + 1)
            if not isinstance(key, int | str):
                raise CborError("map key is not an integer or a text string")
            if key in out:
                raise CborError("duplicate map key")
            out[key] = self.item(depth + 1)
        return out

    @staticmethod
    def _simple(info: int, arg: int) -> object:
        simple = {20: False, 21: True, 22: None}
        if info in simple:
            return simple[info]
        if info == 25:
            return float(struct.unpack(">e", arg.to_bytes(2, "big"))[0])
        if info == 26:
            return float(struct.unpack(">f", arg.to_bytes(4, "big"))[0])
        if info == 27:
            return float(struct.unpack(">d", arg.to_bytes(8, "big"))[0])
        raise CborError("unsupported simple value")


def loads(data: bytes, *, max_depth: int = 8, max_items: int = 4096) -> object:
    """Decode exactly one CBOR item.

    Raises:
        CborError: malformed, trailing bytes, deeper than ``max_depth`` or more than
            ``max_items`` items.
    """
    reader = _Reader(data, max_depth=max_depth, max_items=max_items)
    value = reader.item(0)
    if reader.pos != len(data):
        raise CborError("trailing bytes")
    return value
