"""LwM2M content formats: TLV, SenML-JSON, SenML-CBOR, text/plain, opaque; objects and paths."""

from __future__ import annotations

import json

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput
from trustfleet.lwm2m import content
from trustfleet.lwm2m.content import ContentError, Value, decode_values, encode_values
from trustfleet.lwm2m.objects import OBJECTS, LwM2MPath, PathError, ResourceType, resource_def

# TS Core §7.4.3.2 example: Device object instance 0, Manufacturer + Available Power Sources.
_TLV_DEVICE = bytes.fromhex(
    "c800144f70656e204d6f62696c6520416c6c69616e6365"  # /3/0/0 "Open Mobile Alliance"
    "86064100014101 05".replace(" ", "")  # /3/0/6 [1, 5]
)


def test_tlv_spec_example_device_instance() -> None:
    values = decode_values(_TLV_DEVICE, content_format=content.LWM2M_TLV, base_path="/3/0")
    assert values == (
        Value(path="/3/0/0", value="Open Mobile Alliance"),
        Value(path="/3/0/6/0", value=1),
        Value(path="/3/0/6/1", value=5),
    )
    assert encode_values(values, content_format=content.LWM2M_TLV, base_path="/3/0") == _TLV_DEVICE


def test_tlv_object_level_and_single_resource() -> None:
    wrapped = bytes([0x08, 0x00, len(_TLV_DEVICE)]) + _TLV_DEVICE
    values = decode_values(wrapped, content_format=content.LWM2M_TLV, base_path="/3")
    assert [v.path for v in values] == ["/3/0/0", "/3/0/6/0", "/3/0/6/1"]
    assert encode_values(values, content_format=content.LWM2M_TLV, base_path="/3") == wrapped
    temp = encode_values(
        [Value(path="/3303/0/5700", value=21.5)],
        content_format=content.LWM2M_TLV,
        base_path="/3303/0/5700",
    )
    assert temp[:3] == bytes([0xE8, 0x16, 0x44]) and len(temp) == 12
    assert decode_values(temp, content_format=content.LWM2M_TLV, base_path="/3303/0/5700") == (
        Value(path="/3303/0/5700", value=21.5),
    )


def test_tlv_typing_bool_objlnk_unknown() -> None:
    values = [
        Value(path="/1/0/6", value=True),
        Value(path="/1/0/10", value="4:0"),
        Value(path="/1/0/1", value=300),
    ]
    data = encode_values(values, content_format=content.LWM2M_TLV, base_path="/1/0")
    assert decode_values(data, content_format=content.LWM2M_TLV, base_path="/1/0") == tuple(values)
    unknown = decode_values(
        bytes.fromhex("c1 07 2a".replace(" ", "")), content_format=11542, base_path="/9999/0"
    )
    assert unknown == (Value(path="/9999/0/7", value=b"*"),)


@pytest.mark.parametrize(
    ("payload", "base"),
    [
        (bytes.fromhex("c8"), "/3/0"),
        (bytes.fromhex("c80005"), "/3/0"),
        (bytes.fromhex("c30001"), "/3/0"),  # integer... of a string resource? (id 0 string: fine)
        (bytes.fromhex("c3090102"), "/3/0"),  # battery level 3 bytes
        (bytes.fromhex("c1060102"), "/1/0"),  # boolean 2 (length says 1, value 0x02)
        (bytes.fromhex("c10002"), "/3/1"),  # outside /3/1? resource at /3/1/0 is fine...
        (bytes.fromhex("410001"), "/3"),  # resource instance with unknown parent
        (bytes.fromhex("08000341000 1".replace(" ", "")), "/3"),  # instance holding an instance
        (bytes.fromhex("c10001"), "/"),  # TLV at the root
        (bytes.fromhex("c1ff01"), "/3/0/0"),  # resource id outside the requested resource
        (bytes.fromhex("c402ff"), "/3/0"),  # string not UTF-8 (serial number)
    ],
    ids=[
        "header-only",
        "value-truncated",
        "string-ok-but-truncated",
        "int-3-bytes",
        "bool-2",
        "path-ok-control",
        "orphan-resource-instance",
        "wrong-nesting",
        "root",
        "outside-resource",
        "string-not-utf8",
    ],
)
def test_tlv_bad_cases(payload: bytes, base: str) -> None:
    if base == "/3/1":  # the control case decodes: a resource of the named instance
        assert decode_values(payload, content_format=11542, base_path=base)[0].path == "/3/1/0"
        return
    with pytest.raises(ContentError):
        decode_values(payload, content_format=content.LWM2M_TLV, base_path=base)


