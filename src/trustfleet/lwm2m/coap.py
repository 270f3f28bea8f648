"""CoAP message codec (RFC 7252) with Block (RFC 7959) and Observe (RFC 7641) option values.

Pure functions of bytes. :func:`decode` accepts any bytes from the network and either returns a
:class:`Message` or raises :class:`CoapFormatError` (code ``lwm2m.coap.malformed``); it never
raises anything else and never reads more than ``max_options`` options. What the codec does not
judge (unknown critical options, the value ranges of known options) the helpers of
:class:`Message` check when they are asked: they raise :class:`CoapFormatError`, which a server
answers with 4.02 Bad Option.

The payload of a message can carry secrets (a bootstrap write of a pre-shared key), so a
message's ``repr`` shows the payload's length only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum

from trustfleet.errors import InvalidInput

__all__ = [
    "MAX_BLOCK_NUM",
    "MAX_MESSAGE_ID",
    "MAX_OBSERVE",
    "MAX_TOKEN_BYTES",
    "Block",
    "CoapFormatError",
    "Code",
    "Message",
    "MessageType",
    "Option",
    "code_text",
    "decode",
    "decode_uint",
    "empty_ack",
    "encode",
    "is_critical",
    "observe_is_newer",
    "option_uint",
    "request",
    "reset",
    "response_to",
]

VERSION = 1
MAX_TOKEN_BYTES = 8
MAX_MESSAGE_ID = 0xFFFF
MAX_OPTION_NUMBER = 0xFFFF
MAX_OPTION_VALUE_BYTES = 0xFFFF + 269
MAX_BLOCK_NUM = (1 << 20) - 1
MAX_OBSERVE = (1 << 24) - 1
_PAYLOAD_MARKER = 0xFF
_OBSERVE_WINDOW = 1 << 23
_OBSERVE_STALE_S = 128.0


class CoapFormatError(InvalidInput):
    """A CoAP message or option value is malformed (the datagram is dropped or answered 4.02)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Malformed CoAP message: {reason}", code="lwm2m.coap.malformed")
        self.reason = reason


class MessageType(IntEnum):
    """The 2-bit message type (RFC 7252 §3)."""

    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class Code(IntEnum):
    """Method and response codes as the 8-bit ``class << 5 | detail`` value."""

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    FETCH = 5
    IPATCH = 7
    CREATED = 65
    DELETED = 66
    VALID = 67
    CHANGED = 68
    CONTENT = 69
    CONTINUE = 95
    BAD_REQUEST = 128
    UNAUTHORIZED = 129
    BAD_OPTION = 130
    FORBIDDEN = 131
    NOT_FOUND = 132
    METHOD_NOT_ALLOWED = 133
    NOT_ACCEPTABLE = 134
    REQUEST_ENTITY_INCOMPLETE = 136
    PRECONDITION_FAILED = 140
    REQUEST_ENTITY_TOO_LARGE = 141
    UNSUPPORTED_CONTENT_FORMAT = 143
    INTERNAL_SERVER_ERROR = 160
    NOT_IMPLEMENTED = 161
    SERVICE_UNAVAILABLE = 163


class Option(IntEnum):
    """Option numbers used here (RFC 7252 §5.10, RFC 7641, RFC 7959)."""

    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    ACCEPT = 17
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    PROXY_URI = 35
    SIZE1 = 60


def _number(option: tuple[int, bytes]) -> int:
    return option[0]


