"""``trustfleet.wire`` commands and limits: round trips, refusals, one set of bounds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet import wire
from trustfleet.errors import InvalidInput

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ARGS = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=5)


@given(name=st.sampled_from(wire.COMMAND_NAMES), args=ARGS)
def test_encode_decode_round_trip(name: str, args: dict[str, Any]) -> None:
    command_id, payload = wire.encode_command(name, args)
    decoded = wire.decode_command(payload, max_bytes=wire.MAX_COMMAND_BYTES)
    assert decoded == wire.Command(id=command_id, name=name, args=args)


@given(raw=st.binary(max_size=200))
def test_decode_never_raises(raw: bytes) -> None:
    result = wire.decode_command(raw, max_bytes=100)
    assert isinstance(result, wire.Command | str)


def test_encode_keeps_a_given_id() -> None:
    command_id, payload = wire.encode_command("ping", {}, command_id="c-1")
    assert command_id == "c-1"
    assert json.loads(payload) == {"id": "c-1", "name": "ping", "args": {}}


ENCODE_REFUSALS: dict[str, tuple[str, dict[str, Any]]] = {
    "unknown-name": ("shell", {}),
    "not-json": ("ping", {"x": object()}),
    "nan": ("ping", {"x": float("nan")}),
    "too-large": ("update", {"x": "a" * wire.MAX_COMMAND_BYTES}),
}


@pytest.mark.parametrize(("name", "args"), ENCODE_REFUSALS.values(), ids=ENCODE_REFUSALS.keys())
def test_encode_refuses(name: str, args: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        wire.encode_command(name, args)


DECODE_REFUSALS: dict[str, tuple[bytes, str]] = {
    "too-large": (b"{" + b" " * 200 + b"}", "larger than"),
    "not-utf8": (b"\xff", "not UTF-8 JSON"),
    "not-json": (b"{", "not UTF-8 JSON"),
    "deep": (b"[" * 150 + b"]" * 150, ""),
    "not-object": (b"[]", "not a JSON object"),
    "no-id": (b'{"name": "ping"}', "'id'"),
    "empty-id": (b'{"id": "", "name": "ping"}', "'id'"),
    "long-id": (json.dumps({"id": "i" * 129, "name": "p"}).encode(), "'id'"),
    "no-name": (b'{"id": "c"}', "'name'"),
    "long-name": (json.dumps({"id": "c", "name": "n" * 65}).encode(), "'name'"),
    "args-list": (b'{"id": "c", "name": "ping", "args": []}', "'args'"),
}


@pytest.mark.parametrize(("raw", "why"), DECODE_REFUSALS.values(), ids=DECODE_REFUSALS.keys())
def test_decode_refuses_with_a_reason(raw: bytes, why: str) -> None:
    max_bytes = 100 if raw.startswith(b"{ ") else 10_000
    result = wire.decode_command(raw, max_bytes=max_bytes)
    assert isinstance(result, str) and why in result


def test_deeply_nested_command_is_refused_not_raised() -> None:
    # Regression: json.loads raised RecursionError on awscrt's callback thread.
    raw = b"[" * 20_000 + b"]" * 20_000
    assert wire.decode_command(raw, max_bytes=len(raw)) == "payload is not UTF-8 JSON"


def test_limits_are_the_ones_the_product_applies() -> None:
    from trustfleet.agent import attester
    from trustfleet.agent.settings import MqttSection
    from trustfleet.attestation import AttestationPolicy
    from trustfleet.services import _ingest_checks
    from trustfleet.settings import AttestationSettings, BrokerSettings
    from trustfleet.store import MAX_BOOT_CHARS

    assert BrokerSettings.model_fields["max_payload_bytes"].default == wire.MAX_PAYLOAD_BYTES
    assert MqttSection.model_fields["max_payload_bytes"].default == wire.MAX_PAYLOAD_BYTES
    assert _ingest_checks.IngestLimits().max_bytes == wire.MAX_PAYLOAD_BYTES
    assert _ingest_checks.MAX_METRICS == wire.MAX_METRICS
    assert _ingest_checks.MAX_METRIC_NAME_CHARS == wire.MAX_METRIC_NAME_CHARS
    assert _ingest_checks.MAX_SEQ == wire.MAX_SEQ
    assert _ingest_checks.MAX_TS_CHARS == wire.MAX_TS_CHARS
    assert MAX_BOOT_CHARS == wire.MAX_BOOT_CHARS
    assert attester.MAX_CHALLENGE_BYTES == wire.MAX_CHALLENGE_BYTES
    assert attester.MAX_EVIDENCE_BYTES == wire.MAX_EVIDENCE_BYTES
    assert AttestationPolicy().max_evidence_bytes == wire.MAX_EVIDENCE_BYTES
    assert AttestationSettings.model_fields["max_evidence_bytes"].default == wire.MAX_EVIDENCE_BYTES


def test_device_id_pattern_is_pki_s() -> None:
    from trustfleet.pki import DEVICE_ID_PATTERN

    assert wire.DEVICE_ID_PATTERN.pattern == DEVICE_ID_PATTERN.pattern
