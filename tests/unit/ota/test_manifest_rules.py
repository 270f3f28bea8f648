"""Release manifests: every field's bound at and past its limit, with the exact refusal.

A refused manifest is always ``InvalidInput`` with code ``ota.manifest.invalid``; the message
names the field and the rule, so each case below pins the exact message.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from support.releasekit import NOW, SHA_A, SHA_B, SHA_C
from support.releasekit import sample_manifest as _manifest
from trustfleet.errors import InvalidInput
from trustfleet.ota.manifest import (
    MAX_MANIFEST_BYTES,
    SCHEMA,
    BootSignature,
    DeltaRef,
    ImageRef,
    Measurement,
    ReleaseManifest,
    delta_target,
    image_target,
    manifest_target,
    parse_manifest,
    render_manifest,
)

CREATED = NOW


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_manifest(_manifest()))
    return doc


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _edit(path: str, value: Any) -> bytes:
    """The good manifest with one field (``a.b`` or ``deltas.0.x``) set (or deleted: DELETE)."""
    doc = _doc()
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return _bytes(doc)


DELETE = object()


def _refusal(data: bytes, **kwargs: Any) -> str:
    with pytest.raises(InvalidInput) as caught:
        parse_manifest(data, **kwargs)
    assert caught.value.code == "ota.manifest.invalid"
    assert caught.value.hint == "rebuild the release with 'trustfleet release build'"
    prefix = "release manifest refused: "
    assert caught.value.message.startswith(prefix)
    return caught.value.message.removeprefix(prefix)


def _accepted(data: bytes) -> ReleaseManifest:
    return parse_manifest(data)


# --- target paths and the canonical form ------------------------------------------------------


def test_target_paths() -> None:
    assert manifest_target("m", "1.2.3") == "m/1.2.3/release.json"
    assert image_target("m", "1.2.3") == "m/1.2.3/image.bin"
    assert delta_target("m", "1.2.3", "1.0.0") == "m/1.2.3/from-1.0.0.delta"


def test_render_is_the_exact_canonical_json() -> None:
    signature = base64.b64encode(b"\x30" * 70).decode()
    expected = (
        '{"boot":{"key_sha256":"' + SHA_B + '","signature":"' + signature + '"},'
        '"created_at":"2026-11-21T12:00:00Z",'
        '"deltas":[{"from_sha256":"' + SHA_C + '","from_version":"1.0.0","length":123,'
        '"sha256":"' + SHA_B + '","target":"sim-v1/2.0.0/from-1.0.0.delta"}],'
        '"image":{"length":1048576,"sha256":"' + SHA_A + '","target":"sim-v1/2.0.0/image.bin"},'
        '"measurements":[{"component":"image","pcr":9,"sha256":"' + SHA_A + '"}],'
        '"min_version":"1.0.0","model":"sim-v1","schema":"trustfleet.release/1",'
        '"version":"2.0.0"}'
    )
    assert render_manifest(_manifest()) == expected.encode()
    assert SCHEMA == "trustfleet.release/1"


def test_render_writes_utc_to_the_second() -> None:
    local = datetime(2026, 11, 21, 14, 0, 30, 999_999, tzinfo=timezone(timedelta(hours=2)))
    doc = json.loads(render_manifest(_manifest(created_at=local)))
    assert doc["created_at"] == "2026-11-21T12:00:30Z"


def test_parse_reads_every_field() -> None:
    assert parse_manifest(render_manifest(_manifest())) == _manifest()
    empty = _manifest(deltas=(), measurements=())
    assert parse_manifest(render_manifest(empty)) == empty


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T12:00:00Z", CREATED),
        ("2026-11-21T12:00:00+00:00", CREATED),
        ("2026-11-21T14:00:00+02:00", CREATED),
        ("2026-11-21T11:00:00-01:00", CREATED),
    ],
)
def test_created_at_is_read_in_utc(text: str, expected: datetime) -> None:
    created = _accepted(_edit("created_at", text)).created_at
    assert created == expected and created.tzinfo is UTC


def test_deltas_and_measurements_default_to_none() -> None:
    manifest = ReleaseManifest(
        model="m",
        version="1.0.0",
        min_version="1.0.0",
        created_at=CREATED,
        image=ImageRef(target="t", length=1, sha256=SHA_A),
        boot=BootSignature(key_sha256=SHA_A, signature=b"12345678"),
    )
    assert manifest.deltas == () and manifest.measurements == ()
    assert parse_manifest(render_manifest(manifest)) == manifest


def test_versions_parse_for_comparison() -> None:
    manifest = _manifest(version="10.2.3", min_version="9.0.0")
    assert manifest.version_key == (10, 2, 3)
    assert manifest.min_version_key == (9, 0, 0)


def test_min_version_equal_to_version_is_accepted() -> None:
    manifest = _accepted(_edit("min_version", "2.0.0"))
    assert manifest.min_version == manifest.version == "2.0.0"


@pytest.mark.parametrize("min_version", ["2.0.1", "2.1.0", "3.0.0", "10.0.0"])
def test_min_version_above_version_is_refused(min_version: str) -> None:
    assert _refusal(_edit("min_version", min_version)) == "min_version is above version"


def test_min_version_is_compared_numerically() -> None:
    doc = _doc()
    doc["version"], doc["min_version"] = "10.0.0", "9.0.0"
    manifest = _accepted(_bytes(doc))
    assert (manifest.version, manifest.min_version) == ("10.0.0", "9.0.0")
    doc["version"], doc["min_version"] = "9.0.0", "10.0.0"
    assert _refusal(_bytes(doc)) == "min_version is above version"


def test_delta_from_needs_both_version_and_hash() -> None:
    manifest = _manifest()
    delta = manifest.deltas[0]
    assert manifest.delta_from("1.0.0", SHA_C) is delta
    assert manifest.delta_from("1.0.0", SHA_A) is None
    assert manifest.delta_from("1.0.1", SHA_C) is None
    assert manifest.with_deltas(()).delta_from("1.0.0", SHA_C) is None
    assert manifest.with_deltas(()).deltas == ()
    assert manifest.with_deltas((delta, delta)).deltas == (delta, delta)


@pytest.mark.parametrize(
    "value",
    [
        _manifest(),
        ImageRef(target="t", length=1, sha256=SHA_A),
        BootSignature(key_sha256=SHA_A, signature=b"12345678"),
        DeltaRef(target="t", from_version="1.0.0", from_sha256=SHA_A, length=1, sha256=SHA_A),
        Measurement(pcr=1, component="c", sha256=SHA_A),
    ],
    ids=lambda v: type(v).__name__,
)
def test_parsed_values_are_frozen_slotted_keyword_only(value: Any) -> None:
    first = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, getattr(value, first))
    assert not hasattr(value, "__dict__")
    fields = [getattr(value, f.name) for f in dataclasses.fields(value)]
    with pytest.raises(TypeError):
        type(value)(*fields)


# --- size --------------------------------------------------------------------------------------


def test_manifest_of_exactly_the_size_bound_is_accepted() -> None:
    data = render_manifest(_manifest())
    padded = data + b" " * (MAX_MANIFEST_BYTES - len(data))
    assert MAX_MANIFEST_BYTES == 65536 and len(padded) == 65536
    assert parse_manifest(padded) == _manifest()
    assert _refusal(padded + b" ") == "larger than 65536 bytes"


def test_max_bytes_argument_bounds_the_size() -> None:
    data = render_manifest(_manifest())
    assert parse_manifest(data, max_bytes=len(data)) == _manifest()
    size = len(data) - 1
    assert _refusal(data, max_bytes=size) == f"larger than {size} bytes"


# --- refusals, one field at a time ---------------------------------------------------------

LONG_TARGET = "m/" + "t" * 253  # 255 characters


def _many(name: str, count: int) -> bytes:
    doc = _doc()
    doc[name] = doc[name] * count
    return _bytes(doc)


def test_exactly_32_deltas_and_measurements_are_accepted() -> None:
    assert len(_accepted(_many("deltas", 32)).deltas) == 32
    assert len(_accepted(_many("measurements", 32)).measurements) == 32


REFUSED: list[tuple[str, bytes, str]] = [
    ("not-json", b"{not json", "not UTF-8 JSON"),
    ("not-utf8", b'"\xff"', "not UTF-8 JSON"),
    ("not-an-object", b"[]", "'manifest' is not an object"),
    ("unknown-field", _edit("extra", 1), "'manifest' has unknown fields ['extra']"),
    ("missing-field", _edit("boot", DELETE), "'manifest' lacks ['boot']"),
    ("wrong-schema", _edit("schema", "trustfleet.release/2"), f"schema is not '{SCHEMA}'"),
    ("bad-model", _edit("model", "a/b"), "model 'a/b' is not valid"),
    ("model-not-text", _edit("model", 7), "model '7' is not valid"),
    ("bad-version", _edit("version", "2.0"), "'2.0' is not a release version"),
    ("bad-min-version", _edit("min_version", "1"), "'1' is not a release version"),
    ("naive-time", _edit("created_at", "2026-11-21T12:00:00"), "'created_at' has no time zone"),
    ("bad-time", _edit("created_at", "yesterday"), "'created_at' is not an ISO 8601 time"),
    ("time-number", _edit("created_at", 5), "'created_at' is not an ISO 8601 time"),
    ("image-not-object", _edit("image", []), "'image' is not an object"),
    ("image-extra", _edit("image.x", 1), "'image' has unknown fields ['x']"),
    ("image-lacks", _edit("image.sha256", DELETE), "'image' lacks ['sha256']"),
    ("image-target-empty", _edit("image.target", ""), "'image.target' is not a target path"),
    (
        "image-target-256",
        _edit("image.target", LONG_TARGET + "t"),
        "'image.target' is not a target path",
    ),
    ("image-target-abs", _edit("image.target", "/m/i"), "'image.target' is not a target path"),
    ("image-target-up", _edit("image.target", "m/../i"), "'image.target' is not a target path"),
    ("image-target-up-first", _edit("image.target", "../i"), "'image.target' is not a target path"),
    ("image-target-up-last", _edit("image.target", "m/.."), "'image.target' is not a target path"),
    ("image-target-only-up", _edit("image.target", ".."), "'image.target' is not a target path"),
    ("image-target-number", _edit("image.target", 5), "'image.target' is not a target path"),
    (
        "image-length-neg",
        _edit("image.length", -1),
        "'image.length' must be a non-negative integer",
    ),
    (
        "image-length-2^40",
        _edit("image.length", 1 << 40),
        "'image.length' must be a non-negative integer",
    ),
    (
        "image-length-bool",
        _edit("image.length", True),
        "'image.length' must be a non-negative integer",
    ),
    (
        "image-length-text",
        _edit("image.length", "5"),
        "'image.length' must be a non-negative integer",
    ),
    (
        "image-length-float",
        _edit("image.length", 5.0),
        "'image.length' must be a non-negative integer",
    ),
    (
        "image-sha-upper",
        _edit("image.sha256", "A" * 64),
        "'image.sha256' must be 64 lowercase hex digits",
    ),
    (
        "image-sha-63",
        _edit("image.sha256", "a" * 63),
        "'image.sha256' must be 64 lowercase hex digits",
    ),
    (
        "image-sha-65",
        _edit("image.sha256", "a" * 65),
        "'image.sha256' must be 64 lowercase hex digits",
    ),
    (
        "image-sha-g",
        _edit("image.sha256", "g" * 64),
        "'image.sha256' must be 64 lowercase hex digits",
    ),
    (
        "image-sha-number",
        _edit("image.sha256", 1),
        "'image.sha256' must be 64 lowercase hex digits",
    ),
    ("boot-not-object", _edit("boot", "x"), "'boot' is not an object"),
    ("boot-extra", _edit("boot.x", 1), "'boot' has unknown fields ['x']"),
    ("boot-not-base64", _edit("boot.signature", "!!!!"), "'boot.signature' is not base64"),
    ("boot-sig-number", _edit("boot.signature", 5), "'boot.signature' is not base64"),
    (
        "boot-sig-7-bytes",
        _edit("boot.signature", base64.b64encode(b"1234567").decode()),
        "'boot.signature' has an impossible length",
    ),
    (
        "boot-sig-161-bytes",
        _edit("boot.signature", base64.b64encode(b"s" * 161).decode()),
        "'boot.signature' has an impossible length",
    ),
    (
        "boot-key-sha",
        _edit("boot.key_sha256", "B" * 64),
        "'boot.key_sha256' must be 64 lowercase hex digits",
    ),
    ("deltas-not-list", _edit("deltas", {}), "'deltas' must be a list of at most 32 items"),
    ("deltas-33", _many("deltas", 33), "'deltas' must be a list of at most 32 items"),
    ("delta-not-object", _edit("deltas", [1]), "'delta' is not an object"),
    ("delta-extra", _edit("deltas.0.note", "hi"), "'delta' has unknown fields ['note']"),
    ("delta-target", _edit("deltas.0.target", "/x"), "'delta.target' is not a target path"),
    (
        "delta-from-version",
        _edit("deltas.0.from_version", "x"),
        "'delta.from_version': 'x' is not a release version",
    ),
    (
        "delta-from-sha",
        _edit("deltas.0.from_sha256", "c" * 63),
        "'delta.from_sha256' must be 64 lowercase hex digits",
    ),
    ("delta-length", _edit("deltas.0.length", -1), "'delta.length' must be a non-negative integer"),
    ("delta-sha", _edit("deltas.0.sha256", None), "'delta.sha256' must be 64 lowercase hex digits"),
    (
        "measurements-not-list",
        _edit("measurements", "x"),
        "'measurements' must be a list of at most 32 items",
    ),
    (
        "measurements-33",
        _many("measurements", 33),
        "'measurements' must be a list of at most 32 items",
    ),
    ("measurement-not-object", _edit("measurements", [[]]), "'measurement' is not an object"),
    ("measurement-extra", _edit("measurements.0.x", 1), "'measurement' has unknown fields ['x']"),
    ("pcr-24", _edit("measurements.0.pcr", 24), "'measurement.pcr' must be 0-23"),
    ("pcr-negative", _edit("measurements.0.pcr", -1), "'measurement.pcr' must be 0-23"),
    ("pcr-bool", _edit("measurements.0.pcr", True), "'measurement.pcr' must be 0-23"),
    ("pcr-text", _edit("measurements.0.pcr", "9"), "'measurement.pcr' must be 0-23"),
    (
        "component-bad",
        _edit("measurements.0.component", "Image!"),
        "'measurement.component' is not a component name",
    ),
    (
        "component-33",
        _edit("measurements.0.component", "c" * 33),
        "'measurement.component' is not a component name",
    ),
    (
        "component-empty",
        _edit("measurements.0.component", ""),
        "'measurement.component' is not a component name",
    ),
    (
        "component-number",
        _edit("measurements.0.component", 1),
        "'measurement.component' is not a component name",
    ),
    (
        "measurement-sha",
        _edit("measurements.0.sha256", "A" * 64),
        "'sha256' must be 64 lowercase hex digits",
    ),
]


@pytest.mark.parametrize(("data", "why"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_manifest_says_why(data: bytes, why: str) -> None:
    assert _refusal(data) == why


ACCEPTED: list[tuple[str, bytes, Callable[[ReleaseManifest], object], object]] = [
    ("target-255", _edit("image.target", LONG_TARGET), lambda m: m.image.target, LONG_TARGET),
    ("target-one-char", _edit("image.target", "t"), lambda m: m.image.target, "t"),
    (
        "target-dots-inside",
        _edit("image.target", "m/a..b/..c"),
        lambda m: m.image.target,
        "m/a..b/..c",
    ),
    ("length-0", _edit("image.length", 0), lambda m: m.image.length, 0),
    ("length-max", _edit("image.length", (1 << 40) - 1), lambda m: m.image.length, (1 << 40) - 1),
    (
        "sig-8-bytes",
        _edit("boot.signature", base64.b64encode(b"12345678").decode()),
        lambda m: m.boot.signature,
        b"12345678",
    ),
    (
        "sig-160-bytes",
        _edit("boot.signature", base64.b64encode(b"s" * 160).decode()),
        lambda m: m.boot.signature,
        b"s" * 160,
    ),
    ("pcr-0", _edit("measurements.0.pcr", 0), lambda m: m.measurements[0].pcr, 0),
    ("pcr-23", _edit("measurements.0.pcr", 23), lambda m: m.measurements[0].pcr, 23),
    (
        "component-32",
        _edit("measurements.0.component", "c" * 32),
        lambda m: m.measurements[0].component,
        "c" * 32,
    ),
    (
        "component-chars",
        _edit("measurements.0.component", "a-z_0.9"),
        lambda m: m.measurements[0].component,
        "a-z_0.9",
    ),
    (
        "hex-digits",
        _edit("image.sha256", "0123456789abcdef" * 4),
        lambda m: m.image.sha256,
        "0123456789abcdef" * 4,
    ),
    (
        "from-version",
        _edit("deltas.0.from_version", "0.0.0"),
        lambda m: m.deltas[0].from_version,
        "0.0.0",
    ),
]


@pytest.mark.parametrize(
    ("data", "read", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_values_at_their_bounds_are_accepted(
    data: bytes, read: Callable[[ReleaseManifest], object], expected: object
) -> None:
    assert read(parse_manifest(data)) == expected
