"""CoAP codes, option numbers, option values, Block (RFC 7959) and Observe (RFC 7641).

Re-exported by :mod:`trustfleet.lwm2m.coap`; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from trustfleet.errors import InvalidInput

__all__ = [
    "MAX_BLOCK_NUM",
    "MAX_MESSAGE_ID",
    "MAX_OBSERVE",
    "MAX_OPTION_NUMBER",
    "MAX_OPTION_VALUE_BYTES",
    "MAX_TOKEN_BYTES",
    "VERSION",
    "Block",
    "CoapFormatError",
    "Code",
    "MessageType",
    "Option",
    "code_text",
    "decode_uint",
    "is_critical",
    "observe_is_newer",
    "option_uint",
]

VERSION = 1
MAX_TOKEN_BYTES = 8
MAX_MESSAGE_ID = 0xFFFF
MAX_OPTION_NUMBER = 0xFFFF
MAX_OPTION_VALUE_BYTES = 0xFFFF + 269
MAX_BLOCK_NUM = (1 << 20) - 1
MAX_OBSERVE = (1 << 24) - 1
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