def code_text(code: int) -> str:
    """A code in the dotted ``c.dd`` notation, e.g. ``2.05`` for 69."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def is_critical(number: int) -> bool:
    """Whether an option is critical (odd number, RFC 7252 §5.4.6)."""
    return number & 1 == 1


def option_uint(value: int) -> bytes:
    """An unsigned integer option value in its minimal big-endian form (0 is empty)."""
    if value < 0:
        raise ValueError("an option uint is not negative")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_uint(data: bytes, *, max_bytes: int = 4) -> int:
    """An unsigned integer option value (leading zero bytes are accepted).

    Raises:
        CoapFormatError: the value is longer than ``max_bytes``.
    """
    if len(data) > max_bytes:
        raise CoapFormatError(f"uint option value longer than {max_bytes} bytes")
    return int.from_bytes(data, "big")


@dataclass(frozen=True, slots=True)
class Block:
    """A Block1/Block2 option value (RFC 7959 §2.2): number, more flag and size exponent."""

    num: int
    more: bool
    szx: int

    def __post_init__(self) -> None:
        if not 0 <= self.num <= MAX_BLOCK_NUM:
            raise CoapFormatError("block number out of range")
        if not 0 <= self.szx <= 6:
            raise CoapFormatError("block size exponent out of range")

    @property
    def size(self) -> int:
        """The block size in bytes (16 to 1024)."""
        return 16 << self.szx

    @property
    def offset(self) -> int:
        """The byte offset of this block in the body."""
        return self.num * self.size

    def encode(self) -> bytes:
        """The option value (0 to 3 bytes)."""
        return option_uint(self.num << 4 | int(self.more) << 3 | self.szx)

    @classmethod
    def decode(cls, data: bytes) -> Block:
        """Parse an option value.

        Raises:
            CoapFormatError: longer than 3 bytes, or size exponent 7 (reserved).
        """
        value = decode_uint(data, max_bytes=3)
        return cls(num=value >> 4, more=bool(value & 0x8), szx=value & 0x7)

    @staticmethod
    def szx_for(size_bytes: int) -> int:
        """The size exponent of a block size (16, 32, ..., 1024)."""
        for szx in range(7):
            if 16 << szx == size_bytes:
                return szx
        raise ValueError("a block size is a power of two from 16 to 1024")


def observe_is_newer(previous: int, current: int, *, elapsed_s: float) -> bool:
    """Whether a notification with ``current`` is newer than one with ``previous`` (RFC 7641 §3.4).

    Args:
        previous: The Observe value of the last notification taken.
        current: The Observe value of the notification just received.
        elapsed_s: Seconds between receiving the two.
    """
    return (
        (previous < current and current - previous < _OBSERVE_WINDOW)
        or (previous > current and previous - current > _OBSERVE_WINDOW)
        or elapsed_s > _OBSERVE_STALE_S
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One CoAP message. Options are kept sorted by number, in their order within a number."""

    type: MessageType
    code: int
    message_id: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        # Canonical form: plain ints, sorted by number (stable), so equal messages compare equal.
        canonical = tuple(sorted(((int(n), bytes(v)) for n, v in self.options), key=_number))
        object.__setattr__(self, "options", canonical)
        if not 0 <= self.code <= 0xFF:
            raise CoapFormatError("code out of range")
        if not 0 <= self.message_id <= MAX_MESSAGE_ID:
            raise CoapFormatError("message id out of range")
        if len(self.token) > MAX_TOKEN_BYTES:
            raise CoapFormatError("token longer than 8 bytes")
        for number, value in self.options:
            if not 0 < number <= MAX_OPTION_NUMBER or len(value) > MAX_OPTION_VALUE_BYTES:
                raise CoapFormatError("option number or length out of range")
        if self.code == Code.EMPTY and (self.token or self.options or self.payload):
            raise CoapFormatError("an empty message has no token, options or payload")

    def __repr__(self) -> str:
        path = "/" + "/".join(self._strings(Option.URI_PATH, "Uri-Path"))
        return (
            f"Message({self.type.name} {code_text(self.code)} mid={self.message_id} "
            f"token={self.token.hex()} path={path!r} payload_bytes={len(self.payload)})"
        )

    # Kinds.
    @property
    def is_request(self) -> bool:
        """A method code (class 0, not Empty)."""
        return 0 < self.code < 32

    @property
    def is_response(self) -> bool:
        """A response code (class 2, 4 or 5)."""
        return self.code >> 5 in (2, 4, 5)

    @property
    def is_empty(self) -> bool:
        """Code 0.00 (an empty ACK, an RST or a CoAP ping)."""
        return self.code == Code.EMPTY

    # Options.
    def option_values(self, number: int) -> tuple[bytes, ...]:
        """Every value of one option, in order."""
        return tuple(value for num, value in self.options if num == number)

    def option(self, number: int) -> bytes | None:
        """The value of a non-repeatable option (None if absent).

        Raises:
            CoapFormatError: the option occurs more than once.
        """
        values = self.option_values(number)
        if len(values) > 1:
            raise CoapFormatError(f"option {number} repeated")
        return values[0] if values else None

    def _strings(self, number: int, name: str) -> tuple[str, ...]:
        try:
            return tuple(value.decode("utf-8") for value in self.option_values(number))
        except UnicodeDecodeError as exc:
            raise CoapFormatError(f"{name} is not UTF-8") from exc

    def _uint(self, number: int, *, max_bytes: int) -> int | None:
        value = self.option(number)
        return None if value is None else decode_uint(value, max_bytes=max_bytes)

    def uri_path(self) -> tuple[str, ...]:
        """The Uri-Path segments (``()`` for ``/``)."""
        return self._strings(Option.URI_PATH, "Uri-Path")

    def uri_query(self) -> tuple[str, ...]:
        """The Uri-Query arguments, each ``name=value`` or ``name``."""
        return self._strings(Option.URI_QUERY, "Uri-Query")

    def location_path(self) -> tuple[str, ...]:
        """The Location-Path segments."""
        return self._strings(Option.LOCATION_PATH, "Location-Path")

    def content_format(self) -> int | None:
        """The Content-Format number (None if absent)."""
        return self._uint(Option.CONTENT_FORMAT, max_bytes=2)

    def accept(self) -> int | None:
        """The Accept number (None if absent)."""
        return self._uint(Option.ACCEPT, max_bytes=2)

    def observe(self) -> int | None:
        """The Observe value (0/1 register/deregister in a request; a notification's sequence)."""
        return self._uint(Option.OBSERVE, max_bytes=3)

    def block1(self) -> Block | None:
        """The Block1 option (None if absent)."""
        value = self.option(Option.BLOCK1)
        return None if value is None else Block.decode(value)

    def block2(self) -> Block | None:
        """The Block2 option (None if absent)."""
        value = self.option(Option.BLOCK2)
        return None if value is None else Block.decode(value)

    def unknown_critical(self, known: Iterable[int]) -> tuple[int, ...]:
        """Critical option numbers present here but not in ``known`` (answer 4.02 if any)."""
        known_set = frozenset(known)
        return tuple(sorted({n for n, _ in self.options if is_critical(n) and n not in known_set}))

    def with_options(self, options: Iterable[tuple[int, bytes]]) -> Message:
        """A copy with ``options`` appended."""
        return replace(self, options=self.options + tuple(options))

    def without_options(self, numbers: Iterable[int]) -> Message:
        """A copy without any option whose number is in ``numbers``."""
        drop = frozenset(numbers)
        return replace(self, options=tuple(o for o in self.options if o[0] not in drop))


