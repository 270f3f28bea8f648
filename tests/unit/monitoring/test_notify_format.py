"""Webhook signatures (replay, tamper, wrong secret) and RFC 5424 messages (ABNF pieces)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.syslogparse import parse_octet_counted, parse_rfc5424
from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.monitoring.notify_format import (
    MAX_NOTICE_BYTES,
    MAX_SYSLOG_BYTES,
    SYSLOG_SD_ID,
    AlertNotice,
    notice_from_json,
    syslog_message,
    verify_webhook,
    webhook_body,
    webhook_signature,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = b"s3cret-for-tests"


def notice(**over: object) -> AlertNotice:
    values: dict[str, object] = {
        "event_id": "0123abcd", "alert_id": 7, "device_id": "dev-001",
        "kind": "monitor.volume.high", "severity": "high", "state": "open",
        "summary": "bytes out 40x the baseline", "evidence": {"all-bytes-out": 4e9},
        "first_seen": T0, "last_seen": T0 + timedelta(minutes=5), "created_at": T0,
    }  # fmt: skip
    values.update(over)
    return AlertNotice(**values)  # type: ignore[arg-type]


def test_body_round_trips_and_is_bounded() -> None:
    body = webhook_body(notice())
    doc = json.loads(body)
    assert doc["event_id"] == "0123abcd" and doc["alert_id"] == 7 and doc["state"] == "open"
    assert doc["first_seen"] == "2026-03-01T12:00:00Z"
    assert notice_from_json(body) == notice()
    big = webhook_body(notice(evidence={"x": "y" * (MAX_NOTICE_BYTES * 2)}))
    assert len(big) <= MAX_NOTICE_BYTES and json.loads(big)["evidence"] == {"truncated": True}
    with pytest.raises(InvalidInput):
        notice_from_json(b"{}")


def test_signature_is_hmac_over_timestamp_and_body() -> None:
    body = webhook_body(notice())
    ts = int(T0.timestamp())
    header = webhook_signature(SECRET, body, timestamp=ts)
    expected = hmac.new(SECRET, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={ts},v1={expected}"
    verify_webhook(SECRET, body, header, now=ts + 299, tolerance_s=300)
    # a second v1 (secret rotation) is accepted when any matches
    verify_webhook(SECRET, body, f"t={ts},v1={'0' * 64},v1={expected}", now=ts, tolerance_s=5)


def _cases() -> list[tuple[str, bytes, bytes, str, int]]:
    body = webhook_body(notice())
    ts = int(T0.timestamp())
    good = webhook_signature(SECRET, body, timestamp=ts)
    later_ts = webhook_signature(SECRET, body, timestamp=ts + 1)
    return [
        ("replayed-late", SECRET, body, good, ts + 301),
        ("from-the-future", SECRET, body, good, ts - 301),
        ("tampered-body", SECRET, body.replace(b"dev-001", b"dev-002"), good, ts),
        ("wrong-secret", b"another", body, good, ts),
        ("timestamp-swapped", SECRET, body, later_ts.split(",")[0] + "," + good.split(",")[1], ts),
        ("no-v1", SECRET, body, f"t={ts}", ts),
        ("no-t", SECRET, body, good.split(",")[1], ts),
        ("garbage", SECRET, body, "hello", ts),
        ("short-mac", SECRET, body, f"t={ts},v1=abcd", ts),
        ("huge-header", SECRET, body, good + ",x=" + "a" * 2000, ts),
        ("empty", SECRET, body, "", ts),
    ]


@pytest.mark.parametrize(
    ("secret", "body", "header", "now"),
    [c[1:] for c in _cases()],
    ids=[c[0] for c in _cases()],
)
def test_bad_signatures_refused(secret: bytes, body: bytes, header: str, now: int) -> None:
    with pytest.raises(VerificationFailed) as exc:
        verify_webhook(secret, body, header, now=now, tolerance_s=300)
    assert exc.value.code is not None and exc.value.code.startswith("monitor.webhook.")


def test_syslog_message_follows_rfc5424() -> None:
    raw = syslog_message(notice(), hostname="tf-host", app_name="trustfleet", now=T0)
    msg = parse_rfc5424(raw)
    assert msg.pri == 4 * 8 + 3  # security facility, high -> error
    assert msg.version == 1 and msg.msgid == "alert" and msg.procid == "-"
    assert msg.timestamp == T0 and msg.hostname == "tf-host" and msg.app_name == "trustfleet"
    assert msg.sd == {
        SYSLOG_SD_ID: {
            "alert": "7", "device": "dev-001", "kind": "monitor.volume.high", "severity": "high",
        }
    }  # fmt: skip
    assert msg.bom and msg.msg == "dev-001: bytes out 40x the baseline"


@pytest.mark.parametrize(
    ("severity", "pri"), [("critical", 34), ("high", 35), ("medium", 36), ("low", 37)]
)
def test_syslog_pri_from_severity(severity: str, pri: int) -> None:
    raw = syslog_message(notice(severity=severity), hostname="h", app_name="a", now=T0)
    assert parse_rfc5424(raw).pri == pri


def test_syslog_escapes_and_bounds() -> None:
    nasty = 'dev"]\\x'
    raw = syslog_message(
        notice(device_id=nasty, summary="é" * 5000 + "\nnext"),
        hostname="bad host\x00name", app_name="a" * 100, now=T0,
    )  # fmt: skip
    assert len(raw) <= MAX_SYSLOG_BYTES
    msg = parse_rfc5424(raw)
    assert msg.sd[SYSLOG_SD_ID]["device"] == nasty
    assert msg.hostname == "badhostname" and len(msg.app_name) == 48
    assert "\n" not in msg.msg and msg.msg.endswith("é")  # cut at a character boundary


@given(device=st.text(max_size=200), summary=st.text(max_size=3000), kind=st.text(max_size=80))
def test_syslog_always_parses(device: str, summary: str, kind: str) -> None:
    raw = syslog_message(
        notice(device_id=device, summary=summary, kind=kind), hostname="h", app_name="a", now=T0
    )
    assert len(raw) <= MAX_SYSLOG_BYTES
    msg = parse_rfc5424(raw)
    assert msg.sd[SYSLOG_SD_ID]["device"] == device[:128]


def test_octet_counting_frames() -> None:
    a = syslog_message(notice(), hostname="h", app_name="a", now=T0)
    b = syslog_message(notice(alert_id=8), hostname="h", app_name="a", now=T0)
    stream = f"{len(a)} ".encode() + a + f"{len(b)} ".encode() + b
    assert parse_octet_counted(stream) == [a, b]