def test_senml_json_wakaama_style() -> None:
    payload = json.dumps(
        [
            {"bn": "/3303/0/", "n": "5700", "v": 21.5, "u": "Cel", "bt": 1700000000},
            {"n": "5701", "vs": "Cel"},
            {"n": "5518", "v": 1700000001},
        ]
    ).encode()
    values = decode_values(payload, content_format=content.SENML_JSON, base_path="/3303/0")
    assert values == (
        Value(path="/3303/0/5700", value=21.5, unit="Cel", time=1700000000.0),
        Value(path="/3303/0/5701", value="Cel", time=1700000000.0),
        Value(path="/3303/0/5518", value=1700000001, time=1700000000.0),
    )
    assert isinstance(values[2].value, int)


@pytest.mark.parametrize(
    "payload",
    [
        b"{}",
        b"[1]",
        b'[{"n":"/3/0/0"}]',
        b'[{"n":"/3/0/0","vs":"a","v":1}]',
        b'[{"n":"/4/0/0","v":1}]',
        b'[{"n":"/3/0/0/","v":1}]',
        b'[{"n":"/3/0/../0","v":1}]',
        b'[{"n":"/3/0/9","v":NaN}]',
        b'[{"n":"/3/0/9","v":true}]',
        b'[{"n":"/3/0/9","v":1,"s":3}]',
        b'[{"n":"/3/0/9","vd":"@@"}]',
        b"[" * 5000,
        b"\xff",
    ],
    ids=[
        "not-array",
        "record-not-map",
        "no-value",
        "two-values",
        "outside-base",
        "trailing-slash",
        "dot-dot",
        "nan",
        "bool-as-v",
        "unknown-field",
        "bad-base64",
        "deep-nesting",
        "not-utf8",
    ],
)
def test_senml_json_bad_cases(payload: bytes) -> None:
    with pytest.raises(ContentError):
        decode_values(payload, content_format=content.SENML_JSON, base_path="/3/0")


def test_senml_cbor_cross_checked_with_cbor2() -> None:
    values = [
        Value(path="/3303/0/5700", value=-3.25, unit="Cel", time=5.0),
        Value(path="/3/0/0", value="ACME"),
        Value(path="/5/0/0", value=b"\x00\x01"),
        Value(path="/1/0/6", value=False),
    ]
    data = encode_values(values, content_format=content.SENML_CBOR, base_path="/")
    foreign = cbor2.loads(data)
    assert foreign[0] == {0: "/3303/0/5700", 2: -3.25, 1: "Cel", 6: 5.0}
    assert foreign[2] == {0: "/5/0/0", 8: b"\x00\x01"}
    assert decode_values(data, content_format=content.SENML_CBOR, base_path="/") == tuple(values)
    theirs = cbor2.dumps([{-2: "/3303/0/", 0: "5700", 2: 22}])
    assert decode_values(theirs, content_format=112, base_path="/3303") == (
        Value(path="/3303/0/5700", value=22.0),
    )


