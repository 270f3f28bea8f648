"""SenML (RFC 8428) in JSON (110) and CBOR (112) as LwM2M 1.1 uses it (TS Core §7.4.5/7.4.6).

A record's full name is ``bn + n`` and must be an LwM2M path at or below the request's path.
Values: ``v`` number (an integer when the resource is integer-typed and the number integral),
``vs`` string, ``vb`` boolean, ``vd`` base64url data (JSON) or a byte string (CBOR), ``vlo``
object link ``"oid:iid"``. Time is ``bt + t`` as sent (relative times are not rebased);
``u``/``bu`` give the unit. Other fields (``bv``, ``s``, ``ut``, ``bver``) are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence

from trustfleet.lwm2m import _cbor
from trustfleet.lwm2m._value import ContentError, Scalar, Value, parse_path
from trustfleet.lwm2m.objects import LwM2MPath, ResourceType

__all__ = ["decode_senml_cbor", "decode_senml_json", "encode_senml_cbor", "encode_senml_json"]

# RFC 8428 §6 CBOR labels, and the LwM2M "vlo" label (a text key in both encodings).
_CBOR_LABELS = {-2: "bn", -3: "bt", -4: "bu", 0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 6: "t"}
_CBOR_LABELS_BACK = {name: label for label, name in _CBOR_LABELS.items()}
_VALUE_KEYS = ("v", "vs", "vb", "vd", "vlo")
_KNOWN = frozenset({"bn", "bt", "bu", "n", "u", "t", *_VALUE_KEYS})
_INT_TYPES = (ResourceType.INTEGER, ResourceType.UNSIGNED, ResourceType.TIME)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def decode_senml_json(
    payload: bytes, *, base: LwM2MPath, max_values: int, max_depth: int = 4
) -> tuple[Value, ...]:
    """Decode SenML-JSON records."""
    if payload.count(b"[") + payload.count(b"{") > max_values * max_depth + 2:
        raise ContentError("senml_json", "too many records")
    try:
        records = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ContentError("senml_json", "not JSON") from exc
    return _resolve(records, base=base, max_values=max_values, fmt="senml_json")


def decode_senml_cbor(payload: bytes, *, base: LwM2MPath, max_values: int) -> tuple[Value, ...]:
    """Decode SenML-CBOR records (integer labels of RFC 8428 §6)."""
    try:
        items = _cbor.loads(payload, max_depth=3, max_items=max_values * 16 + 1)
    except _cbor.CborError as exc:
        raise ContentError("senml_cbor", exc.reason) from exc
    if not isinstance(items, list):
        raise ContentError("senml_cbor", "not an array of records")
    records = []
    for item in items:
        if not isinstance(item, dict):
            raise ContentError("senml_cbor", "record is not a map")
        record = {}
        for key, value in item.items():
            name = _CBOR_LABELS.get(key) if isinstance(key, int) else key
            if key == 8:
                name = "vd"
            if name is None:
                raise ContentError("senml_cbor", f"unsupported label {key}")
            record[name] = value
        records.append(record)
    return _resolve(records, base=base, max_values=max_values, fmt="senml_cbor")


def _resolve(records: object, *, base: LwM2MPath, max_values: int, fmt: str) -> tuple[Value, ...]:
    if not isinstance(records, list):
        raise ContentError(fmt, "not an array of records")
    if len(records) > max_values:
        raise ContentError(fmt, f"more than {max_values} records")
    out = []
    base_name, base_time, base_unit = "", 0.0, None
    for record in records:
        if not isinstance(record, dict) or not set(record) <= _KNOWN:
            raise ContentError(fmt, "record is not a map of supported fields")
        base_name = _text(record.get("bn", base_name), fmt)
        base_time = _number(record.get("bt", base_time), fmt)
        base_unit = record.get("bu", base_unit)
        path = parse_path(base_name + _text(record.get("n", ""), fmt), fmt)
        if path.depth < 3 or not base.contains(path):
            raise ContentError(fmt, "name is not a resource below the requested path")
        present = [key for key in _VALUE_KEYS if key in record]
        if len(present) != 1:
            raise ContentError(fmt, "record has not exactly one value")
        unit = record.get("u", base_unit)
        if unit is not None and not isinstance(unit, str):
            raise ContentError(fmt, "unit is not text")
        time = base_time + _number(record.get("t", 0.0), fmt)
        value = _value(path, present[0], record[present[0]], fmt)
        out.append(Value(path=str(path), value=value, unit=unit, time=time or None))
    return tuple(out)


def _text(value: object, fmt: str) -> str:
    if not isinstance(value, str) or len(value) > 255:
        raise ContentError(fmt, "name is not text")
    return value


def _number(value: object, fmt: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ContentError(fmt, "time is not a finite number")
    return float(value)


def _value(path: LwM2MPath, key: str, raw: object, fmt: str) -> Scalar:
    definition = path.resource()
    if key == "v":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ContentError(fmt, "v is not a number")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise ContentError(fmt, "v is not finite")
        integral = isinstance(raw, int) or raw.is_integer()
        if definition is not None and definition.type in _INT_TYPES and integral:
            return int(raw)
        return float(raw) if definition is not None else raw
    if key == "vb":
        if not isinstance(raw, bool):
            raise ContentError(fmt, "vb is not a boolean")
        return raw
    if key == "vd":
        return _data(raw, fmt)
    if not isinstance(raw, str):
        raise ContentError(fmt, f"{key} is not text")
    return raw


def _data(raw: object, fmt: str) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if not isinstance(raw, str):
        raise ContentError(fmt, "vd is not data")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContentError(fmt, "vd is not base64url") from exc


def _records(values: Sequence[Value], *, base: LwM2MPath) -> list[dict[str, object]]:
    paths = [parse_path(item.path, "senml") for item in values]
    if not all(base.contains(path) for path in paths):
        raise ValueError(f"a value is not below {base}")
    # bn is the base path when every value lies strictly below it; otherwise names are full.
    base_name = f"{base}/" if base.depth and all(p.depth > base.depth for p in paths) else ""
    out: list[dict[str, object]] = []
    for path, item in zip(paths, values, strict=True):
        record: dict[str, object] = {"bn": base_name} if base_name and not out else {}
        record["n"] = str(path)[len(base_name) :] if base_name else str(path)
        record.update(_value_field(path, item.value))
        if item.unit is not None:
            record["u"] = item.unit
        if item.time is not None:
            record["t"] = item.time
        out.append(record)
    return out


def _value_field(path: LwM2MPath, value: Scalar) -> Mapping[str, object]:
    definition = path.resource()
    if isinstance(value, bool):
        return {"vb": value}
    if isinstance(value, int | float):
        return {"v": value}
    if isinstance(value, bytes):
        return {"vd": value}
    if definition is not None and definition.type is ResourceType.OBJLNK:
        return {"vlo": value}
    return {"vs": value}


def encode_senml_json(values: Sequence[Value], *, base: LwM2MPath) -> bytes:
    """Encode values as SenML-JSON (``bn`` on the first record, ``n`` relative to it)."""
    records = _records(values, base=base)
    for record in records:
        data = record.get("vd")
        if isinstance(data, bytes):
            record["vd"] = base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")
    return json.dumps(records, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_senml_cbor(values: Sequence[Value], *, base: LwM2MPath) -> bytes:
    """Encode values as SenML-CBOR (integer labels; ``vd`` label 8, ``vlo`` as text)."""
    records = []
    for record in _records(values, base=base):
        mapped: dict[object, object] = {}
        for name, value in record.items():
            label: object = 8 if name == "vd" else _CBOR_LABELS_BACK.get(name, name)
            mapped[label] = value
        records.append(mapped)
    return _cbor.dumps(records)
