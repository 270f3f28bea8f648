"""The demo's update stages: a campaign in waves, and a failed health check rolled back."""

from __future__ import annotations

from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.scenarios._common import V1, V2, publish, run_campaign
from trustfleet.sim.scenarios._result import Observed, stage

__all__ = ["rollback", "update"]

_HEALTH_FAIL = {"health_check": "fail"}
"""The simulated health check fails after the update (simulation-only fault)."""


@stage("update")
def update(fleet: SimFleet) -> Observed:
    """A new release rolled out in two waves to every device but the rollback one."""
    released = publish(fleet, V2)
    wave = [d for d in fleet.device_ids if d != fleet.device("rollback")]
    fleet.on_progress(f"campaign: {V1} → {V2} over {len(wave)} devices in two waves", 0, 0)
    status = run_campaign(fleet, wave, waves=[50.0, 100.0], version=V2)
    committed = [r.device_id for r in status.devices if r.state == "committed"]
    by_delta = sum(1 for r in status.devices if r.state == "committed" and r.delta)
    versions = fleet.firmware(wave)
    return Observed(
        {
            "the campaign completed": status.campaign.state == "completed",
            "every device committed": len(committed) == len(wave),
            f"the store says every device runs {V2}": all(v == V2 for v in versions.values()),
            "most devices updated by delta": by_delta > len(wave) // 2,
        },
        {
            "release": released,
            "campaign": status.campaign.id,
            "state": status.campaign.state,
            "waves": [
                {"wave": w.wave, "size": w.size, "states": dict(w.states)} for w in status.waves
            ],
            "committed": len(committed),
            "by_delta": by_delta,
            "devices": len(wave),
        },
    )


@stage("rollback")
def rollback(fleet: SimFleet) -> Observed:
    """A device whose health check fails after the update boots its old slot again."""
    agent = fleet.agent("rollback")
    agent.set_faults(_HEALTH_FAIL)
    try:
        status = run_campaign(fleet, [agent.device_id], waves=[100.0], version=V2)
    finally:
        agent.set_faults({})
    row = next((r for r in status.devices if r.device_id == agent.device_id), None)
    firmware = fleet.firmware([agent.device_id])[agent.device_id]
    slot = agent.boot_env().get("boot_slot")
    return Observed(
        {
            "the device rolled back": row is not None and row.state == "rolled_back",
            "the campaign halted": status.campaign.state == "halted",
            "the device boots slot a": slot == "a",
            f"the store says it runs {V1}": firmware in (None, V1),
        },
        {
            "device": agent.device_id,
            "device_state": row.state if row else None,
            "reason": row.reason if row else None,
            "campaign_state": status.campaign.state,
            "boot_slot": slot,
            "firmware_version": firmware or V1,
        },
    )
