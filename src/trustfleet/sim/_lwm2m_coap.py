"""The simulated LwM2M device's CoAP side, pure: requests in, responses out, block downloads.

Content formats (``lwm2m.content``): text/plain (0) and opaque (42) for one resource, any of
LwM2M TLV (11542), SenML-JSON (110) and SenML-CBOR (112) for writes (the bootstrap server
writes /0 and /1 in TLV), SenML-JSON for reads and notifications of several resources.
"""

from __future__ import annotations

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
from trustfleet.lwm2m.content import (
    LWM2M_TLV,
    OPAQUE,
    SENML_JSON,
    TEXT,
    Value,
    decode_values,
    encode_values,
)
from trustfleet.sim._lwm2m_tree import POST, ObjectTree, Reply, Request, ResourceValue

__all__ = [
    "LWM2M_TLV",
    "OPAQUE",
    "SENML_JSON",
    "TEXT",
    "BlockDownload",
    "encode_reply",
    "handle_message",
]


Key = tuple[int, int, int]
MAX_VALUES = 256


def _key(path: str) -> Key | None:
    parts = tuple(int(part) for part in path.strip("/").split("/"))
    return (parts[0], parts[1], parts[2]) if len(parts) >= 3 else None


def _as_values(values: tuple[tuple[Key, ResourceValue], ...]) -> list[Value]:
    return [Value(path=f"/{obj}/{inst}/{res}", value=value) for (obj, inst, res), value in values]


def encode_reply(reply: Reply, *, path: tuple[int, ...]) -> tuple[bytes, int | None]:
    """The payload and Content-Format of a reply (text/opaque for one resource, else SenML-JSON)."""
    if not reply.values:
        return b"", None
    base = "/" + "/".join(str(part) for part in path)
    if len(path) == 3 and len(reply.values) == 1:
        form = OPAQUE if isinstance(reply.values[0][1], bytes) else TEXT
    else:
        form = SENML_JSON
    return encode_values(_as_values(reply.values), content_format=form, base_path=base), form


def _path(message: Message) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in message.uri_path())
    except ValueError:
        return None


def _values(message: Message, path: tuple[int, ...]) -> tuple[tuple[Key, ResourceValue], ...]:
    """The written values (a multiple resource keeps its first instance: enough for the sim)."""
    if not message.payload:
        return ()
    form = message.content_format()
    base = "/" + "/".join(str(part) for part in path)
    decoded = decode_values(
        message.payload,
        content_format=TEXT if form is None else form,
        base_path=base,
        max_values=MAX_VALUES,
    )
    values: dict[Key, ResourceValue] = {}
    for value in decoded:
        key = _key(value.path)
        if key is None:
            raise InvalidInput("a write without resource paths", code="lwm2m.content.malformed")
        values.setdefault(key, value.value)
    return tuple(values.items())


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
    payload, form = encode_reply(reply, path=path)
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
