"""DSSE envelopes: the spec's vectors, round trips, refusals and arbitrary input."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner, SSlibKey

from support.jsonvalues import json_values
from trustfleet.errors import Config, InvalidInput, VerificationFailed
from trustfleet.ota.dsse import (
    PAYLOAD_TYPE,
    Envelope,
    EnvelopeSignature,
    pae,
    parse_envelope,
    render_envelope,
    sign_envelope,
    verify_envelope,
)

MAX = 64 * 1024


@pytest.fixture(scope="module")
def signer() -> CryptoSigner:
    return CryptoSigner(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="module")
def other() -> CryptoSigner:
    return CryptoSigner(ec.generate_private_key(ec.SECP256R1()))


def _keys(*signers: CryptoSigner) -> dict[str, SSlibKey]:
    return {s.public_key.keyid: s.public_key for s in signers}


def _vectors(asset: Callable[[str], Path]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(asset("dsse/spec-vectors.json").read_text("utf-8"))
    return doc


def _case_ids() -> list[str]:
    path = Path(__file__).parents[2] / "vectors" / "dsse" / "spec-vectors.json"
    return [c["id"] for c in json.loads(path.read_text("utf-8"))["cases"]]


@pytest.mark.parametrize("case_id", _case_ids())
def test_dsse_spec_vectors(asset: Callable[[str], Path], case_id: str) -> None:
    doc = _vectors(asset)
    case = next(c for c in doc["cases"] if c["id"] == case_id)
    keys = {
        name: SSlibKey(name, "ed25519", "ed25519", {"public": doc["ed25519Keys"][name]})
        for name in case["trusted"]
    }
    envelope = {k: case[k] for k in ("payload", "payloadType", "signatures")}
    data = json.dumps(envelope).encode()
    try:
        env = parse_envelope(data, max_bytes=MAX)
        # paeHex is what the signatures cover: our PAE equals it exactly when they verify
        assert (pae(env.payload_type, env.payload).hex() == case["paeHex"]) is (
            env.payload_type == case["payloadType"] != "application/vnd.example.other+json"
        )
        verify_envelope(env, keys=keys, threshold=case["threshold"])
        accepted = env.payload_type in case["supportedTypes"]
    except (InvalidInput, VerificationFailed):
        accepted = False
    assert accepted is case["accept"]


def test_dsse_spec_ecdsa_example(asset: Callable[[str], Path]) -> None:
    """protocol.md's P-256 example: its PAE, and its (raw r||s) signature verifies as DER."""
    example = _vectors(asset)["ecdsaExample"]
    payload = base64.b64decode(example["payload"])
    assert pae(example["payloadType"], payload) == example["pae"].encode()
    point = ec.EllipticCurvePublicNumbers(int(example["x"]), int(example["y"]), ec.SECP256R1())
    key = SSlibKey.from_crypto(point.public_key(), keyid="spec", scheme="ecdsa-sha2-nistp256")
    raw = base64.b64decode(example["sigRawRS"])
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    env = Envelope(example["payloadType"], payload, (EnvelopeSignature("spec", der),))
    assert verify_envelope(env, keys={"spec": key}) == ("spec",)
    edited = Envelope(example["payloadType"], b"hello world!", env.signatures)
    with pytest.raises(VerificationFailed):
        verify_envelope(edited, keys={"spec": key})


def test_pae_known_answers() -> None:
    assert pae("", b"") == b"DSSEv1 0  0 "
    assert pae("t\u00e9", b"\x00\xff") == b"DSSEv1 3 t\xc3\xa9 2 \x00\xff"


def test_sign_render_parse_verify_round_trip(signer: CryptoSigner) -> None:
    env = sign_envelope(b'{"a":1}', signer=signer)
    data = render_envelope(env)
    assert parse_envelope(data, max_bytes=MAX) == env
    assert render_envelope(parse_envelope(data, max_bytes=MAX)) == data
    assert data.startswith(b'{"payload":') and b" " not in data
    assert verify_envelope(env, keys=_keys(signer)) == (signer.public_key.keyid,)
    assert env.payload_type == PAYLOAD_TYPE


class _HexlessSigner(CryptoSigner):
    def sign(self, payload: bytes) -> Any:
        signature = super().sign(payload)
        signature.signature = "zz"
        return signature


def test_a_signer_without_hex_is_a_config_error() -> None:
    signer = _HexlessSigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(Config) as info:
        sign_envelope(b"x", signer=signer)
    assert info.value.code == "ota.dsse.signer"


def _swap_keyid(env: Envelope, keyid: str) -> Envelope:
    return Envelope(
        env.payload_type, env.payload, (EnvelopeSignature(keyid, env.signatures[0].sig),)
    )


def test_verify_refusals(signer: CryptoSigner, other: CryptoSigner) -> None:
    env = sign_envelope(b"payload", signer=signer)
    cases = {
        "unknown key": (env, _keys(other)),
        "edited payload": (Envelope(env.payload_type, b"payloaD", env.signatures), _keys(signer)),
        "edited type": (Envelope("text/plain", env.payload, env.signatures), _keys(signer)),
        "moved keyid": (_swap_keyid(env, other.public_key.keyid), _keys(signer, other)),
        "no keys": (env, {}),
    }
    for name, (candidate, keys) in cases.items():
        with pytest.raises(VerificationFailed) as info:
            verify_envelope(candidate, keys=keys)
        assert info.value.code == "ota.dsse.signature", name
    with pytest.raises(InvalidInput, match="threshold"):
        verify_envelope(env, keys=_keys(signer), threshold=0)


