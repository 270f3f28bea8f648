"""Devices of a simulated fleet are addressed by role, never by list index."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.sim.agent import SimAgent
from trustfleet.sim.fleet import FLEET_ROLE, SimFleet, assign_roles
from trustfleet.sim.scenarios import DEMO_ROLES

IDS = ["dev-a", "dev-b", "dev-c", "dev-d", "dev-e"]


def test_roles_go_to_devices_in_order() -> None:
    assert assign_roles(IDS, ["victim", "updater"]) == {"victim": "dev-a", "updater": "dev-b"}


def test_no_roles_is_fine() -> None:
    assert assign_roles(IDS, []) == {}


BAD = {
    "too-few-devices": (IDS[:3], DEMO_ROLES),
    "role-twice": (IDS, ("victim", "victim")),
    "reserved-role": (IDS, (FLEET_ROLE,)),
}


@pytest.mark.parametrize(("ids", "roles"), BAD.values(), ids=BAD.keys())
def test_bad_role_assignments_are_refused(ids: list[str], roles: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInput):
        assign_roles(ids, roles)


def _fleet(tmp_path: Path) -> SimFleet:
    fleet = SimFleet(tmp_path)
    fleet.agents = {d: SimAgent(tmp_path / "devices" / d) for d in IDS}
    fleet.roles = assign_roles(IDS, DEMO_ROLES)
    return fleet


def test_a_device_is_found_by_its_role(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path)
    assert fleet.device("rollback") == "dev-c"
    assert fleet.agent("tamper").device_id == "dev-d"
    assert fleet.agent("dev-e").device_id == "dev-e"  # or by id
    assert fleet.role_of("dev-a") == "revoked"
    assert fleet.role_of("dev-e") == FLEET_ROLE
    assert fleet.device_ids == IDS


def test_an_unknown_role_is_a_readable_error(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path)
    with pytest.raises(NotFound, match="no device plays 'updater'"):
        fleet.device("updater")
    with pytest.raises(NotFound):
        fleet.agent("dev-zzz")


def test_no_agent_runs_before_the_fleet_starts_them(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path)
    assert fleet.running() == []
    fleet.stop()  # nothing started: nothing to stop, no error
