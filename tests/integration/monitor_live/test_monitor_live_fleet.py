"""The live path end to end: a served fleet of simulated agents publishing metrics over MQTT,
ingest storing them, monitor#0 scoring them and the playbook quarantining an exfiltrator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.scenarios import DEMO

pytestmark = pytest.mark.integration

SETUP_STAGES = ("init", "release", "provision", "serve", "enroll")
WAIT_S = 60.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """A served fleet of four enrolled devices (the demo's first stages)."""
    fleet = SimFleet(tmp_path_factory.mktemp("monitor-live-fleet"), size=4)
    stages = {stage.name: stage for stage in DEMO}
    try:
        for name in SETUP_STAGES:
            result = stages[name](fleet)
            assert result.ok, f"setup stage {name} failed: {result.to_json()}"
        yield fleet
    finally:
        fleet.stop()


def test_an_agent_reports_its_own_proc_metrics(fleet: SimFleet) -> None:
    device_id = fleet.device_ids[0]
    agent = fleet.agent(device_id)
    agent.configure({"monitoring": {"interval_s": 1}})
    since = fleet.metrics_counts()
    agent.restart()
    fleet.wait_metrics([device_id], windows=2, since=since, timeout_s=WAIT_S)
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        (_, record), *_ = [w for w in tx.monitor_metrics.after(0) if w[1].device_id == device_id]
    assert record.model == fleet.model and record.source == "device"
    assert record.numbers["num-processes"] >= 1 and record.sets["executables"]


def test_the_detect_stage_catches_and_quarantines_the_exfiltrator(fleet: SimFleet) -> None:
    stages = {stage.name: stage for stage in DEMO}
    result = stages["detect"](fleet)
    assert result.ok, result.to_json()
    details = result.details
    assert details["other_alerts"] == {}
    assert fleet.quarantine_of(details["device"]) is not None
    counts = fleet.metrics_counts()
    assert counts[details["device"]] >= 1
    assert all(counts[d] >= 2 for d in fleet.running(but=[details["device"]])), counts
