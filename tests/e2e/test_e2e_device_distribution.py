"""The device distribution alone on a device (issue 17 §1).

Both wheels are built (``packaging/build.py``), the device wheel alone goes into a fresh venv,
offline from the wheelhouse, and:

* the venv holds no server-only distribution (what the server wheel requires by name, and what
  their closure pulls in that the device's own requirements do not, resolved against the dev
  venv), and everything it holds is in the device SBOM the build wrote — so the SBOM is right
  too;
* in the venv ``trustfleet`` is the venv's copy (run outside the checkout, no PYTHONPATH) and
  neither ``trustfleet.server`` nor SQLAlchemy imports;
* a real server (from the dev venv) and a device provisioned by the factory (SoftHSM2 token,
  swtpm TPM, A/B slots and boot chain), its agent run from the venv (``trustfleet-agent run``):
  it enrolls, its telemetry is stored, its ``report`` names the project version, a release
  1.1.0 rolled out by a campaign is committed after the agent re-executes itself (from the
  venv), and an attestation challenge passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.devicedist import VENV_TOOLS, DeviceVenv, sbom_names, server_only
from support.tools import require_tools
from support.waiting import wait_for
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.scenarios import DEMO
from trustfleet.sim.scenarios._common import V1, V2, publish, run_campaign

pytestmark = pytest.mark.e2e

WAIT_S = 60.0
ATTEST_WAIT_S = 60
_LIVELY = {"telemetry_interval_s": 1.0, "heartbeat_interval_s": 5.0, "connect_timeout_s": 3.0}
_PROBE = """
import json, sys, trustfleet
def fails(name):
    try:
        __import__(name)
    except ModuleNotFoundError:
        return True
    return False
print(json.dumps({
    "file": trustfleet.__file__,
    "prefix": sys.prefix,
    "version": trustfleet.product_version(),
    "server_fails": fails("trustfleet.server"),
    "store_fails": fails("trustfleet.store"),
    "sqlalchemy_fails": fails("sqlalchemy"),
    "agent_imports": not fails("trustfleet.agent.runner"),
}))
"""


def test_the_device_install_holds_no_server_package(device_venv: DeviceVenv) -> None:
    only = server_only(device_venv.dists)
    assert {"sqlalchemy", "trustfleet"} <= only  # the check is not vacuous
    installed = device_venv.distributions() - VENV_TOOLS
    assert "trustfleet-agent" in installed
    grown = sorted(installed & only)
    assert not grown, f"the device install holds server-only distributions: {grown}"
    listed = sbom_names(device_venv.dists.device_sbom)
    missing = sorted(installed - listed)
    assert not missing, f"installed on the device but not in its SBOM: {missing}"


def test_the_device_install_imports_only_itself(device_venv: DeviceVenv) -> None:
    probe = device_venv.python_json(_PROBE)
    assert Path(probe["file"]).is_relative_to(device_venv.root), probe["file"]
    assert Path(probe["prefix"]) == device_venv.root
    assert probe["version"] == device_venv.dists.version
    assert probe["server_fails"] and probe["store_fails"] and probe["sqlalchemy_fails"]
    assert probe["agent_imports"]
    shown = device_venv.run(device_venv.agent, "--version")
    assert shown.returncode == 0, shown.stderr
    assert device_venv.dists.version in shown.stdout


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, device_venv: DeviceVenv) -> Iterator[SimFleet]:
    """A server from the dev venv, release 1.0.0, one factory-made device whose agent runs from
    the device venv, enrolled and publishing."""
    require_tools("mosquitto", "swtpm", "softhsm2-util", hint="make deps")
    fleet = SimFleet(
        tmp_path_factory.mktemp("device-dist"), size=1, agent_command=(str(device_venv.agent),)
    )
    stages = {stage.name: stage for stage in DEMO}
    try:
        fleet.create_server()
        assert stages["release"](fleet).ok
        (device_id,) = fleet.provision(1)
        fleet.agent(device_id).configure({"mqtt": _LIVELY})
        for name in ("serve", "enroll", "telemetry"):
            result = stages[name](fleet)
            assert result.ok, result.to_json()
        yield fleet
    finally:
        fleet.stop()


def _agent_python(fleet: SimFleet) -> Path:
    """The interpreter the device's agent process runs now (its /proc cmdline)."""
    agent = fleet.agent(fleet.device_ids[0])
    assert agent.process is not None and agent.running
    argv = Path(f"/proc/{agent.process.pid}/cmdline").read_bytes().split(b"\0")
    return Path(argv[0].decode())


def _ak_enrolled(fleet: SimFleet, device_id: str) -> bool:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        return tx.attestation.get_key(device_id) is not None


def test_the_venv_agent_enrolls_and_reports(fleet: SimFleet, device_venv: DeviceVenv) -> None:
    (device_id,) = fleet.device_ids
    assert fleet.device_states() == {device_id: "enrolled"}
    assert fleet.telemetry_counts()[device_id] > 0
    assert _agent_python(fleet).is_relative_to(device_venv.root)
    answer = fleet.srv.cli(
        "device", "command", device_id, "report", "--wait", f"{WAIT_S:.0f}s", "--json"
    )
    assert answer.returncode == 0, answer.stderr
    report: dict[str, Any] = json.loads(answer.stdout)
    assert report["ok"], report
    assert report["result"]["device_id"] == device_id
    assert report["result"]["agent_version"] == device_venv.dists.version


def test_the_venv_agent_updates_through_its_reboot(
    fleet: SimFleet, device_venv: DeviceVenv
) -> None:
    (device_id,) = fleet.device_ids
    assert fleet.firmware() == {device_id: V1} or fleet.firmware() == {device_id: None}
    assert publish(fleet, V2)["version"] == V2
    status = run_campaign(fleet, [device_id], waves=[100.0], version=V2)
    states = {r.device_id: (r.state, r.reason) for r in status.devices}
    assert status.campaign.state == "completed", states
    assert states[device_id][0] == "committed", states
    assert fleet.firmware() == {device_id: V2}
    assert fleet.agent(device_id).boot_env()["boot_slot"] == "b"
    # The agent re-executed itself on its reboot: still the venv's interpreter.
    assert _agent_python(fleet).is_relative_to(device_venv.root)


def test_the_venv_agent_attests(fleet: SimFleet) -> None:
    (device_id,) = fleet.device_ids
    wait_for(lambda: _ak_enrolled(fleet, device_id), what="the device's AK", timeout_s=WAIT_S)
    verdict = fleet.attest([device_id], wait_s=ATTEST_WAIT_S)[device_id]
    assert verdict.get("ok"), verdict
    assert verdict.get("release") == V2, verdict
