"""Firmware manifests: COSE_Sign1 over the SUIT-style payload; tampering, keys, algs, rollback."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from trustfleet.errors import VerificationFailed
from trustfleet.lwm2m.manifest import Manifest, sign_manifest, verify_manifest

_MANIFEST = Manifest(
    model="thermo-a1",
    version="1.2.0",
    sequence=7,
    image_path="/fw/thermo-a1/1.2.0/image",
    image_size=4096,
    image_sha256=hashlib.sha256(b"image").hexdigest(),
)
_P256 = ec.generate_private_key(ec.SECP256R1())
_P384 = ec.generate_private_key(ec.SECP384R1())


def _signed(
    key: ec.EllipticCurvePrivateKey = _P256, *, alg: str = "ES256", **changes: object
) -> bytes:
    manifest = Manifest(**{**_fields(), **changes})  # type: ignore[arg-type]
    hash_alg = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
    return sign_manifest(
        manifest,
        sign=lambda tbs: key.sign(tbs, ec.ECDSA(hash_alg)),
        algorithm=alg,  # type: ignore[arg-type]
        key_id=b"kid-1",
    )


def _fields() -> dict[str, object]:
    return {name: getattr(_MANIFEST, name) for name in Manifest.__dataclass_fields__}


def _verify(data: bytes, *, key: ec.EllipticCurvePublicKey | None = None, **kw: object) -> Manifest:
    args: dict[str, object] = {"model": "thermo-a1", "min_sequence": 7, "max_bytes": 1024, **kw}
    return verify_manifest(data, public_key=key or _P256.public_key(), **args)  # type: ignore[arg-type]


def test_round_trip_es256_and_es384() -> None:
    assert _verify(_signed()) == _MANIFEST
    assert _verify(_signed(_P384, alg="ES384"), key=_P384.public_key()) == _MANIFEST


def test_structure_is_cose_sign1() -> None:
    decoded = cbor2.loads(_signed())
    assert decoded.tag == 18
    protected, unprotected, payload, signature = decoded.value
    assert cbor2.loads(protected) == {1: -7, 4: b"kid-1"}
    assert unprotected == {}
    assert cbor2.loads(payload) == {
        1: 1,
        2: 7,
        3: "thermo-a1",
        4: "1.2.0",
        5: "/fw/thermo-a1/1.2.0/image",
        6: 4096,
        7: hashlib.sha256(b"image").digest(),
    }
    assert len(signature) == 64


def _code(data: bytes, **kw: object) -> str | None:
    with pytest.raises(VerificationFailed) as err:
        _verify(data, **kw)
    return err.value.code


def test_every_tampered_byte_is_refused() -> None:
    data = _signed()
    for index in range(len(data)):
        for flip in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[index] ^= flip
            assert (_code(bytes(tampered)) or "").startswith("lwm2m.manifest."), index


def _retag(data: bytes, tag: int) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, cbor2.loads(data).value))


def _resign(protected: dict[int, object], payload: dict[int, object]) -> bytes:
    p, pl = cbor2.dumps(protected), cbor2.dumps(payload)
    tbs = cbor2.dumps(["Signature1", p, b"", pl])
    r, s = decode_dss_signature(_P256.sign(tbs, ec.ECDSA(hashes.SHA256())))
    return cbor2.dumps(
        cbor2.CBORTag(18, [p, {}, pl, r.to_bytes(32, "big") + s.to_bytes(32, "big")])
    )


_GOOD_PAYLOAD: dict[int, object] = cbor2.loads(cbor2.loads(_signed()).value[2])


@pytest.mark.parametrize(
    ("make", "kw", "code"),
    [
        (_signed, {"key": _P384.public_key()}, "signature"),
        (lambda: _signed(ec.generate_private_key(ec.SECP256R1())), {}, "signature"),
        (lambda: _signed(_P384, alg="ES384"), {}, "signature"),
        (lambda: _retag(_signed(), 98), {}, "malformed"),
        (lambda: cbor2.dumps(cbor2.loads(_signed()).value), {}, "malformed"),
        (lambda: _signed(sequence=6), {}, "rollback"),
        (lambda: _signed(model="other-model"), {}, "model"),
        (_signed, {"max_bytes": 100}, "too_large"),
        (lambda: _resign({1: -8, 4: b"k"}, _GOOD_PAYLOAD), {}, "signature"),
        (lambda: _resign({1: -7}, _GOOD_PAYLOAD), {}, "malformed"),
        (lambda: _resign({1: -7, 4: b"k"}, {**_GOOD_PAYLOAD, 1: 2}), {}, "malformed"),
        (lambda: _resign({1: -7, 4: b"k"}, {**_GOOD_PAYLOAD, 5: "/etc/passwd"}), {}, "malformed"),
        (lambda: _resign({1: -7, 4: b"k"}, {**_GOOD_PAYLOAD, 7: b"short"}), {}, "malformed"),
        (lambda: _resign({1: -7, 4: b"k"}, {**_GOOD_PAYLOAD, 2: -1}), {}, "malformed"),
        (lambda: _resign({1: -7, 4: b"k"}, {**_GOOD_PAYLOAD, 8: 0}), {}, "malformed"),
        (lambda: b"", {}, "malformed"),
        (lambda: b"\xd2" + b"\x9f" * 10, {}, "malformed"),
    ],
    ids=[
        "wrong-curve-key",
        "other-key",
        "es384-against-p256-key",
        "wrong-tag",
        "untagged",
        "rollback",
        "other-model",
        "too-large",
        "unknown-alg-eddsa",
        "no-kid",
        "manifest-version-2",
        "path-outside-fw",
        "short-digest",
        "negative-sequence",
        "extra-key",
        "empty",
        "indefinite-array",
    ],
)
def test_refused(make: Callable[[], bytes], kw: dict[str, object], code: str) -> None:
    assert _code(make(), **kw) == f"lwm2m.manifest.{code}"


def test_resigned_good_payload_verifies_and_higher_sequence_is_fine() -> None:
    assert _verify(_resign({1: -7, 4: b"k"}, _GOOD_PAYLOAD)) == _MANIFEST
    assert _verify(_signed(sequence=9)).sequence == 9
