"""Reference values: release manifests, image lookups, challenge and evidence messages."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.attestation import (
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    encode_challenge,
    load_ak_public_key,
    make_challenge,
    measure_identity,
    release_reference_from_manifest,
)
from trustfleet.errors import InvalidInput

IMAGE = hashlib.sha256(b"image").digest()
MANIFEST: dict[str, Any] = {
    "schema": "trustfleet.release/1",
    "model": "sim-v1",
    "version": "2.0.0",
    "measurements": [{"pcr": 9, "component": "image", "sha256": IMAGE.hex()}],
}


def test_release_reference_from_manifest() -> None:
    assert release_reference_from_manifest(MANIFEST) == ReleaseReference(
        model="sim-v1", version="2.0.0", image_sha256=IMAGE
    )


BAD_MANIFESTS: list[tuple[str, dict[str, Any]]] = [
    ("no-model", {**MANIFEST, "model": None}),
    ("no-measurements", {**MANIFEST, "measurements": None}),
    ("no-image", {**MANIFEST, "measurements": []}),
    ("image-on-pcr-8", {**MANIFEST, "measurements": [{**MANIFEST["measurements"][0], "pcr": 8}]}),
    ("two-images", {**MANIFEST, "measurements": MANIFEST["measurements"] * 2}),
    (
        "digest-not-hex",
        {**MANIFEST, "measurements": [{**MANIFEST["measurements"][0], "sha256": "x" * 64}]},
    ),
]


@pytest.mark.parametrize(
    "manifest", [m for _, m in BAD_MANIFESTS], ids=[n for n, _ in BAD_MANIFESTS]
)
def test_bad_manifests_are_refused(manifest: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as info:
        release_reference_from_manifest(manifest)
    assert info.value.code == "attestation.reference.invalid"


def test_match_image_prefers_the_newest_allowed_release() -> None:
    refs = ReferenceSet.build(
        models=[
            ModelReference(model="m", rom=frozenset(), bootloader=frozenset(), agent=frozenset())
        ],
        releases=[
            ReleaseReference(model="m", version=v, image_sha256=IMAGE)
            for v in ("1.9.0", "1.10.0", "1.2.0")
        ]
        + [ReleaseReference(model="n", version="9.0.0", image_sha256=IMAGE)],
    )
    assert refs.image_releases("m", IMAGE) == ("1.10.0", "1.9.0", "1.2.0")
    assert refs.match_image("m", IMAGE, None) == "1.10.0"
    assert refs.match_image("m", IMAGE, frozenset({"1.2.0", "1.9.0"})) == "1.9.0"
    assert refs.match_image("m", IMAGE, frozenset({"9.0.0"})) is None
    assert refs.match_image("m", b"\x00" * 32, None) is None


def test_measure_identity() -> None:
    assert measure_identity("rom/1") == hashlib.sha256(b"rom/1").digest()


def test_challenge_message() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    one, two = make_challenge(now=now), make_challenge(now=now)
    assert one.nonce != two.nonce and one.id != two.id
    assert len(one.nonce) == 32 and not one.used
    body = json.loads(encode_challenge(one))
    assert body == {
        "id": one.id,
        "nonce": base64.b64encode(one.nonce).decode(),
        "pcrs": [0, 4, 9, 10],
    }


def test_load_ak_public_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_ak_public_key(pem).public_numbers() == key.public_numbers()
    assert load_ak_public_key(der).public_numbers() == key.public_numbers()
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for bad in (b"", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", p384):
        with pytest.raises(InvalidInput) as info:
            load_ak_public_key(bad)
        assert info.value.code == "attestation.ak.invalid"
