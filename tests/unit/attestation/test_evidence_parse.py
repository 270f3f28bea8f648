"""The attestation messages: encoding challenges and evidence, the evidence's shape and bounds."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from trustfleet.attestation.eventlog import EventLogEntry
from trustfleet.attestation.evidence import (
    NONCE_BYTES,
    Challenge,
    Evidence,
    encode_challenge,
    encode_evidence,
    make_challenge,
    parse_evidence,
)
from trustfleet.errors import InvalidInput

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
MALFORMED = "attestation.evidence.malformed"
HINT = "send the evidence as docs/attestation.md describes it"
ENTRY = EventLogEntry(pcr=9, type="EV_IPL", digest=b"\x01" * 32, component="image", detail="x")
BOUNDS: dict[str, int] = {
    "max_bytes": 4096,
    "max_quote_bytes": 12,
    "max_signature_bytes": 6,
    "max_eventlog_entries": 4,
    "max_string_chars": 8,
}


def parse(payload: bytes, **bounds: int) -> Evidence:
    return parse_evidence(payload, **{**BOUNDS, **bounds})


def body(**changes: Any) -> dict[str, Any]:
    """A well-formed evidence body within BOUNDS (quote of 12 bytes, signature of 6)."""
    base: dict[str, Any] = {
        "id": "c1",
        "quote": base64.b64encode(b"q" * 12).decode(),
        "signature": base64.b64encode(b"s" * 6).decode(),
        "eventlog": [
            {"pcr": 9, "type": "EV_IPL", "digest": "01" * 32, "component": "image", "detail": "x"}
        ],
        "release": "2.0.0",
        "slot": "a",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def payload(**changes: Any) -> bytes:
    return json.dumps(body(**changes)).encode()


def malformed(raw: bytes, **bounds: int) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse(raw, **bounds)
    assert info.value.code == MALFORMED
    assert info.value.hint == HINT
    return info.value


# -- challenges -------------------------------------------------------------------------------


def test_make_challenge_has_a_fresh_32_byte_nonce_and_a_random_id() -> None:
    first = make_challenge(now=NOW)
    second = make_challenge(now=NOW)
    assert NONCE_BYTES == 32
    assert len(first.nonce) == 32
    assert first.nonce != second.nonce
    assert len(first.id) == 32
    int(first.id, 16)
    assert first.id != second.id
    assert (first.issued_at, first.pcrs, first.used) == (NOW, (0, 4, 9, 10), False)


def test_make_challenge_keeps_the_given_id_and_pcrs() -> None:
    challenge = make_challenge(challenge_id="c-7", now=NOW, pcrs=[0, 7])
    assert (challenge.id, challenge.pcrs) == ("c-7", (0, 7))


def test_challenge_defaults_are_the_default_pcrs_and_unused() -> None:
    challenge = Challenge(id="c", nonce=b"n", issued_at=NOW)
    assert challenge.pcrs == (0, 4, 9, 10)
    assert challenge.used is False


def test_challenge_is_frozen_keyword_only_and_slotted() -> None:
    challenge = Challenge(id="c", nonce=b"n", issued_at=NOW)
    with pytest.raises(dataclasses.FrozenInstanceError):
        challenge.used = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        Challenge("c", b"n", NOW)  # type: ignore[misc]
    assert not hasattr(challenge, "__dict__")


def test_encode_challenge_is_compact_json() -> None:
    challenge = Challenge(id="c1", nonce=b"\x00\x01\x02", issued_at=NOW, pcrs=(0, 10))
    assert encode_challenge(challenge) == b'{"id":"c1","nonce":"AAEC","pcrs":[0,10]}'


def test_encode_evidence_is_compact_json_with_the_optional_fields() -> None:
    raw = encode_evidence(
        challenge_id="c1",
        quote=b"\x01",
        signature=b"\x02",
        eventlog=[ENTRY],
        release="2.0.0",
        slot="a",
    )
    entry = '{"pcr":9,"type":"EV_IPL","digest":"' + "01" * 32
    entry += '","component":"image","detail":"x"}'
    assert (
        raw
        == (
            '{"id":"c1","quote":"AQ==","signature":"Ag==","eventlog":['
            + entry
            + '],"release":"2.0.0","slot":"a"}'
        ).encode()
    )


def test_encode_evidence_leaves_out_absent_release_and_slot() -> None:
    raw = encode_evidence(challenge_id="c1", quote=b"\x01", signature=b"\x02", eventlog=[])
    assert raw == b'{"id":"c1","quote":"AQ==","signature":"Ag==","eventlog":[]}'


# -- parsing ----------------------------------------------------------------------------------


def test_parse_round_trips_encoded_evidence() -> None:
    raw = encode_evidence(
        challenge_id="c1", quote=b"q" * 12, signature=b"s" * 6, eventlog=[ENTRY], release="r"
    )
    assert parse(raw) == Evidence(
        challenge_id="c1",
        quote=b"q" * 12,
        signature=b"s" * 6,
        eventlog=(ENTRY,),
        release="r",
        slot=None,
    )


def test_parse_reads_every_field() -> None:
    ev = parse(payload())
    assert ev == Evidence(
        challenge_id="c1",
        quote=b"q" * 12,
        signature=b"s" * 6,
        eventlog=(ENTRY,),
        release="2.0.0",
        slot="a",
    )


def test_payload_of_exactly_max_bytes_parses_and_one_more_is_malformed() -> None:
    raw = payload()
    assert parse(raw + b" " * 10, max_bytes=len(raw) + 10).challenge_id == "c1"
    malformed(raw + b" " * 11, max_bytes=len(raw) + 10)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"id": "\xff"}',
        b"[]",
        b'"c1"',
        b"[" * 5_000 + b"]" * 5_000,
    ],
    ids=["not-json", "not-utf8", "array", "string", "deep"],
)
def test_not_a_json_object_is_malformed(raw: bytes) -> None:
    malformed(raw)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_are_malformed_even_where_null_is_allowed(constant: str) -> None:
    raw = payload(release=None).replace(b"null", constant.encode())
    assert constant.encode() in raw
    malformed(raw)


def test_unknown_key_is_malformed() -> None:
    malformed(payload(extra=1))


def test_optional_fields_may_be_absent_or_null() -> None:
    ev = parse(payload(release=..., slot=None))
    assert (ev.release, ev.slot) == (None, None)


@pytest.mark.parametrize(
    ("challenge_id", "ok"),
    [("a", True), ("a" * 8, True), ("", False), ("a" * 9, False), (7, False), (None, False)],
)
def test_id_is_a_non_empty_string_of_at_most_max_string_chars(challenge_id: Any, ok: bool) -> None:
    raw = payload(id=challenge_id)
    if ok:
        assert parse(raw).challenge_id == challenge_id
    else:
        malformed(raw)


def test_missing_id_is_malformed() -> None:
    malformed(payload(id=...))


@pytest.mark.parametrize("key", ["release", "slot"])
def test_optional_text_of_max_string_chars_parses_and_one_more_is_malformed(key: str) -> None:
    assert getattr(parse(payload(**{key: "r" * 8})), key) == "r" * 8
    malformed(payload(**{key: "r" * 9}))
    malformed(payload(**{key: 2}))


def test_quote_of_exactly_max_quote_bytes_parses_and_one_more_is_malformed() -> None:
    assert parse(payload(quote=base64.b64encode(b"q" * 12).decode())).quote == b"q" * 12
    malformed(payload(quote=base64.b64encode(b"q" * 13).decode()))


def test_quote_bound_is_on_the_decoded_bytes_with_excess_padding() -> None:
    # Strict base64 still takes a '=' after a full quantum: the bound counts the bytes.
    quote = base64.b64encode(b"q" * 12).decode() + "="
    assert parse(payload(quote=quote)).quote == b"q" * 12
    malformed(payload(quote=base64.b64encode(b"q" * 15).decode() + "="))


def test_quote_bound_follows_max_quote_bytes() -> None:
    quote = base64.b64encode(b"q" * 15).decode()
    assert parse(payload(quote=quote), max_quote_bytes=15).quote == b"q" * 15


def test_signature_of_exactly_max_signature_bytes_parses_and_one_more_is_malformed() -> None:
    assert parse(payload(signature=base64.b64encode(b"s" * 6).decode())).signature == b"s" * 6
    malformed(payload(signature=base64.b64encode(b"s" * 7).decode()))


def test_empty_quote_parses_as_no_bytes() -> None:
    assert parse(payload(quote="")).quote == b""


@pytest.mark.parametrize(
    "value",
    ["!!!!", "AAAA AAAA", "AAA", "AAAAé", "AA=A", 12, None, ["AAAA"]],
    ids=["bad-char", "whitespace", "short", "non-ascii", "bad-padding", "int", "null", "list"],
)
@pytest.mark.parametrize("key", ["quote", "signature"])
def test_field_that_is_not_strict_base64_text_is_malformed(key: str, value: Any) -> None:
    malformed(payload(**{key: value}))


def test_missing_quote_is_malformed() -> None:
    malformed(payload(quote=...))


def test_eventlog_bounds_apply() -> None:
    entry = body()["eventlog"][0]
    assert len(parse(payload(eventlog=[entry] * 4)).eventlog) == 4
    for log in ([entry] * 5, {}):
        with pytest.raises(InvalidInput) as info:  # the event log's own errors
            parse(payload(eventlog=log))
        assert info.value.code == MALFORMED
