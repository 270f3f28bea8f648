"""The attester's challenge parser: bounded, and it never raises anything but InvalidInput."""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from trustfleet.agent.attester import MAX_CHALLENGE_BYTES, parse_challenge
from trustfleet.attestation import encode_challenge, make_challenge
from trustfleet.errors import InvalidInput


def test_a_service_challenge_round_trips() -> None:
    from datetime import UTC, datetime

    challenge = make_challenge(now=datetime.now(UTC))
    parsed = parse_challenge(encode_challenge(challenge))
    assert (parsed.id, parsed.nonce, parsed.pcrs) == (challenge.id, challenge.nonce, (0, 4, 9, 10))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), _json.map(lambda v: json.dumps(v).encode())))
def test_fuzzed_payloads_only_raise_invalid_input(payload: bytes) -> None:
    try:
        parse_challenge(payload)
    except InvalidInput as exc:
        assert exc.code == "attestation.challenge.malformed"


@settings(max_examples=100, deadline=None)
@given(
    st.text(min_size=1, max_size=128),
    st.binary(min_size=1, max_size=64),
    st.lists(st.integers(0, 23), max_size=24),
)
def test_valid_shapes_parse(challenge_id: str, nonce: bytes, pcrs: list[int]) -> None:
    body = {"id": challenge_id, "nonce": base64.b64encode(nonce).decode(), "pcrs": pcrs}
    payload = json.dumps(body).encode()
    if len(payload) <= MAX_CHALLENGE_BYTES:
        parsed = parse_challenge(payload)
        assert parsed.nonce == nonce and list(parsed.pcrs) == pcrs
