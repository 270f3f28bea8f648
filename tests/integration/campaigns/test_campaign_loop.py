"""The whole loop with the real broker and ingest: ``server run`` ticks campaigns, devices
(MQTT clients with LDevIDs) answer ``update`` with ``ota/status`` reports, ingest applies them.

One module-scoped server; each test rolls out its own release. What a device does is planned
per release and wave before the campaign exists (devices answer at once, faster than a CLI).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from loopkit import MODEL, CampaignFleet, wait_for

from trustfleet.services.campaigns import create_campaign, pause, resume

pytestmark = pytest.mark.integration

SETTLE_S = 1.5
"""Several ticks (tick_s = 0.2) for something that must NOT happen."""


def _until_state(fleet: CampaignFleet, campaign_id: str, state: str) -> Any:
    return wait_for(
        lambda: (s := fleet.status(campaign_id)).campaign.state == state and s,
        what=f"campaign {campaign_id} to be {state}",
    )


def test_waves_advance_then_failures_halt_the_campaign(campaign_fleet: CampaignFleet) -> None:
    fleet = campaign_fleet
    fleet.plans["2.0.0"] = {3: "fail"}
    doc = fleet.cli_json("create", "--release", "2.0.0", "--model", MODEL,
                         "--waves", "10,50,100%", "--max-failure-rate", "30%")  # fmt: skip
    campaign_id = doc["id"]
    assert [w["size"] for w in doc["waves"]] == [0, 1, 4, 5]
    status = _until_state(fleet, campaign_id, "halted")
    by_wave = {w.wave: dict(w.states) for w in status.waves}
    assert by_wave[1] == {"committed": 1} and by_wave[2] == {"committed": 4}, by_wave
    # 5 committed; failures of wave 3 cross 30% at the 3rd (3 of 8 = 37.5%).
    assert by_wave[3].get("failed", 0) >= 3, by_wave
    assert "exceeds 30.0%" in (status.campaign.reason or "")
    committed = [d.device_id for d in status.devices if d.wave in (1, 2)]
    with fleet.rt.uow.begin(read_only=True) as tx:
        assert {tx.devices.require(d).firmware_version for d in committed} == {"2.0.0"}
        events = [e.type for e in tx.events.list(limit=1000, subject=f"campaign:{campaign_id}")]
        failed = tx.events.list(limit=1000, type="ota.update.failed")
    assert events[0] == "campaign.created" and events[-1] == "campaign.halted", events
    assert {e.details["campaign"] for e in failed} == {campaign_id}
    assert failed[0].details["code"] == "ota.download.hash"
    shown = fleet.cli("status", campaign_id)
    assert shown.returncode == 0 and "halted" in shown.stdout, shown.stderr


def test_pause_resume_and_a_restarted_service_continues(campaign_fleet: CampaignFleet) -> None:
    fleet = campaign_fleet
    fleet.plans["2.1.0"] = {1: "hold", 2: "hold"}
    gate = fleet.gates["2.1.0"]
    # The service API this time (the CLI is the same call): the store is all it needs.
    campaign_id = create_campaign(
        fleet.rt, version="2.1.0", model=None, devices=None, waves=(10, 50, 100),
        max_failure_rate=0.05, now=datetime.now(UTC),
    ).id  # fmt: skip
    wait_for(lambda: len(fleet.commands_for(campaign_id)) == 1, what="wave 1's command")
    pause(fleet.rt, campaign_id, now=datetime.now(UTC))
    gate.set()  # wave 1 finishes while paused ...
    wait_for(
        lambda: fleet.status(campaign_id).waves[1].states.get("committed") == 1,
        what="wave 1 to finish",
    )
    time.sleep(SETTLE_S)
    status = fleet.status(campaign_id)
    # ... and yet no second wave starts: a paused campaign notifies nobody.
    assert status.campaign.state == "paused" and status.campaign.current_wave == 1
    assert {d.state for d in status.devices if d.wave >= 2} == {"pending"}
    assert len(fleet.commands_for(campaign_id)) == 1
    gate.clear()  # wave 2 will hold
    resume(fleet.rt, campaign_id, now=datetime.now(UTC))
    wait_for(lambda: len(fleet.commands_for(campaign_id)) == 5, what="the second wave")
    fleet.stop()  # the whole service, ticker included, goes away mid-wave
    assert fleet.status(campaign_id).campaign.state == "running"
    fleet.start()
    fleet.wait_ingest()
    gate.set()
    done = _until_state(fleet, campaign_id, "completed")
    assert done.states == {"committed": 10} and done.failure_rate == 0.0
    commands = fleet.commands_for(campaign_id)
    assert len(commands) == 10 == len({c["id"] for c in commands})
    # Every device was told once, across the restart.
    assert sorted(d.device_id for d in fleet.devices if any(
        c["args"].get("campaign") == campaign_id for c in d.commands)) == sorted(
        d.device_id for d in fleet.devices)  # fmt: skip


def test_abort_ends_a_campaign(campaign_fleet: CampaignFleet) -> None:
    fleet = campaign_fleet
    fleet.plans["2.2.0"] = {1: "silent", 2: "silent"}
    doc = fleet.cli_json("create", "--release", "2.2.0", "--waves", "50,100%",
                         "--max-failure-rate", "100%", "--device-timeout", "1h")  # fmt: skip
    campaign_id = doc["id"]
    wait_for(lambda: len(fleet.commands_for(campaign_id)) == 5, what="the first wave")
    aborted = fleet.cli_json("abort", campaign_id)
    assert aborted["state"] == "aborted"
    time.sleep(SETTLE_S)
    status = fleet.status(campaign_id)
    assert status.campaign.state == "aborted" and len(fleet.commands_for(campaign_id)) == 5
    assert sum(1 for d in status.devices if d.state == "pending") == 5
    again = fleet.cli("resume", campaign_id)
    assert again.returncode == 5 and "aborted" in again.stderr and "Hint" in again.stderr
