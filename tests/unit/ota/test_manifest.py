"""The release manifest: canonical round trip and a table of refused manifests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.releasekit import SHA_A, SHA_B, SHA_C
from support.releasekit import sample_manifest as _manifest
from trustfleet.errors import InvalidInput
from trustfleet.ota.manifest import (
    MAX_MANIFEST_BYTES,
    BootSignature,
    ImageRef,
    image_target,
    manifest_target,
    parse_manifest,
    render_manifest,
)


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_manifest(_manifest()))
    doc.update(changes)
    return doc


def test_round_trip_is_canonical() -> None:
    manifest = _manifest()
    data = render_manifest(manifest)
    assert parse_manifest(data) == manifest
    assert render_manifest(parse_manifest(data)) == data
    assert b" " not in data and data.startswith(b'{"boot"')
    assert manifest.delta_from("1.0.0", SHA_C) is manifest.deltas[0]
    assert manifest.delta_from("1.0.0", SHA_A) is None
    assert manifest_target("m", "1.0.0") == "m/1.0.0/release.json"


@given(
    version=st.tuples(*[st.integers(0, 999_999_999)] * 3),
    length=st.integers(0, (1 << 40) - 1),
    signature=st.binary(min_size=8, max_size=160),
)
def test_round_trip_property(version: tuple[int, int, int], length: int, signature: bytes) -> None:
    text = ".".join(map(str, version))
    manifest = _manifest(
        version=text,
        min_version="0.0.0",
        image=ImageRef(target=image_target("m", text), length=length, sha256=SHA_A),
        boot=BootSignature(key_sha256=SHA_B, signature=signature),
        deltas=(),
    )
    assert parse_manifest(render_manifest(manifest)) == manifest


def _bad_delta(**changes: Any) -> dict[str, Any]:
    delta = _doc()["deltas"][0]
    delta.update(changes)
    return _doc(deltas=[delta])


INVALID: dict[str, bytes] = {
    "not-json": b"{not json",
    "not-utf8": b"\xff\xfe",
    "not-an-object": b"[]",
    "too-large": b" " * (MAX_MANIFEST_BYTES + 1),
    "wrong-schema": json.dumps(_doc(schema="trustfleet.release/2")).encode(),
    "unknown-field": json.dumps(_doc(extra=1)).encode(),
    "missing-field": json.dumps({k: v for k, v in _doc().items() if k != "boot"}).encode(),
    "bad-model": json.dumps(_doc(model="a/b")).encode(),
    "bad-version": json.dumps(_doc(version="2.0")).encode(),
    "leading-zero": json.dumps(_doc(version="2.01.0")).encode(),
    "min-above-version": json.dumps(_doc(min_version="3.0.0")).encode(),
    "naive-time": json.dumps(_doc(created_at="2026-11-21T12:00:00")).encode(),
    "bad-time": json.dumps(_doc(created_at="yesterday")).encode(),
    "image-sha-upper": json.dumps(
        _doc(image={"target": "m/2.0.0/image.bin", "length": 1, "sha256": "A" * 64})
    ).encode(),
    "image-negative-length": json.dumps(
        _doc(image={"target": "m/2.0.0/image.bin", "length": -1, "sha256": SHA_A})
    ).encode(),
    "image-bool-length": json.dumps(
        _doc(image={"target": "m/2.0.0/image.bin", "length": True, "sha256": SHA_A})
    ).encode(),
    "image-target-dotdot": json.dumps(
        _doc(image={"target": "m/../../etc/passwd", "length": 1, "sha256": SHA_A})
    ).encode(),
    "image-target-absolute": json.dumps(
        _doc(image={"target": "/etc/passwd", "length": 1, "sha256": SHA_A})
    ).encode(),
    "boot-not-base64": json.dumps(_doc(boot={"key_sha256": SHA_B, "signature": "!!"})).encode(),
    "boot-too-short": json.dumps(_doc(boot={"key_sha256": SHA_B, "signature": "AAAA"})).encode(),
    "delta-bad-from-version": json.dumps(_bad_delta(from_version="x")).encode(),
    "delta-extra-field": json.dumps(_bad_delta(note="hi")).encode(),
    "deltas-not-a-list": json.dumps(_doc(deltas={})).encode(),
    "too-many-deltas": json.dumps(_doc(deltas=_doc()["deltas"] * 33)).encode(),
    "pcr-out-of-range": json.dumps(
        _doc(measurements=[{"pcr": 24, "component": "image", "sha256": SHA_A}])
    ).encode(),
    "bad-component": json.dumps(
        _doc(measurements=[{"pcr": 9, "component": "Image!", "sha256": SHA_A}])
    ).encode(),
}


@pytest.mark.parametrize("data", list(INVALID.values()), ids=list(INVALID))
def test_invalid_manifests_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_manifest(data)
    assert info.value.code == "ota.manifest.invalid"
    assert info.value.hint
