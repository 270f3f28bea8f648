"""The verifier's inputs besides the evidence: the policy's defaults, the device state, the AK."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trustfleet.attestation.policy import (
    AttestationPolicy,
    DeviceAttestationState,
    load_ak_public_key,
)
from trustfleet.errors import InvalidInput

P256 = ec.generate_private_key(ec.SECP256R1()).public_key()


def _spki(key: object, encoding: serialization.Encoding) -> bytes:
    return key.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def test_policy_defaults_are_the_documented_bounds_and_rules() -> None:
    policy = AttestationPolicy()
    assert dataclasses.asdict(policy) == {
        "max_evidence_bytes": 65_536,
        "max_quote_bytes": 1024,
        "max_signature_bytes": 256,
        "max_eventlog_entries": 64,
        "max_string_chars": 256,
        "max_age_s": 60.0,
        "required_pcrs": (0, 4, 9, 10),
        "required_components": ("rom", "bootloader", "image", "agent"),
        "announced_reboot_is_warning": True,
    }


def test_device_state_defaults_know_nothing_beyond_the_key() -> None:
    state = DeviceAttestationState(device_id="d", model="m", ak_public_key=None)
    assert (state.ak_qualified_name, state.last_clock, state.allowed_releases) == (None,) * 3
    assert state.reboot_announced is False


@pytest.mark.parametrize(
    "make",
    [
        AttestationPolicy,
        lambda: DeviceAttestationState(device_id="d", model="m", ak_public_key=None),
    ],
    ids=["policy", "device-state"],
)
def test_inputs_are_frozen_and_slotted(make: object) -> None:
    value = make()  # type: ignore[operator]
    field = dataclasses.fields(value)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, field, 1)
    assert not hasattr(value, "__dict__")


def test_inputs_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        AttestationPolicy(1024)  # type: ignore[misc]
    with pytest.raises(TypeError):
        DeviceAttestationState("d", "m", None)  # type: ignore[misc]


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_p256_spki_loads(encoding: serialization.Encoding) -> None:
    key = load_ak_public_key(_spki(P256, encoding))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.public_numbers() == P256.public_numbers()


def test_pem_after_leading_whitespace_loads() -> None:
    key = load_ak_public_key(b"\n  " + _spki(P256, serialization.Encoding.PEM))
    assert key.public_numbers() == P256.public_numbers()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a key",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"\x30\x03\x02\x01\x00",
    ],
    ids=["empty", "garbage", "bad-pem", "der-not-spki"],
)
def test_undecodable_key_is_ak_invalid(data: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        load_ak_public_key(data)
    assert info.value.code == "attestation.ak.invalid"


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
    ],
    ids=["p384", "ed25519"],
)
@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_key_that_is_not_p256_is_ak_invalid(key: object, encoding: serialization.Encoding) -> None:
    with pytest.raises(InvalidInput) as info:
        load_ak_public_key(_spki(key, encoding))
    assert info.value.code == "attestation.ak.invalid"
