"""OMA LwM2M TLV (content format 11542, TS Core §7.4.3): decode and encode, typed by objects.py."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from trustfleet.lwm2m._value import ContentError, Scalar, Value, parse_path
from trustfleet.lwm2m.objects import LwM2MPath, ResourceType

__all__ = ["decode_tlv", "encode_tlv"]

_FMT = "tlv"
OBJECT_INSTANCE, RESOURCE_INSTANCE, MULTIPLE_RESOURCE, RESOURCE = 0, 1, 2, 3
_INT_TYPES = (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.TIME)
# The path depth an entry of each kind names: instance (2), resource (3), resource instance (4).
_DEPTH_OF = {OBJECT_INSTANCE: 2, RESOURCE: 3, MULTIPLE_RESOURCE: 3, RESOURCE_INSTANCE: 4}


def _entries(data: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        head = data[pos]
        id_len = 2 if head & 0x20 else 1
        len_type = (head >> 3) & 0x3
        header_end = pos + 1 + id_len + len_type
        if header_end > len(data):
            raise ContentError(_FMT, "header truncated")
        ident = int.from_bytes(data[pos + 1 : pos + 1 + id_len], "big")
        length = (
            head & 0x7 if len_type == 0 else int.from_bytes(data[pos + 1 + id_len : header_end])
        )
        if header_end + length > len(data):
            raise ContentError(_FMT, "value truncated")
        out.append((head >> 6, ident, data[header_end : header_end + length]))
        pos = header_end + length
    return out


def _typed(path: LwM2MPath, raw: bytes) -> Scalar:
    definition = path.resource()
    kind = ResourceType.OPAQUE if definition is None else definition.type
    if kind in _INT_TYPES:
        if len(raw) not in (1, 2, 4, 8):
            raise ContentError(_FMT, "integer length not 1, 2, 4 or 8")
        return int.from_bytes(raw, "big", signed=True)
    if kind is ResourceType.FLOAT:
        if len(raw) not in (4, 8):
            raise ContentError(_FMT, "float length not 4 or 8")
        return float(struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0])
    if kind is ResourceType.BOOLEAN:
        if raw not in (b"\x00", b"\x01"):
            raise ContentError(_FMT, "boolean not one byte 0 or 1")
        return raw == b"\x01"
    if kind is ResourceType.OBJLNK:
        if len(raw) != 4:
            raise ContentError(_FMT, "objlnk not 4 bytes")
        return f"{int.from_bytes(raw[:2])}:{int.from_bytes(raw[2:])}"
    if kind in (ResourceType.STRING, ResourceType.CORELNK):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContentError(_FMT, "string is not UTF-8") from exc
    return raw


def decode_tlv(payload: bytes, *, base: LwM2MPath, max_values: int) -> tuple[Value, ...]:
    """Decode a TLV payload answered for ``base`` (an object, instance, resource or instance)."""
    if base.depth == 0:
        raise ContentError(_FMT, "TLV needs an object path")
    out: list[Value] = []
    _walk(payload, parent=None, base=base, out=out, max_values=max_values)
    return tuple(out)


def _walk(
    data: bytes, *, parent: LwM2MPath | None, base: LwM2MPath, out: list[Value], max_values: int
) -> None:
    # Top-level entries (parent None) take their parent ids from the base path; nested entries
    # must sit exactly one level below their parent. Depth is bounded by the kinds (at most 3).
    for kind, ident, body in _entries(data):
        depth = _DEPTH_OF[kind]
        if parent is None:
            if depth - 1 > base.depth:
                raise ContentError(_FMT, "entry below an unknown parent")
            here = LwM2MPath(base.ids[: depth - 1])
        elif depth == parent.depth + 1:
            here = parent
        else:
            raise ContentError(_FMT, "entry at the wrong level")
        path = here.child(ident)
        if not (base.contains(path) or path.contains(base)):
            raise ContentError(_FMT, "entry outside the requested path")
        if kind in (OBJECT_INSTANCE, MULTIPLE_RESOURCE):
            _walk(body, parent=path, base=base, out=out, max_values=max_values)
            continue
        if len(out) >= max_values:
            raise ContentError(_FMT, f"more than {max_values} values")
        out.append(Value(path=str(path), value=_typed(path, body)))


def _header(kind: int, ident: int, length: int) -> bytes:
    id_bytes = ident.to_bytes(2 if ident > 0xFF else 1, "big")
    if length < 8:
        len_type, len_bytes = 0, b""
    else:
        size = (length.bit_length() + 7) // 8
        if size > 3:
            raise ValueError("a TLV value is below 16 MiB")
        len_type, len_bytes = size, length.to_bytes(size, "big")
    head = (
        kind << 6 | (0x20 if ident > 0xFF else 0) | len_type << 3 | (length if len_type == 0 else 0)
    )
    return bytes([head]) + id_bytes + len_bytes


def _raw(path: LwM2MPath, value: Scalar) -> bytes:
    definition = path.resource()
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        for size in (1, 2, 4, 8):
            if -(1 << (8 * size - 1)) <= value < 1 << (8 * size - 1):
                return value.to_bytes(size, "big", signed=True)
        raise ValueError("a TLV integer fits in 64 bits")
    if isinstance(value, float):
        return struct.pack(">d", value)
    if isinstance(value, str):
        if definition is not None and definition.type is ResourceType.OBJLNK:
            oid, _, iid = value.partition(":")
            return int(oid).to_bytes(2, "big") + int(iid).to_bytes(2, "big")
        return value.encode("utf-8")
    return value


def encode_tlv(values: Sequence[Value], *, base: LwM2MPath) -> bytes:
    """Encode values below ``base`` as TLV (nested by object instance and multiple resource)."""
    paths = [(parse_path(v.path, _FMT), v.value) for v in values]
    for path, _ in paths:
        if path.depth < 3 or not base.contains(path) or base.depth == 0:
            raise ValueError(f"{path} is not a resource below {base}")
    return _encode_level(paths, depth={0: 1, 1: 1, 2: 2, 3: 2}.get(base.depth, 3))


def _encode_level(paths: list[tuple[LwM2MPath, Scalar]], *, depth: int) -> bytes:
    # Emit entries for the ids at index ``depth`` (1 instance, 2 resource, 3 resource instance).
    out = bytearray()
    groups: dict[int, list[tuple[LwM2MPath, Scalar]]] = {}
    for path, value in paths:
        groups.setdefault(path.ids[depth], []).append((path, value))
    for ident, members in groups.items():
        if depth == 1:
            out += _wrap(OBJECT_INSTANCE, ident, _encode_level(members, depth=2))
        elif depth == 2 and members[0][0].depth == 4:
            out += _wrap(MULTIPLE_RESOURCE, ident, _encode_level(members, depth=3))
        else:
            kind = RESOURCE if depth == 2 else RESOURCE_INSTANCE
            for path, value in members:
                out += _wrap(kind, ident, _raw(path, value))
    return bytes(out)


def _wrap(kind: int, ident: int, body: bytes) -> bytes:
    return _header(kind, ident, len(body)) + body