def test_text_and_opaque() -> None:
    assert decode_values(b"21.5", content_format=content.TEXT, base_path="/3303/0/5700") == (
        Value(path="/3303/0/5700", value=21.5),
    )
    assert decode_values(b"1", content_format=0, base_path="/1/0/6")[0].value is True
    assert decode_values(b"abc", content_format=42, base_path="/5/0/0")[0].value == b"abc"
    assert (
        encode_values([Value(path="/1/0/1", value=60)], content_format=0, base_path="/1/0/1")
        == b"60"
    )
    for bad, path in ((b"x", "/3/0/9"), (b"inf", "/3303/0/5700"), (b"2", "/1/0/6"), (b"1", "/3/0")):
        with pytest.raises(ContentError):
            decode_values(bad, content_format=content.TEXT, base_path=path)
    with pytest.raises(ContentError):
        decode_values(b"1", content_format=9999, base_path="/3/0/9")


def test_objects_and_paths() -> None:
    assert set(OBJECTS) >= {0, 1, 3, 4, 5, 6, 7, 3303, 31024}
    definition = resource_def(3303, 5700)
    assert definition is not None and definition.type is ResourceType.FLOAT
    assert resource_def(3, 4) is not None and resource_def(3, 99) is None
    path = LwM2MPath.parse("/3/0/6/1")
    assert (path.object_id, path.instance_id, path.resource_id, path.resource_instance_id) == (
        3,
        0,
        6,
        1,
    )
    assert str(LwM2MPath.parse("/")) == "/" and LwM2MPath.parse("5").depth == 1
    assert LwM2MPath.of_segments(("3", "0")).contains(path)
    for bad in ("/3/0/0/0/0", "/65536", "/a", "//3", "/3/", "/-1", "/" + "1" * 30):
        with pytest.raises(PathError):
            LwM2MPath.parse(bad)


_typed = st.one_of(
    st.tuples(st.just("/3/0/9"), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)),
    st.tuples(st.just("/3303/0/5700"), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("/1/0/6"), st.booleans()),
    st.tuples(st.just("/3/0/0"), st.text(max_size=40)),
    st.tuples(st.just("/5/0/0"), st.binary(max_size=40)),
)


@pytest.mark.parametrize("fmt", [content.SENML_JSON, content.SENML_CBOR])
@given(items=st.lists(_typed, min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_round_trips(fmt: int, items: list[tuple[str, object]]) -> None:
    values = [Value(path=p, value=v) for p, v in items]  # type: ignore[arg-type]  # strategies
    data = encode_values(values, content_format=fmt, base_path="/")
    assert decode_values(data, content_format=fmt, base_path="/") == tuple(values)


_device = st.lists(
    st.one_of(
        st.tuples(st.just(9), st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)),
        st.tuples(st.just(0), st.text(max_size=300)),
        st.tuples(st.just(6), st.lists(st.integers(min_value=0, max_value=7), max_size=4)),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda t: t[0],
)


@given(instance=st.integers(min_value=0, max_value=65535), items=_device, wrap=st.booleans())
def test_tlv_round_trip(instance: int, items: list[tuple[int, object]], wrap: bool) -> None:
    values = []
    for rid, value in items:
        if isinstance(value, list):
            values += [Value(path=f"/3/{instance}/{rid}/{i}", value=v) for i, v in enumerate(value)]
        else:
            values.append(Value(path=f"/3/{instance}/{rid}", value=value))  # type: ignore[arg-type]
    base = "/3" if wrap else f"/3/{instance}"
    data = encode_values(values, content_format=content.LWM2M_TLV, base_path=base)
    assert decode_values(data, content_format=content.LWM2M_TLV, base_path=base) == tuple(values)


@pytest.mark.parametrize("fmt", [content.LWM2M_TLV, content.SENML_JSON, content.SENML_CBOR, 0])
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_only_content_error(fmt: int, data: bytes) -> None:
    try:
        decode_values(
            data, content_format=fmt, base_path="/3/0/9" if fmt == 0 else "/3", max_values=16
        )
    except ContentError as exc:
        assert isinstance(exc, InvalidInput)
