"""The pure campaign rules: wave planning, the failure threshold, report order and parsing."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.errors import InvalidInput
from trustfleet.ota import campaign_rules as rules
from trustfleet.ota.status_report import parse_ota_status
from trustfleet.services.ingest import ingest_subscriptions, parse_message
from trustfleet.store import CAMPAIGN_DEVICE_STATES, CAMPAIGN_STATES


def test_store_and_domain_agree_on_the_states() -> None:
    assert CAMPAIGN_STATES == rules.CAMPAIGN_STATES
    assert CAMPAIGN_DEVICE_STATES == rules.DEVICE_UPDATE_STATES


@pytest.mark.parametrize(
    ("count", "waves", "expected"),
    [
        (100, (1, 10, 50, 100), (1, 10, 50, 100)),
        (1000, (1, 10, 50, 100), (10, 100, 500, 1000)),
        (18, (10, 50, 100), (2, 9, 18)),
        (10, (10, 50, 100), (1, 5, 10)),
        (3, (1, 10, 50, 100), (1, 2, 3, 3)),  # fewer devices than waves: the last is empty
        (5, (1, 2, 3, 100), (1, 2, 3, 5)),  # each wave at least one device
        (1, (100,), (1,)),
        (7, (33.3, 66.6, 100), (3, 5, 7)),
    ],
)
def test_plan_waves(count: int, waves: tuple[float, ...], expected: tuple[int, ...]) -> None:
    assert rules.plan_waves(count, waves) == expected


@given(
    count=st.integers(min_value=1, max_value=100_000),
    waves=st.lists(st.floats(min_value=0.01, max_value=99.99), max_size=rules.MAX_WAVES - 1),
)
def test_plan_waves_invariants(count: int, waves: list[float]) -> None:
    percents = [*sorted(set(waves)), 100.0]
    plan = rules.plan_waves(count, percents)
    assert plan[-1] == count and len(plan) == len(percents)
    assert all(b >= a for a, b in itertools.pairwise(plan))
    for i, (cumulative, percent) in enumerate(zip(plan, percents, strict=True)):
        assert cumulative >= min(count, math.floor(count * percent / 100))
        assert cumulative >= min(count, i + 1)  # one more device per wave while any remain


BAD_WAVES = {
    "empty": "",
    "not-numbers": "a,b,100",
    "not-ending-at-100": "10,50",
    "decreasing": "50,10,100",
    "repeated": "10,10,100",
    "zero": "0,100",
    "over-100": "50,150",
    "nan": "nan,100",
    "too-many": ",".join(str(i) for i in range(1, 22)) + ",100",
    "huge": "1," * 500 + "100",
}


@pytest.mark.parametrize("text", BAD_WAVES.values(), ids=BAD_WAVES.keys())
def test_bad_waves_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        rules.parse_waves(text)
    assert info.value.code == "campaign.waves" and info.value.hint


def test_waves_rates_and_durations_parse() -> None:
    assert rules.parse_waves("1,10,50,100%") == (1, 10, 50, 100)
    assert rules.parse_waves("25%, 100%") == (25, 100)
    assert rules.parse_rate("5%") == 0.05 and rules.parse_rate("0.1") == 0.1
    assert rules.parse_duration("30m") == 1800 and rules.parse_duration("90") == 90
    assert rules.parse_duration("2h") == 7200 and rules.parse_duration("1d") == 86400
    for bad in ("5", "-1%", "101%", "x", "nan"):
        with pytest.raises(InvalidInput):
            rules.parse_rate(bad)
    for bad in ("0s", "8d", "30 minutes", "-5m", ""):
        with pytest.raises(InvalidInput):
            rules.parse_duration(bad)


def _step(counts: dict[tuple[int, str], int], *, wave: int = 1, rate: float = 0.1) -> Any:
    return rules.next_step(current_wave=wave, wave_count=3, counts=counts, max_failure_rate=rate)


def test_next_step_halts_only_above_the_threshold_over_finished_devices() -> None:
    # 1 failure of 10 finished = 10%: not above 10%. In-flight devices do not count.
    at = _step({(1, "committed"): 9, (1, "failed"): 1, (2, "downloading"): 50}, wave=2)
    assert at.action == "wait" and at.rate == pytest.approx(0.1)
    over = _step({(1, "committed"): 9, (1, "timed_out"): 2, (2, "notified"): 5}, wave=2)
    assert over.action == "halt" and over.failures == 2 and over.finished == 11
    assert "exceeds 10.0%" in (over.reason or "")
    # Wave 0 (already up to date) never dilutes the rate.
    canary = _step({(0, "up_to_date"): 100, (1, "rolled_back"): 1, (2, "pending"): 9})
    assert canary.action == "halt" and canary.rate == 1.0


def test_next_step_advances_when_a_wave_finished_and_completes_at_the_end() -> None:
    assert _step({(1, "committed"): 1, (2, "pending"): 4}).action == "advance"
    assert _step({(1, "committed"): 1, (2, "pending"): 4}).wave == 2
    assert _step({(1, "installing"): 1, (2, "pending"): 4}).action == "wait"
    empty_waves = _step({(1, "committed"): 3}, wave=1)  # waves 2 and 3 have no device
    assert empty_waves.action == "complete" and empty_waves.wave == 3
    last = _step({(1, "committed"): 1, (2, "up_to_date"): 1, (3, "committed"): 2}, wave=3)
    assert last.action == "complete" and last.rate == 0.0
    assert _step({(1, "failed"): 1, (3, "committed"): 9}, wave=3, rate=0.2).action == "complete"


@pytest.mark.parametrize(
    ("current", "reported", "allowed"),
    [
        ("pending", "checking", True),
        ("notified", "downloading", True),
        ("downloading", "downloading", True),  # progress
        ("installing", "downloading", False),  # late
        ("committed", "downloading", False),  # the contract's example
        ("committed", "failed", False),
        ("failed", "committed", False),
        ("timed_out", "committed", True),  # the device's own finish beats our guess
        ("timed_out", "downloading", False),
        ("rebooting", "rolled_back", True),
    ],
)
def test_reports_only_move_forward(current: str, reported: str, allowed: bool) -> None:
    assert rules.may_move(current, reported) is allowed


def _msg(**fields: Any) -> bytes:
    body = {"ts": "2026-11-22T12:00:00+00:00", "seq": 3, "state": "downloading", **fields}
    return json.dumps(body).encode()


TOPIC = "tf/v1/d/dev-000001/ota/status"
REPORT_NOW = datetime(2026, 11, 22, 12, 0, 5, tzinfo=UTC)  # the reports' ts, 5 s earlier
BAD_REPORTS = {
    "no-state": _msg(state=None),
    "unknown-state": _msg(state="exploded"),
    "service-only-state": _msg(state="timed_out"),
    "long-reason": _msg(reason="x" * 257),
    "empty-campaign": _msg(campaign=""),
    "campaign-not-text": _msg(campaign=7),
    "bad-version": _msg(version="2.0"),
    "negative-bytes": _msg(bytes=-1),
    "huge-total": _msg(total=2**63),
    "bytes-bool": _msg(bytes=True),
    "delta-not-bool": _msg(delta="yes"),
    "no-seq": json.dumps({"ts": "2026-11-22T12:00:00+00:00", "state": "checking"}).encode(),
}


@pytest.mark.parametrize("payload", BAD_REPORTS.values(), ids=BAD_REPORTS.keys())
def test_bad_ota_reports_are_refused_by_ingest(payload: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_message(TOPIC, payload, now=REPORT_NOW)
    assert info.value.code == "ingest.field"


def test_a_good_ota_report_parses_and_is_subscribed() -> None:
    message = parse_message(
        TOPIC,
        _msg(campaign="cmp-1", version="2.0.0", from_version="1.0.0", bytes=5, total=10,
             delta=True, reason="r" * 256, code="ota.x"),
        now=REPORT_NOW,
    )  # fmt: skip
    assert message.kind == "ota/status" and message.ota is not None
    assert (message.ota.state, message.ota.bytes, message.ota.delta) == ("downloading", 5, True)
    assert parse_ota_status({"state": "committed"}).campaign is None
    assert "$share/ingest/tf/v1/d/+/ota/status" in ingest_subscriptions()
    with pytest.raises(InvalidInput):
        parse_message("tf/v1/d/dev-000001/ota/other", _msg(), now=REPORT_NOW)
