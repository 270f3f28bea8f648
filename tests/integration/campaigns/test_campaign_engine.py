"""The campaign engine on the store (SQLite and PostgreSQL): waves, threshold, reports, locks.

``tick`` is driven with a recording ``send`` and a hand-moved clock; device reports go through
the same functions the ingest workers use (``parse_message`` + ``store_batch``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from campaignkit import MODEL, OTHER_MODEL, RELEASE, Clock, Sent, seed

from trustfleet.errors import Conflict, InvalidInput, NotFound
from trustfleet.services.campaigns import (
    abort,
    campaign_status,
    create_campaign,
    resume,
    tick,
)
from trustfleet.services.ingest import parse_message, store_batch
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration


def _create(rt: Runtime, clock: Clock, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "version": RELEASE, "model": MODEL, "devices": None, "waves": (10, 50, 100),
        "max_failure_rate": 0.25, "now": clock.now, "device_timeout_s": 600,
    }  # fmt: skip
    args.update(overrides)
    return create_campaign(rt, **args)


def _report(rt: Runtime, clock: Clock, device_id: str, campaign: str | None, state: str,
            **fields: Any) -> None:  # fmt: skip
    """One ``ota/status`` message through the ingest path (parse, then a batch)."""
    body = {"ts": clock.now.isoformat(), "seq": 1, "campaign": campaign, "state": state, **fields}
    message = parse_message(
        f"tf/v1/d/{device_id}/ota/status", json.dumps(body).encode(), now=clock.now
    )
    store_batch(rt.uow, [message], now=clock.now)


def _events(rt: Runtime, prefix: str) -> list[Any]:
    with rt.uow.begin(read_only=True) as tx:
        return [e for e in tx.events.list(limit=1000) if e.type.startswith(prefix)]


def _states(rt: Runtime, campaign_id: str) -> dict[str, str]:
    return {d.device_id: d.state for d in campaign_status(rt, campaign_id).devices}


def test_create_plans_waves_and_records_up_to_date_devices(crt: Runtime, clock: Clock) -> None:
    seed(crt, clock.now, count=20, firmware={0: "2.0.0", 1: "3.1.0", 2: "1.9.9"})
    seed(crt, clock.now, count=3, model=OTHER_MODEL, prefix="oth")
    campaign = _create(crt, clock)
    assert (campaign.state, campaign.current_wave, campaign.waves) == ("running", 1, (10, 50, 100))
    status = campaign_status(crt, campaign.id)
    # 18 to update: ceil(1.8)=2, ceil(9)=9, 18 -> waves of 2, 7, 9; two already up to date.
    assert [w.size for w in status.waves] == [2, 2, 7, 9]
    assert status.waves[0].states == {"up_to_date": 2}
    assert {d.device_id for d in status.devices if d.wave == 0} == {"dev-000000", "dev-000001"}
    assert not any(d.device_id.startswith("oth") for d in status.devices)
    (created,) = _events(crt, "campaign.")
    assert created.type == "campaign.created" and created.subject == f"campaign:{campaign.id}"
    assert created.details["wave_sizes"] == [2, 7, 9]
    assert campaign.id.startswith("cmp-") and len(campaign.id) == 36


BAD_CREATE = {
    "no-release": ({"version": "9.9.9"}, NotFound, "campaign.release"),
    "bad-version": ({"version": "2.0"}, InvalidInput, "ota.version.invalid"),
    "waves-not-100": ({"waves": (10, 50)}, InvalidInput, "campaign.waves"),
    "waves-decreasing": ({"waves": (50, 10, 100)}, InvalidInput, "campaign.waves"),
    "rate-above-1": ({"max_failure_rate": 5.0}, InvalidInput, "campaign.rate"),
    "unknown-device": ({"devices": ["nope-0000"]}, NotFound, "campaign.device"),
    "other-model": ({"devices": ["oth-000000"]}, InvalidInput, "campaign.device"),
    "bad-model": ({"model": "bad model!"}, InvalidInput, "ota.model.invalid"),
}


@pytest.mark.parametrize("case", BAD_CREATE.values(), ids=BAD_CREATE.keys())
def test_bad_campaigns_are_refused_and_leave_nothing(
    crt: Runtime, clock: Clock, case: tuple[dict[str, Any], type[Exception], str]
) -> None:
    seed(crt, clock.now, count=3)
    seed(crt, clock.now, count=1, model=OTHER_MODEL, prefix="oth")
    overrides, error, code = case
    with pytest.raises(error) as info:
        _create(crt, clock, **overrides)
    assert getattr(info.value, "code", None) == code
    with crt.uow.begin(read_only=True) as tx:
        assert tx.campaigns.list() == []


def test_waves_advance_and_the_campaign_completes(crt: Runtime, clock: Clock) -> None:
    devices = seed(crt, clock.now, count=10)
    campaign = _create(crt, clock, waves=(10, 50, 100))
    sent = Sent()
    result = tick(crt, now=clock.now, send=sent)
    assert result.notified == 1 and len(sent.calls) == 1
    first, args = sent.calls[0]
    assert args == {"version": RELEASE, "campaign": campaign.id}
    assert tick(crt, now=clock.advance(1), send=sent).notified == 0  # notified once only
    for state in ("checking", "downloading", "installing", "rebooting"):
        _report(crt, clock, first, campaign.id, state, bytes=10, total=100)
    _report(crt, clock, first, campaign.id, "committed", version=RELEASE)
    _report(crt, clock, first, campaign.id, "downloading", bytes=5)  # late: ignored
    assert _states(crt, campaign.id)[first] == "committed"
    with crt.uow.begin(read_only=True) as tx:
        assert tx.devices.require(first).firmware_version == RELEASE
    result = tick(crt, now=clock.advance(1), send=sent)
    assert result.advanced == (campaign.id,) and result.notified == 4  # wave 2: 5 cumulative
    for device_id in sent.devices[1:]:
        _report(crt, clock, device_id, campaign.id, "committed", version=RELEASE)
    tick(crt, now=clock.advance(1), send=sent)
    assert len(sent.devices) == 10 == len(set(sent.devices)) and set(sent.devices) == set(devices)
    for device_id in sent.devices[5:]:
        _report(crt, clock, device_id, campaign.id, "up_to_date")
    result = tick(crt, now=clock.advance(1), send=sent)
    assert result.completed == (campaign.id,)
    status = campaign_status(crt, campaign.id)
    assert status.campaign.state == "completed" and status.failure_rate == 0.0
    types = [e.type for e in _events(crt, "campaign.")]
    assert types == ["campaign.created", "campaign.wave_started", "campaign.wave_started",
                     "campaign.completed"]  # fmt: skip
    assert len(_events(crt, "ota.update.committed")) == 5


def test_failures_over_the_threshold_halt_the_campaign(crt: Runtime, clock: Clock) -> None:
    seed(crt, clock.now, count=20)
    campaign = _create(crt, clock, waves=(20, 100), max_failure_rate=0.25)
    sent = Sent()
    tick(crt, now=clock.now, send=sent)
    wave1 = sent.devices
    assert len(wave1) == 4
    _report(crt, clock, wave1[0], campaign.id, "committed", version=RELEASE)
    _report(crt, clock, wave1[1], campaign.id, "failed", reason="disk full", code="x.disk")
    assert tick(crt, now=clock.advance(1), send=sent).halted == (campaign.id,)  # 1 of 2 > 25%
    status = campaign_status(crt, campaign.id)
    assert status.campaign.state == "halted", status.campaign
    assert "50.0%" in (status.campaign.reason or "") and status.failures == 1
    (halted,) = _events(crt, "campaign.halted")
    assert halted.details["failures"] == 1 and halted.details["finished"] == 2
    (failed,) = _events(crt, "ota.update.failed")
    assert failed.details["reason"] == "disk full" and failed.actor == f"device:{wave1[1]}"
    assert tick(crt, now=clock.advance(1), send=sent).notified == 0
    assert len(sent.devices) == 4
    with pytest.raises(Conflict):
        resume(crt, campaign.id, now=clock.now)
    assert abort(crt, campaign.id, now=clock.now).state == "aborted"