def _path_options(number: int, segments: Iterable[str]) -> list[tuple[int, bytes]]:
    out = []
    for segment in segments:
        value = segment.encode("utf-8")
        if len(value) > 255:
            raise ValueError("a path or query segment is at most 255 bytes")
        out.append((number, value))
    return out


def request(
    code: int,
    *,
    path: str | Sequence[str],
    message_id: int,
    token: bytes = b"",
    query: Sequence[str] = (),
    payload: bytes = b"",
    content_format: int | None = None,
    options: Sequence[tuple[int, bytes]] = (),
    confirmable: bool = True,
) -> Message:
    """Build a request.

    Args:
        code: The method (``Code.GET`` ...).
        path: ``"/3/0/1"`` or the segments ``("3", "0", "1")``; ``"/"`` is the root.
        message_id: The message id (0..65535).
        token: The token (0 to 8 bytes).
        query: Uri-Query arguments such as ``"ep=dev-0001"``.
        payload: The body.
        content_format: The Content-Format of the body, if any.
        options: More options.
        confirmable: CON (default) or NON.
    """
    segments = [s for s in path.split("/") if s] if isinstance(path, str) else list(path)
    opts = _path_options(Option.URI_PATH, segments) + _path_options(Option.URI_QUERY, query)
    if content_format is not None:
        opts.append((Option.CONTENT_FORMAT, option_uint(content_format)))
    return Message(
        type=MessageType.CON if confirmable else MessageType.NON,
        code=code,
        message_id=message_id,
        token=token,
        options=tuple(opts) + tuple(options),
        payload=payload,
    )


def response_to(
    req: Message,
    code: int,
    *,
    payload: bytes = b"",
    options: Sequence[tuple[int, bytes]] = (),
    content_format: int | None = None,
    message_id: int | None = None,
) -> Message:
    """Build the response to a request, with its token.

    Without ``message_id`` a CON request gets a piggybacked ACK (same message id). With one the
    response is separate: CON for a CON request, NON for a NON request (RFC 7252 §5.2).

    Raises:
        ValueError: a NON request and no ``message_id``.
    """
    opts = list(options)
    if content_format is not None:
        opts.append((Option.CONTENT_FORMAT, option_uint(content_format)))
    if message_id is None:
        if req.type != MessageType.CON:
            raise ValueError("a response to a NON request needs its own message id")
        kind, mid = MessageType.ACK, req.message_id
    else:
        kind = MessageType.NON if req.type == MessageType.NON else MessageType.CON
        mid = message_id
    return Message(
        type=kind, code=code, message_id=mid, token=req.token, options=tuple(opts), payload=payload
    )


