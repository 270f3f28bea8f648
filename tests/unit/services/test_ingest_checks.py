"""The ingest verifier refuses, alone and with a stable code, every message the store would not
hold (issue 9 §1), and the ``ingest.rejected`` limiter stays bounded. Pure: no store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.services.ingest import IngestLimits, parse_message
from trustfleet.services.ingest_rejects import OVERFLOW_SUBJECT, RejectLimiter
from trustfleet.store import MAX_METRICS_BYTES, check_metrics

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # pure functions of `now`: any instant works
DEV = "dev-00000001"
LIMITS = IngestLimits(ts_max_past=timedelta(days=7), ts_max_future=timedelta(hours=1))


def _payload(ts: object = "2026-06-01T11:59:00Z", **fields: object) -> bytes:
    return json.dumps({"ts": ts, "seq": 1, **fields}).encode()


def _telemetry(**fields: object) -> bytes:
    return _payload(**{"metrics": {"t": 1.5}, **fields})


def _parse(payload: bytes, kind: str = "telemetry") -> object:
    return parse_message(f"tf/v1/d/{DEV}/{kind}", payload, now=NOW, limits=LIMITS)


# Finding 1: "0001-01-01T00:00:00+01:00" raised OverflowError (astimezone) and ended the worker.
TS_RANGE = {
    "year-1-plus-offset": "0001-01-01T00:00:00+01:00",
    "year-9999-minus-offset": "9999-12-31T23:59:59-01:00",
    "year-1-utc": "0001-01-01T00:00:00+00:00",
    "year-9999-utc": "9999-12-31T23:59:59Z",
    "epoch": "1970-01-01T00:00:00Z",
    "past-window-plus-1s": (NOW - timedelta(days=7, seconds=1)).isoformat(),
    "future-window-plus-1s": (NOW + timedelta(hours=1, seconds=1)).isoformat(),
}


@pytest.mark.parametrize("kind", ["telemetry", "ota/status", "events", "cmd/result"])
@pytest.mark.parametrize("ts", TS_RANGE.values(), ids=TS_RANGE.keys())
def test_ts_out_of_range_or_window_is_refused_with_ts_range(ts: str, kind: str) -> None:
    body = {"metrics": {}, "state": "checking", "type": "x", "id": "c", "ok": True}
    with pytest.raises(InvalidInput) as info:
        _parse(_payload(ts=ts, **body), kind)
    assert info.value.code == "ingest.ts_range"


@pytest.mark.parametrize(
    "ts",
    [NOW - timedelta(days=7), NOW + timedelta(hours=1), NOW],
    ids=["window-start", "window-end", "now"],
)
def test_ts_inside_the_window_is_accepted(ts: datetime) -> None:
    assert _parse(_telemetry(ts=ts.isoformat())).ts == ts  # type: ignore[attr-defined]


def _max_e22_metrics() -> dict[str, float]:
    """As many 1e22 metrics as fit 16 KiB as sent ("1e22"), which the store encodes "1e+22"."""
    return {f"m{i:03d}{'x' * 50}": 1e22 for i in range(256)}


# Finding 2: these passed the old checks but the store refused them, failing the whole batch.
STORE_LIMITS = {
    "e22-expands-past-16KiB": (
        b'{"ts":"2026-06-01T11:59:00Z","seq":1,"metrics":{'
        + b",".join(f'"m{i:03d}{"x" * 50}":1e22'.encode() for i in range(256))
        + b"}}",
        "ingest.too_large",
    ),
    "int-over-64-bits": (_telemetry(metrics={"t": 2**64}), "ingest.range"),
    "int-under-64-bits": (_telemetry(metrics={"t": -(2**63) - 1}), "ingest.range"),
    "float-overflow-to-inf": (
        b'{"ts":"2026-06-01T11:59:00Z","seq":1,"metrics":{"t":1e400}}',
        "ingest.range",
    ),
    "lone-surrogate-name": (
        b'{"ts":"2026-06-01T11:59:00Z","seq":1,"metrics":{"\\ud800":1}}',
        "ingest.not_json",
    ),
    "lone-surrogate-anywhere": (
        b'{"ts":"2026-06-01T11:59:00Z","seq":1,"metrics":{},"x":"\\udfff"}',
        "ingest.not_json",
    ),
    "nul-in-name": (_telemetry(metrics={"a\x00b": 1}), "ingest.field"),
    "seq-over-bigint": (_telemetry(seq=2**63), "ingest.field"),
    "deep-nesting": (_telemetry(x=json.loads("[" * 40 + "]" * 40)), "ingest.too_deep"),
    "boot-too-long": (_telemetry(boot="b" * 33), "ingest.field"),
    "boot-not-text": (_telemetry(boot=7), "ingest.field"),
    "boot-odd-chars": (_telemetry(boot="a/b"), "ingest.field"),
}


@pytest.mark.parametrize(("payload", "code"), STORE_LIMITS.values(), ids=STORE_LIMITS.keys())
def test_what_the_store_would_refuse_is_refused_before_the_batch(payload: bytes, code: str) -> None:
    assert len(payload) <= 16 * 1024
    with pytest.raises(InvalidInput) as info:
        _parse(payload)
    assert info.value.code == code


def test_the_e22_case_really_is_under_16KiB_as_sent_and_over_as_stored() -> None:
    payload, _ = STORE_LIMITS["e22-expands-past-16KiB"]
    assert len(payload) <= 16 * 1024
    stored = json.dumps(_max_e22_metrics(), ensure_ascii=False).encode()
    assert len(stored) > MAX_METRICS_BYTES
    with pytest.raises(InvalidInput):
        check_metrics(_max_e22_metrics())


def test_boot_is_optional_and_kept() -> None:
    assert _parse(_telemetry()).boot is None  # type: ignore[attr-defined]
    assert _parse(_telemetry(boot="0a1b2c3d4e5f6071")).boot == "0a1b2c3d4e5f6071"  # type: ignore[attr-defined]


# -- the ingest.rejected limiter ----------------------------------------------------------


def test_one_summary_per_device_per_window_with_count_and_codes() -> None:
    limiter = RejectLimiter(window=timedelta(minutes=5), max_devices=10)
    for i in range(500):
        limiter.add("dev-aaaaaaaa", "ingest.ts_range" if i % 2 else "ingest.too_large", now=NOW)
    limiter.add("dev-bbbbbbbb", "ingest.field", now=NOW + timedelta(minutes=1))
    assert limiter.due(now=NOW + timedelta(minutes=4)) == []
    (summary,) = limiter.due(now=NOW + timedelta(minutes=5))
    assert (summary.subject, summary.count) == ("device:dev-aaaaaaaa", 500)
    assert summary.codes == {"ingest.ts_range": 250, "ingest.too_large": 250}
    assert [s.subject for s in limiter.due(now=NOW, flush=True)] == ["device:dev-bbbbbbbb"]
    assert len(limiter) == 0


def test_limiter_memory_is_bounded_and_the_rest_is_summed() -> None:
    limiter = RejectLimiter(window=timedelta(minutes=5), max_devices=3)
    for i in range(1000):
        limiter.add(f"dev-{i:08d}", f"ingest.code{i % 40}", now=NOW)
    assert len(limiter) == 3
    summaries = limiter.due(now=NOW + timedelta(minutes=5))
    assert len(summaries) == 4
    overflow = summaries[-1]
    assert (overflow.subject, overflow.count) == (OVERFLOW_SUBJECT, 997)
    assert len(overflow.codes) <= 17  # 16 codes + "other"


def test_ota_report_text_a_database_cannot_hold_is_refused() -> None:
    from trustfleet.ota.status_report import parse_ota_status

    with pytest.raises(InvalidInput) as info:
        parse_ota_status({"state": "failed", "reason": "\ud800"})
    assert info.value.code == "ingest.field"


def test_the_store_refuses_a_datetime_out_of_range_in_utc() -> None:
    from datetime import timezone

    from trustfleet.store._validate import aware

    year_1 = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(InvalidInput) as info:
        aware(year_1, name="device_ts")
    assert info.value.code == "store.bad_value"
