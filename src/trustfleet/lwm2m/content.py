"""LwM2M content formats (TS Core §7.4): decode a payload into values, encode values.

Formats: text/plain (0), CoRE link format (40, see :mod:`trustfleet.lwm2m.links`), opaque (42),
SenML-JSON (110), SenML-CBOR (112) and OMA TLV (11542). Paths are LwM2M paths (``/3303/0/5700``);
``base_path`` is the path the request named. Decoding is bounded by ``max_values`` (and the
caller's bound on the payload's size) and raises only :class:`ContentError` (an
``InvalidInput`` with a code ``lwm2m.content.<format>``).

Typing: TLV and text/plain carry no types, so the resource's type comes from
:mod:`trustfleet.lwm2m.objects`; an unknown resource decodes to ``bytes`` (TLV) or ``str``
(text/plain). ``objlnk`` values are ``"oid:iid"`` text, ``time`` values integer seconds.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence

from trustfleet.lwm2m._senml import (
    decode_senml_cbor,
    decode_senml_json,
    encode_senml_cbor,
    encode_senml_json,
)
from trustfleet.lwm2m._tlv import decode_tlv, encode_tlv
from trustfleet.lwm2m._value import ContentError, Value, parse_path
from trustfleet.lwm2m.objects import LwM2MPath, ResourceType

__all__ = [
    "CBOR",
    "LINK_FORMAT",
    "LWM2M_TLV",
    "OPAQUE",
    "SENML_CBOR",
    "SENML_JSON",
    "TEXT",
    "ContentError",
    "Value",
    "decode_values",
    "encode_values",
]

TEXT = 0
LINK_FORMAT = 40
OPAQUE = 42
CBOR = 60
SENML_JSON = 110
SENML_CBOR = 112
LWM2M_TLV = 11542
_INT_TYPES = (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.TIME)


def decode_values(
    payload: bytes, *, content_format: int, base_path: str, max_values: int = 1024
) -> tuple[Value, ...]:
    """Decode a payload answered for (or written to) ``base_path``.

    Args:
        payload: The (reassembled) body.
        content_format: Its Content-Format number.
        base_path: The LwM2M path of the request (``/3/0``).
        max_values: The most values accepted.

    Returns:
        The values with their full paths.

    Raises:
        ContentError: the payload is malformed, out of bounds or in an unsupported format.
    """
    base = parse_path(base_path, "path")
    if content_format == LWM2M_TLV:
        return decode_tlv(payload, base=base, max_values=max_values)
    if content_format == SENML_JSON:
        return decode_senml_json(payload, base=base, max_values=max_values)
    if content_format == SENML_CBOR:
        return decode_senml_cbor(payload, base=base, max_values=max_values)
    if content_format in (TEXT, OPAQUE):
        if base.depth < 3:
            raise ContentError("text", "a single value needs a resource path")
        if content_format == OPAQUE:
            return (Value(path=str(base), value=payload),)
        return (Value(path=str(base), value=_from_text(base, payload)),)
    raise ContentError("format", f"unsupported content format {content_format}")


def _from_text(path: LwM2MPath, payload: bytes) -> int | float | bool | str | bytes:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError("text", "not UTF-8") from exc
    definition = path.resource()
    kind = ResourceType.STRING if definition is None else definition.type
    try:
        if kind in _INT_TYPES:
            return int(text, 10)
        if kind is ResourceType.FLOAT:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError("not finite")
            return number
        if kind is ResourceType.OPAQUE:
            return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ContentError("text", f"not a {kind.value}") from exc
    if kind is ResourceType.BOOLEAN:
        if text not in ("0", "1"):
            raise ContentError("text", "a boolean is 0 or 1")
        return text == "1"
    return text


def _to_text(value: int | float | bool | str | bytes) -> bytes:
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, bytes):
        return base64.b64encode(value)
    if isinstance(value, float):
        return repr(value).encode("ascii")
    return str(value).encode("utf-8")


def encode_values(values: Sequence[Value], *, content_format: int, base_path: str) -> bytes:
    """Encode values below ``base_path`` in a content format.

    Raises:
        ValueError: a value is not below ``base_path``, or text/plain and opaque get other than
            one value at ``base_path``, or the format is not supported.
    """
    base = parse_path(base_path, "path")
    if content_format == LWM2M_TLV:
        return encode_tlv(values, base=base)
    if content_format == SENML_JSON:
        return encode_senml_json(values, base=base)
    if content_format == SENML_CBOR:
        return encode_senml_cbor(values, base=base)
    if content_format in (TEXT, OPAQUE):
        if len(values) != 1 or parse_path(values[0].path, "path") != base:
            raise ValueError("text/plain and opaque carry one value at the request's path")
        value = values[0].value
        if content_format == OPAQUE:
            if not isinstance(value, bytes):
                raise ValueError("opaque carries bytes")
            return value
        return _to_text(value)
    raise ValueError(f"unsupported content format {content_format}")