def empty_ack(message: Message) -> Message:
    """The empty ACK of a CON message (a separate response follows, or a notification is taken)."""
    return Message(type=MessageType.ACK, code=Code.EMPTY, message_id=message.message_id)


def reset(message: Message) -> Message:
    """The RST of a message (rejects it; cancels an observation on a notification)."""
    return Message(type=MessageType.RST, code=Code.EMPTY, message_id=message.message_id)


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def encode(message: Message) -> bytes:
    """The wire form of a message (options sorted by number, stable within a number)."""
    tkl = len(message.token)
    out = bytearray(
        (
            VERSION << 6 | message.type << 4 | tkl,
            message.code,
            message.message_id >> 8,
            message.message_id & 0xFF,
        )
    )
    out += message.token
    last = 0
    for number, value in message.options:
        delta_nib, delta_ext = _ext(number - last)
        len_nib, len_ext = _ext(len(value))
        out.append(delta_nib << 4 | len_nib)
        out += delta_ext + len_ext + value
        last = number
    if message.payload:
        out.append(_PAYLOAD_MARKER)
        out += message.payload
    return bytes(out)


def _read_ext(data: bytes, pos: int, nibble: int, what: str) -> tuple[int, int]:
    if nibble < 13:
        return nibble, pos
    if nibble == 13:
        if pos + 1 > len(data):
            raise CoapFormatError(f"option {what} extension truncated")
        return data[pos] + 13, pos + 1
    if nibble == 14:
        if pos + 2 > len(data):
            raise CoapFormatError(f"option {what} extension truncated")
        return int.from_bytes(data[pos : pos + 2], "big") + 269, pos + 2
    raise CoapFormatError(f"option {what} nibble 15 is reserved")


def _decode_options(data: bytes, pos: int, max_options: int) -> tuple[list[tuple[int, bytes]], int]:
    options: list[tuple[int, bytes]] = []
    number = 0
    while pos < len(data) and data[pos] != _PAYLOAD_MARKER:
        if len(options) >= max_options:
            raise CoapFormatError(f"more than {max_options} options")
        head = data[pos]
        delta, pos = _read_ext(data, pos + 1, head >> 4, "delta")
        length, pos = _read_ext(data, pos, head & 0x0F, "length")
        number += delta
        if number > MAX_OPTION_NUMBER:
            raise CoapFormatError("option number out of range")
        if pos + length > len(data):
            raise CoapFormatError("option value truncated")
        options.append((number, data[pos : pos + length]))
        pos += length
    return options, pos


def decode(data: bytes, *, max_options: int = 64) -> Message:
    """Parse one CoAP message.

    Args:
        data: The datagram (or the DTLS record's plaintext).
        max_options: The most options accepted.

    Returns:
        The message.

    Raises:
        CoapFormatError: anything malformed (never another exception).
    """
    if len(data) < 4:
        raise CoapFormatError("shorter than the 4-byte header")
    if data[0] >> 6 != VERSION:
        raise CoapFormatError("unknown version")
    tkl = data[0] & 0x0F
    if tkl > MAX_TOKEN_BYTES:
        raise CoapFormatError("token length 9-15 is reserved")
    code = data[1]
    if code >> 5 in (1, 3, 6, 7):
        raise CoapFormatError("reserved code class")
    if 4 + tkl > len(data):
        raise CoapFormatError("token truncated")
    if code == Code.EMPTY and len(data) != 4:
        raise CoapFormatError("an empty message has bytes after the header")
    options, pos = _decode_options(data, 4 + tkl, max_options)
    payload = b""
    if pos < len(data):  # data[pos] is the payload marker
        payload = data[pos + 1 :]
        if not payload:
            raise CoapFormatError("payload marker followed by no payload")
    return Message(
        type=MessageType((data[0] >> 4) & 0x3),
        code=code,
        message_id=int.from_bytes(data[2:4], "big"),
        token=bytes(data[4 : 4 + tkl]),
        options=tuple(options),
        payload=bytes(payload),
    )