def test_threshold_counts_distinct_trusted_keys(signer: CryptoSigner, other: CryptoSigner) -> None:
    one = sign_envelope(b"p", signer=signer)
    two = sign_envelope(b"p", signer=other)
    both = Envelope(one.payload_type, one.payload, one.signatures + two.signatures)
    assert verify_envelope(both, keys=_keys(signer, other), threshold=2) == (
        signer.public_key.keyid,
        other.public_key.keyid,
    )
    twice = Envelope(one.payload_type, one.payload, one.signatures * 2)
    with pytest.raises(VerificationFailed):
        verify_envelope(twice, keys=_keys(signer, other), threshold=2)
    anonymous = _swap_keyid(one, "")
    assert verify_envelope(anonymous, keys=_keys(other, signer)) == (signer.public_key.keyid,)


def _doc(**changes: Any) -> bytes:
    doc: dict[str, Any] = {"payload": "e30=", "payloadType": PAYLOAD_TYPE}
    doc["signatures"] = [{"keyid": "k", "sig": "MEUCIQ=="}]
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"x" * (MAX + 1), "larger than"),
        (b"\xff", "not UTF-8"),
        (b"[" * 101 + b"]" * 101, "nested deeper"),
        (b'{"payload":"e30=","payload":"e30="}', "appears twice"),
        (b'{"payload":NaN}', "is not JSON"),
        (b"[]", "not an object"),
        (_doc(payload=None), "'envelope' lacks ['payload']"),
        (_doc(extra=1), "'envelope' has unknown fields ['extra']"),
        (_doc(payloadType=""), "payloadType"),
        (_doc(payloadType=7), "payloadType"),
        (_doc(payload="e"), "'payload' is not base64"),
        (_doc(payload="e3 0="), "not base64"),
        (_doc(payload=5), "not base64"),
        (_doc(signatures=[]), "1 to 16"),
        (_doc(signatures=[{"keyid": "k", "sig": "MEU="}] * 17), "1 to 16"),
        (_doc(signatures=[{"keyid": "k"}]), "'signature' lacks ['sig']"),
        (_doc(signatures=[{"keyid": 1, "sig": "MEU="}]), "keyid"),
        (_doc(signatures=[{"sig": ""}]), "'sig' has an impossible length"),
        (_doc(signatures=[{"sig": "A" * 1368 + "AAAA"}]), "'sig' has an impossible length"),
        (_doc(signatures=[{"sig": "MEU=", "cert": "x"}]), "unknown fields"),
    ],
    ids=[
        "oversize",
        "not-utf8",
        "too-deep",
        "duplicate-key",
        "nan",
        "not-object",
        "no-payload",
        "unknown-field",
        "empty-type",
        "type-not-string",
        "base64-one-char",
        "space-in-base64",
        "payload-not-string",
        "no-signatures",
        "17-signatures",
        "no-sig",
        "keyid-not-string",
        "empty-sig",
        "huge-sig",
        "unknown-signature-field",
    ],
)
def test_parse_refusals(data: bytes, why: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(why)) as info:
        parse_envelope(data, max_bytes=MAX)
    assert info.value.code == "ota.dsse.invalid"
    assert info.value.hint


def test_url_safe_unpadded_base64_is_read() -> None:
    env = parse_envelope(_doc(payload="-_8", signatures=[{"sig": "MEU"}]), max_bytes=MAX)
    assert env.payload == b"\xfb\xff" and env.signatures == (EnvelopeSignature("", b"0E"),)
    assert parse_envelope(_doc(payload="AAAX"), max_bytes=MAX).payload == b"\x00\x00\x17"
    with pytest.raises(InvalidInput, match="'sig' is not base64"):
        parse_envelope(_doc(signatures=[{"sig": "M"}]), max_bytes=MAX)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_invalid_input(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_envelope(data, max_bytes=256)


@given(json_values, st.booleans())
def test_arbitrary_json_only_invalid_input(doc: Any, wrap: bool) -> None:
    if wrap:
        doc = {"payload": "e30=", "payloadType": doc, "signatures": doc}
    with contextlib.suppress(InvalidInput):
        parse_envelope(json.dumps(doc).encode(), max_bytes=MAX)


@given(
    st.binary(max_size=200), st.text(min_size=1, max_size=40), st.binary(min_size=1, max_size=80)
)
def test_round_trip_property(payload: bytes, payload_type: str, sig: bytes) -> None:
    env = Envelope(payload_type, payload, (EnvelopeSignature("key", sig),))
    assert parse_envelope(render_envelope(env), max_bytes=MAX) == env


def test_bounds_at_their_limits() -> None:
    assert PAYLOAD_TYPE == "application/vnd.in-toto+json"
    at_limit = [{"keyid": "k" * 256, "sig": base64.b64encode(b"s" * 1024).decode()}] * 16
    env = parse_envelope(_doc(payloadType="t" * 256, signatures=at_limit), max_bytes=MAX)
    assert len(env.signatures) == 16 and len(env.signatures[0].sig) == 1024
    for changes in (
        {"payloadType": "t" * 257},
        {"signatures": [{"keyid": "k" * 257, "sig": "MEU="}]},
        {"signatures": [{"sig": base64.b64encode(b"s" * 1025).decode()}]},
    ):
        with pytest.raises(InvalidInput):
            parse_envelope(_doc(**changes), max_bytes=MAX)
    with pytest.raises(InvalidInput) as info:
        verify_envelope(env, keys={}, threshold=0)
    assert info.value.code == "ota.dsse.threshold"


def test_values_are_frozen_with_slots() -> None:
    values = [EnvelopeSignature("k", b"s"), Envelope("t", b"p", ())]
    for value in values:
        assert not hasattr(value, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, dataclasses.fields(value)[0].name, "x")
