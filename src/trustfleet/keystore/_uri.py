"""PKCS#11 URIs (RFC 7512), for the attributes TrustFleet uses.

Path attributes: ``token``, ``object``, ``id``, ``type``, ``manufacturer``, ``serial``. Query
attributes: ``module-path``, ``pin-source``. Anything else is refused, rather than ignored, so a
URI never selects something broader than its author meant. ``pin-value`` is refused: PINs do
not go in URIs (they end up in logs, shell history and process listings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from trustfleet.errors import InvalidInput

_Value = str | bytes

MAX_URI_CHARS = 4096
"""A URI longer than this is refused."""

ObjectType = Literal["private", "public", "cert", "secret-key"]
OBJECT_TYPES: tuple[ObjectType, ...] = ("private", "public", "cert", "secret-key")

_SCHEME = "pkcs11:"
_PATH_TEXT = ("token", "object", "manufacturer", "serial")
_PATH_ORDER = ("token", "manufacturer", "serial", "object", "id", "type")
_QUERY_NAMES = {"module-path": "module_path", "pin-source": "pin_source"}
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# RFC 7512 pk11-p-res-avail and pk11-q-res-avail: accepted unencoded on input.
_PATH_VALUE = re.compile(r"^(?:[A-Za-z0-9\-._~:\[\]@!$'()*+,=&]|%[0-9A-Fa-f]{2})*$")
_QUERY_VALUE = re.compile(r"^(?:[A-Za-z0-9\-._~:\[\]@!$'()*+,=/?|]|%[0-9A-Fa-f]{2})*$")


def _bad(reason: str) -> InvalidInput:
    return InvalidInput(f"invalid PKCS#11 URI: {reason}", code="keystore.uri.invalid")


def _encode(raw: bytes, *, keep: bytes = b"") -> str:
    return "".join(chr(b) if b in _UNRESERVED or b in keep else f"%{b:02X}" for b in raw)


def _decode(value: str, *, name: str, pattern: re.Pattern[str]) -> bytes:
    if not pattern.fullmatch(value):
        raise _bad(f"attribute '{name}' has a character that must be percent-encoded")
    out = bytearray()
    index = 0
    while index < len(value):
        if value[index] == "%":
            out.append(int(value[index + 1 : index + 3], 16))
            index += 3
        else:
            out += value[index].encode("ascii")
            index += 1
    return bytes(out)


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(f"attribute '{name}' is not UTF-8") from None


def _pairs(part: str, separator: str) -> list[tuple[str, str]]:
    if not part:
        return []
    pairs = []
    for item in part.split(separator):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _bad(f"'{item}' is not an attribute=value pair")
        pairs.append((name, value))
    return pairs


@dataclass(frozen=True)
class Pkcs11Uri:
    """A PKCS#11 URI naming a token and an object in it.

    Attributes:
        token: Token label.
        object: Object label.
        id: Object ``CKA_ID``.
        type: Object class.
        manufacturer: Token manufacturer.
        serial: Token serial number.
        module_path: PKCS#11 module to load (query attribute).
        pin_source: Where the PIN is, ``file:…`` or ``env:…`` (query attribute).
    """

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: ObjectType | None = None
    manufacturer: str | None = None
    serial: str | None = None
    module_path: str | None = None
    pin_source: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        """Parse a PKCS#11 URI.

        Args:
            text: The URI, starting with ``pkcs11:``.

        Returns:
            The parsed URI.

        Raises:
            InvalidInput: The URI is malformed, too long, repeats or does not support an
                attribute, or carries a PIN value.
        """
        if len(text) > MAX_URI_CHARS:
            raise _bad(f"longer than {MAX_URI_CHARS} characters")
        if text[: len(_SCHEME)].lower() != _SCHEME:
            raise _bad("it does not start with 'pkcs11:'")
        path, _, query = text[len(_SCHEME) :].partition("?")
        fields: dict[str, _Value] = {}
        for name, value in _pairs(path, ";"):
            cls._path_attribute(fields, name, value)
        for name, value in _pairs(query, "&"):
            cls._query_attribute(fields, name, value)
        return cls(**fields)  # type: ignore[arg-type]  # each field checked by the helpers

    @staticmethod
    def _path_attribute(fields: dict[str, _Value], name: str, value: str) -> None:
        if name not in _PATH_ORDER:
            raise _bad(f"path attribute '{name}' is not supported")
        if name in fields:
            raise _bad(f"attribute '{name}' appears more than once")
        raw = _decode(value, name=name, pattern=_PATH_VALUE)
        if name == "id":
            fields[name] = raw
        elif name == "type":
            kind = _text(raw, name)
            if kind not in OBJECT_TYPES:
                raise _bad(f"type '{kind}' is not one of {', '.join(OBJECT_TYPES)}")
            fields[name] = kind
        else:
            fields[name] = _text(raw, name)

    @staticmethod
    def _query_attribute(fields: dict[str, _Value], name: str, value: str) -> None:
        if name == "pin-value":
            raise _bad("'pin-value' is refused: PINs do not go in URIs; use pin-source=file:…")
        field_name = _QUERY_NAMES.get(name)
        if field_name is None:
            raise _bad(f"query attribute '{name}' is not supported")
        if field_name in fields:
            raise _bad(f"attribute '{name}' appears more than once")
        fields[field_name] = _text(_decode(value, name=name, pattern=_QUERY_VALUE), name)

    def __str__(self) -> str:
        path = []
        for name in _PATH_ORDER:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bytes):  # ids are conventionally encoded in full
                path.append(f"{name}={''.join(f'%{byte:02X}' for byte in value)}")
            else:
                path.append(f"{name}={_encode(value.encode('utf-8'), keep=b':@!$()*+,=')}")
        query = []
        for name, field_name in _QUERY_NAMES.items():
            value = getattr(self, field_name)
            if value is not None:
                query.append(f"{name}={_encode(value.encode('utf-8'), keep=b':/@')}")
        text = _SCHEME + ";".join(path)
        return f"{text}?{'&'.join(query)}" if query else text

    def with_query(self, *, module_path: str | None, pin_source: str | None) -> Pkcs11Uri:
        """A copy with the query attributes replaced."""
        return replace(self, module_path=module_path, pin_source=pin_source)
