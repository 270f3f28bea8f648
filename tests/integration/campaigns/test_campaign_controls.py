"""Pause/resume/abort, time-outs, unmatched reports, failed sends and concurrent tickers."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from campaignkit import RELEASE, Clock, Sent, make_runtime, seed
from test_campaign_engine import _create, _events, _report, _states

from trustfleet.errors import Conflict, NotFound
from trustfleet.ota.status_report import OtaStatus
from trustfleet.services.campaigns import (
    abort,
    campaign_status,
    pause,
    record_ota_status,
    resume,
    tick,
)
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration


def test_pause_stops_notifying_and_resume_continues(crt: Runtime, clock: Clock) -> None:
    seed(crt, clock.now, count=4)
    campaign = _create(crt, clock, waves=(25, 100))
    sent = Sent()
    tick(crt, now=clock.now, send=sent)
    assert pause(crt, campaign.id, now=clock.advance(1)).state == "paused"
    with pytest.raises(Conflict) as info:
        pause(crt, campaign.id, now=clock.now)
    assert info.value.code == "campaign.state" and info.value.hint
    # A paused campaign notifies nobody and times nobody out, even long after.
    _report(crt, clock, sent.devices[0], campaign.id, "downloading", bytes=1, total=2)
    assert tick(crt, now=clock.advance(10_000), send=sent).campaigns == 0
    assert len(sent.devices) == 1
    assert resume(crt, campaign.id, now=clock.now).state == "running"
    # The in-flight device's clock restarted at resume: not timed out right away.
    assert tick(crt, now=clock.advance(1), send=sent).timed_out == 0
    _report(crt, clock, sent.devices[0], campaign.id, "committed", version=RELEASE)
    assert tick(crt, now=clock.advance(1), send=sent).notified == 3
    assert abort(crt, campaign.id, now=clock.advance(1)).state == "aborted"
    assert tick(crt, now=clock.advance(1), send=sent).campaigns == 0
    with pytest.raises(Conflict):
        abort(crt, campaign.id, now=clock.now)
    types = [e.type for e in _events(crt, "campaign.")]
    assert types == ["campaign.created", "campaign.paused", "campaign.resumed",
                     "campaign.wave_started", "campaign.aborted"]  # fmt: skip
    with pytest.raises(NotFound):
        pause(crt, "cmp-unknown", now=clock.now)


def test_silent_devices_time_out_and_count_as_failures(crt: Runtime, clock: Clock) -> None:
    seed(crt, clock.now, count=4)
    campaign = _create(crt, clock, waves=(50, 100), max_failure_rate=0.5, device_timeout_s=60)
    sent = Sent()
    tick(crt, now=clock.now, send=sent)
    ok, silent = sent.devices
    _report(crt, clock, ok, campaign.id, "committed", version=RELEASE)
    _report(crt, clock, silent, campaign.id, "downloading", bytes=1, total=9)
    assert tick(crt, now=clock.advance(59), send=sent).timed_out == 0
    result = tick(crt, now=clock.advance(2), send=sent)
    # 1 of 2 failed = 50%, not above 50%: the next wave starts.
    assert result.timed_out == 1 and result.advanced == (campaign.id,) and result.notified == 2
    status = campaign_status(crt, campaign.id)
    row = next(d for d in status.devices if d.device_id == silent)
    assert (row.state, row.code) == ("timed_out", "campaign.timeout")
    # The device's own late finish replaces the service's guess, once.
    _report(crt, clock, silent, campaign.id, "committed", version=RELEASE)
    _report(crt, clock, silent, campaign.id, "failed")
    assert _states(crt, campaign.id)[silent] == "committed"
    assert campaign_status(crt, campaign.id).failure_rate == 0.0


def test_unmatched_reports_are_only_security_events(crt: Runtime, clock: Clock) -> None:
    (dev, other) = seed(crt, clock.now, count=2)
    campaign = _create(crt, clock, devices=[dev], waves=(100,))
    before = _states(crt, campaign.id)
    _report(crt, clock, dev, "cmp-" + "0" * 32, "committed", version=RELEASE)
    _report(crt, clock, other, campaign.id, "failed")  # not a device of this campaign
    _report(crt, clock, dev, None, "rolled_back")
    _report(crt, clock, dev, "cmp-nope", "downloading", bytes=1)  # progress: not even logged
    assert _states(crt, campaign.id) == before
    events = _events(crt, "ota.")
    assert [e.type for e in events] == ["ota.status.unmatched"] * 3
    with crt.uow.begin(read_only=True) as tx:
        assert tx.devices.require(dev).firmware_version is None
    outcome = record_ota_status(crt, dev, OtaStatus(state="checking"), now=clock.now)
    assert outcome == "unmatched"


def test_a_committed_other_version_is_a_failure(crt: Runtime, clock: Clock) -> None:
    (dev,) = seed(crt, clock.now, count=1)
    campaign = _create(crt, clock, waves=(100,))
    tick(crt, now=clock.now, send=Sent())
    report = OtaStatus(state="committed", campaign=campaign.id, version="1.5.0")
    assert record_ota_status(crt, dev, report, now=clock.now) == "applied"
    row = campaign_status(crt, campaign.id).devices[0]
    assert (row.state, row.code) == ("failed", "campaign.version_mismatch")
    with crt.uow.begin(read_only=True) as tx:
        assert tx.devices.require(dev).firmware_version == "1.5.0"
    assert record_ota_status(crt, dev, report, now=clock.now) == "ignored"


def test_a_failed_send_leaves_devices_pending(crt: Runtime, clock: Clock) -> None:
    seed(crt, clock.now, count=3)
    campaign = _create(crt, clock, waves=(100,))
    result = tick(crt, now=clock.now, send=Sent(fail=True))
    assert result.notified == 0 and result.errors == (campaign.id,)
    assert set(_states(crt, campaign.id).values()) == {"pending"}
    sent = Sent()
    assert tick(crt, now=clock.advance(1), send=sent, max_notify=2).notified == 2
    assert tick(crt, now=clock.advance(1), send=sent, max_notify=2).notified == 1
    assert len(set(sent.devices)) == 3


def test_nothing_to_update_completes_at_once(crt: Runtime, clock: Clock) -> None:
    seed(crt, clock.now, count=2, firmware={0: RELEASE, 1: "2.0.1"})
    campaign = _create(crt, clock)
    assert campaign.state == "completed" and "already" in (campaign.reason or "")
    assert tick(crt, now=clock.now, send=Sent()).campaigns == 0


def test_concurrent_tickers_notify_each_device_once(
    crt: Runtime, clock: Clock, db_url: str, tmp_path: Any
) -> None:
    seed(crt, clock.now, count=60)
    campaign = _create(crt, clock, waves=(100,))
    others = [make_runtime(db_url, tmp_path, max_notify=7) for _ in range(3)]
    calls: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def send(device_id: str, args: dict[str, Any]) -> None:
        assert args["campaign"] == campaign.id
        with lock:
            calls.append(device_id)

    def run(rt: Runtime) -> None:
        try:
            for _ in range(6):
                tick(rt, now=clock.now, send=send)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(rt,)) for rt in others]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for rt in others:
            rt.close()
    assert errors == []
    assert sorted(calls) == sorted(set(calls)), "a device was notified twice"
    states = _states(crt, campaign.id)
    assert {d for d, s in states.items() if s == "notified"} == set(calls)
    # Tickers skip a campaign another one holds (PostgreSQL): finish with one ticker.
    for _ in range(20):
        if tick(crt, now=clock.now, send=send).notified == 0:
            break
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 60
