"""What the agent encodes (``wire.encode_device_message``) the service's verifier accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet import wire
from trustfleet.services.ingest import parse_message

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DEVICE = "dev-00001"
NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=64)
NUMBERS = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
METRICS = st.dictionaries(NAMES, NUMBERS, max_size=8)
BOOTS = st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
SEQS = st.integers(0, wire.MAX_SEQ)
SKEW = st.integers(-3000, 3000).map(lambda s: timedelta(seconds=s))


def _sent_and_parsed(kind: str, document: dict[str, Any], **head: Any) -> tuple[Any, Any]:
    payload = wire.encode_device_message(document, max_bytes=wire.MAX_PAYLOAD_BYTES, **head)
    message = parse_message(wire.device_topic(DEVICE, kind), payload, now=NOW)
    return json.loads(payload), message


@given(metrics=METRICS, seq=SEQS, boot=BOOTS, skew=SKEW)
def test_telemetry_round_trip(
    metrics: dict[str, Any], seq: int, boot: str | None, skew: timedelta
) -> None:
    sent, message = _sent_and_parsed(
        "telemetry", {"metrics": metrics}, seq=seq, now=NOW + skew, boot=boot
    )
    assert (message.device_id, message.kind, message.seq, message.boot) == (
        DEVICE, "telemetry", seq, boot,
    )  # fmt: skip
    assert abs(message.ts - (NOW + skew)) < timedelta(milliseconds=1)
    assert message.body == sent


@given(kind=st.sampled_from(["events", "cmd/result"]), seq=SEQS, text=st.text(max_size=40))
def test_events_and_results_round_trip(kind: str, seq: int, text: str) -> None:
    document: dict[str, Any] = (
        {"type": text, "details": {}}
        if kind == "events"
        else {"id": text, "ok": True, "result": {}}
    )
    sent, message = _sent_and_parsed(kind, document, seq=seq, now=NOW)
    assert message.kind == kind and message.body == sent


def test_oversized_message_is_refused_before_sending() -> None:
    big = {"metrics": {"m": 1.0}, "pad": "x" * wire.MAX_PAYLOAD_BYTES}
    with pytest.raises(ValueError, match="exceeds"):
        wire.encode_device_message(big, seq=1, now=NOW, max_bytes=wire.MAX_PAYLOAD_BYTES)


def test_timestamp_is_utc_with_milliseconds() -> None:
    local = datetime(2026, 5, 1, 14, 0, 0, 123456, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=2))
    )
    payload = wire.encode_device_message({}, seq=0, now=local, max_bytes=100)
    assert json.loads(payload) == {"ts": "2026-05-01T14:00:00.123Z", "seq": 0}
