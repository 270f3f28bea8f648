"""The simulated LwM2M device's CoAP side, pure: requests in, responses out, block downloads.

Content formats the device speaks: text/plain (0) and opaque (42) for one resource, LwM2M TLV
(11542) for writes from the servers (the bootstrap server writes /0 and /1 in TLV), SenML-JSON
(110) for reads and notifications of several resources. The small TLV decoder and SenML
encoder here cover what the device needs (OMA LwM2M 1.1 TS Core 7.4.3, RFC 8428).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from trustfleet.errors import InvalidInput
from trustfleet.lwm2m.coap import (
    Block,
    Code,
    Message,
    MessageType,
    Option,
    option_uint,
    response_to,
)
from trustfleet.sim._lwm2m_tree import POST, ObjectTree, Reply, Request, ResourceValue

__all__ = [
    "LWM2M_TLV",
    "OPAQUE",
    "SENML_JSON",
    "TEXT",
    "BlockDownload",
    "decode_tlv",
    "encode_reply",
    "handle_message",
]

TEXT, OPAQUE, SENML_JSON, LWM2M_TLV = 0, 42, 110, 11542
MAX_TLV_ITEMS = 256

# Resource types the device needs to decode (object, resource) -> kind; the rest are opaque.
_TYPES: dict[tuple[int, int], str] = {
    (0, 0): "str", (0, 1): "bool", (0, 2): "int", (0, 3): "bytes", (0, 4): "bytes",
    (0, 5): "bytes", (0, 10): "int", (0, 11): "int", (0, 12): "int",
    (1, 0): "int", (1, 1): "int", (1, 2): "int", (1, 3): "int", (1, 6): "bool", (1, 7): "str",
    (3, 0): "str", (3, 1): "str", (3, 2): "str", (3, 3): "str", (3, 11): "int",
    (5, 1): "str", (5, 3): "int", (5, 5): "int", (5, 9): "int",
    (3303, 5700): "float", (3303, 5701): "str", (3303, 5750): "str",
}  # fmt: skip

Key = tuple[int, int, int]


def _bad(reason: str) -> InvalidInput:
    return InvalidInput(f"bad LwM2M TLV: {reason}", code="lwm2m.content.malformed")


def _convert(obj: int, res: int, raw: bytes) -> ResourceValue:
    kind = _TYPES.get((obj, res), "bytes")
    if kind == "str":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("a string resource is not UTF-8") from exc
    if kind == "int":
        if len(raw) not in (1, 2, 4, 8):
            raise _bad("an integer must be 1, 2, 4 or 8 bytes")
        return int.from_bytes(raw, "big", signed=True)
    if kind == "bool":
        if raw not in (b"\x00", b"\x01"):
            raise _bad("a boolean must be one byte 0 or 1")
        return raw == b"\x01"
    if kind == "float":
        if len(raw) not in (4, 8):
            raise _bad("a float must be 4 or 8 bytes")
        return float(struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0])
    return raw


def _items(data: bytes) -> list[tuple[int, int, bytes]]:
    """(identifier type, id, value) of one TLV level."""
    items: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(items) >= MAX_TLV_ITEMS:
            raise _bad("too many entries")
        head = data[pos]
        id_bytes = 2 if head & 0x20 else 1
        length_bytes = (head >> 3) & 0x03
        start = pos + 1 + id_bytes + length_bytes
        if start > len(data):
            raise _bad("truncated header")
        ident = int.from_bytes(data[pos + 1 : pos + 1 + id_bytes], "big")
        length = (
            int.from_bytes(data[pos + 1 + id_bytes : start], "big") if length_bytes else head & 0x07
        )
        if start + length > len(data):
            raise _bad("truncated value")
        items.append((head >> 6, ident, data[start : start + length]))
        pos = start + length
    return items


def decode_tlv(payload: bytes, *, path: tuple[int, ...]) -> tuple[tuple[Key, ResourceValue], ...]:
    """Decode a TLV write under ``/obj`` or ``/obj/inst`` (or a single resource path).

    Raises:
        InvalidInput: Malformed TLV, or a value that does not fit its resource type.
    """
    if not path:
        raise _bad("a write needs an object path")
    values: list[tuple[Key, ResourceValue]] = []

    def resources(obj: int, inst: int, data: bytes) -> None:
        for kind, ident, raw in _items(data):
            if kind == 3:
                values.append(((obj, inst, ident), _convert(obj, ident, raw)))
            elif kind == 2:  # multiple resource: keep its first instance (enough for the sim)
                inner = [item for item in _items(raw) if item[0] == 1]
                if inner:
                    values.append(((obj, inst, ident), _convert(obj, ident, inner[0][2])))
            else:
                raise _bad("an object instance inside an instance")

    obj = path[0]
    if len(path) == 1:
        for kind, ident, raw in _items(payload):
            if kind != 0:
                raise _bad("an object write must hold object instances")
            resources(obj, ident, raw)
    else:
        resources(obj, path[1], payload)
    return tuple(values)


def _text(value: ResourceValue) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"1" if value else b"0"
    return str(value).encode("utf-8")


def _senml(values: tuple[tuple[Key, ResourceValue], ...]) -> bytes:
    records: list[dict[str, object]] = []
    for (obj, inst, res), value in values:
        record: dict[str, object] = {"n": f"/{obj}/{inst}/{res}"}
        if isinstance(value, bool):
            record["vb"] = value
        elif isinstance(value, int | float):
            record["v"] = value
        elif isinstance(value, bytes):
            record["vd"] = value.hex()
        else:
            record["vs"] = value
        records.append(record)
    return json.dumps(records, separators=(",", ":")).encode()


def encode_reply(reply: Reply, *, single: bool) -> tuple[bytes, int | None]:
    """The payload and Content-Format of a reply (text for one resource, SenML-JSON otherwise)."""
    if not reply.values:
        return b"", None
    if single and len(reply.values) == 1:
        value = reply.values[0][1]
        return _text(value), OPAQUE if isinstance(value, bytes) else TEXT
    return _senml(reply.values), SENML_JSON


def _path(message: Message) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in message.uri_path())
    except ValueError:
        return None


def _values(message: Message, path: tuple[int, ...]) -> tuple[tuple[Key, ResourceValue], ...]:
    if not message.payload:
        return ()
    form = message.content_format()
    if form == LWM2M_TLV:
        return decode_tlv(message.payload, path=path)
    if form in (TEXT, OPAQUE, None) and len(path) == 3:
        raw = message.payload
        obj, inst, res = path
        value = raw if form == OPAQUE else _convert(obj, res, raw)
        if form == TEXT and _TYPES.get((obj, res)) == "int":
            value = int(raw.decode("ascii"))
        return (((obj, inst, res), value),)
    raise InvalidInput("unsupported content format", code="lwm2m.content.unsupported")


def handle_message(tree: ObjectTree, message: Message, *, bootstrap: bool) -> Message:
    """Answer one CoAP request from the server the device is talking to (piggybacked ACK).

    Args:
        tree: The device's objects.
        message: A decoded CON request.
        bootstrap: Whether the peer is the bootstrap server.

    Returns:
        The response (bad input becomes 4.00, never an exception).
    """
    if bootstrap and message.code == POST and message.uri_path() == ("bs",):
        return response_to(message, tree.bootstrap_finish().code)
    path = _path(message)
    if path is None:
        return response_to(message, Code.NOT_FOUND)
    try:
        values = _values(message, path)
    except (InvalidInput, ValueError):
        return response_to(message, Code.BAD_REQUEST)
    reply = tree.handle(Request(method=message.code, path=path, values=values, bootstrap=bootstrap))
    payload, form = encode_reply(reply, single=len(path) == 3)
    options: list[tuple[int, bytes]] = []
    if message.observe() == 0 and reply.code == Code.CONTENT:
        options.append((Option.OBSERVE, option_uint(0)))
    return response_to(message, reply.code, payload=payload, options=options, content_format=form)


@dataclass(slots=True, kw_only=True)
class BlockDownload:
    """A Block2 (RFC 7959) GET of one resource, bounded by ``max_bytes``; pure state."""

    path: tuple[str, ...]
    max_bytes: int
    szx: int = 6  # 1024-byte blocks
    received: bytearray = field(default_factory=bytearray)
    done: bool = False

    def next_block(self) -> Block:
        """The Block2 option value of the next request."""
        size = 16 << self.szx
        return Block(num=len(self.received) // size, more=False, szx=self.szx)

    def accept(self, response: Message) -> None:
        """Take one response.

        Raises:
            InvalidInput: Not 2.05, a block out of order, or more than ``max_bytes``.
        """
        if response.code != Code.CONTENT or response.type == MessageType.RST:
            raise InvalidInput(
                f"the firmware download got {response.code}", code="lwm2m.fw.download_refused"
            )
        block = response.block2()
        if block is None:
            block = Block(num=0, more=False, szx=self.szx)
        if block.num * (16 << block.szx) != len(self.received):
            raise InvalidInput("a firmware block out of order", code="lwm2m.fw.block_order")
        self.szx = min(self.szx, block.szx)  # the server may ask for smaller blocks (RFC 7959)
        if len(self.received) + len(response.payload) > self.max_bytes:
            raise InvalidInput("the firmware download is too large", code="lwm2m.fw.too_large")
        self.received += response.payload
        self.done = not block.more
