"""The device builder policy end to end: a real server builds and publishes releases with signed
provenance, real agents (``trustfleet-agent update``) install or refuse them.

One server for the module. ``[supply_chain]`` changes between the steps exactly as an operator
would change ``trustfleet.toml``; the devices keep the ``[ota] allowed_builders`` their factory
wrote:

* device F is provisioned while ``sim-v1`` has no builder policy;
* device P is provisioned with ``sim-v1=urn:example:builder:ci`` and installs 1.1.0 built by CI;
* the server then builds 1.2.0 as ``urn:example:builder:other`` (its own allowed list extended,
  so the server accepts it): P refuses it (``release.provenance.builder``) and stays on 1.1.0
  with its inactive slot untouched, F installs it;
* a campaign of 1.3.0 (another builder) with both agents online: P's row ends ``refused``
  with the code, counted as a failure, F's ``committed``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from otadevkit import agent, agent_online, update

from support.server import RunningServer, override_settings, running_server
from support.tools import require_tools
from support.waiting import wait_for

pytestmark = pytest.mark.integration

CI = "urn:example:builder:ci"
OTHER = "urn:example:builder:other"
IMAGE_BYTES = 256 * 1024


@dataclass
class PolicyFleet:
    server: RunningServer
    work: Path
    policed: Path
    free: Path


def _release(server: RunningServer, work: Path, version: str) -> None:
    from trustfleet.sim.image import build_image

    image = work / f"sim-v1-{version}.bin"
    build_image(image, version=version, size_bytes=IMAGE_BYTES, seed="sim-v1")
    built = server.cli("release", "build", "--version", version, "--image", str(image))
    assert built.returncode == 0, built.stderr
    published = server.cli("release", "publish", "--version", version, "--model", "sim-v1")
    assert published.returncode == 0, published.stderr


def _provision(server: RunningServer, out: Path) -> tuple[Path, dict[str, Any]]:
    made = server.cli("factory", "provision", "--out", str(out), "--model", "sim-v1", "--json")
    assert made.returncode == 0, made.stderr
    row: dict[str, Any] = json.loads(made.stdout)["devices"][0]
    device = Path(row["directory"])
    first = agent("run", "--device", device, "--once", "--json")
    assert first.returncode == 0, first.stderr
    return device, row


def _policy(home: Path, *entries: str, builder: str) -> None:
    override_settings(
        home,
        {
            "supply_chain.builder_id": json.dumps(builder),
            "supply_chain.allowed_builders": json.dumps(list(entries)),
        },
    )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyFleet]:
    require_tools("mosquitto", "softhsm2-util", hint="needed for the real broker and tokens")
    base = tmp_path_factory.mktemp("builderpolicy")
    work = base / "work"
    work.mkdir()
    with running_server(base, settings={"attestation.enabled": "false"}) as server:
        _policy(server.home, builder=CI)
        _release(server, work, "1.0.0")
        free, row = _provision(server, work / "free")
        assert row["allowed_builders"] == []
        _policy(server.home, f"sim-v1={CI}", builder=CI)
        policed, row = _provision(server, work / "policed")
        assert row["allowed_builders"] == [CI]  # factory provision --json shows the policy
        _release(server, work, "1.1.0")
        yield PolicyFleet(server=server, work=work, policed=policed, free=free)


def _slot(device: Path, slot: str) -> dict[str, str]:
    folder = device / "slots" / slot
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_builder_policy_refuses_a_release_from_another_builder(fleet: PolicyFleet) -> None:
    device = fleet.policed
    assert "urn:example:builder:ci" in (device / "device.toml").read_text()
    code, doc = update(device, "1.1.0")
    assert (code, doc["outcome"], doc["firmware_version"], doc["slot"]) == (
        0,
        "committed",
        "1.1.0",
        "b",
    ), doc

    # The server now builds as another builder and allows it for sim-v1 itself; the device
    # keeps the list its factory wrote.
    _policy(fleet.server.home, f"sim-v1={CI}", f"sim-v1={OTHER}", builder=OTHER)
    _release(fleet.server, fleet.work, "1.2.0")
    inactive = _slot(device, "a")
    code, doc = update(device, "1.2.0")
    assert (code, doc["outcome"], doc["code"]) == (10, "refused", "release.provenance.builder"), doc
    assert (doc["firmware_version"], doc["slot"]) == ("1.1.0", "b")
    assert _slot(device, "a") == inactive  # nothing written to the inactive slot
    state = json.loads((device / "ota-state.json").read_text())
    assert (state["state"], state["code"], state["installed_version"]) == (
        "refused",
        "release.provenance.builder",
        "1.1.0",
    )

    # A device provisioned without a policy installs the same release.
    code, doc = update(fleet.free, "1.2.0")
    assert (code, doc["outcome"], doc["firmware_version"]) == (0, "committed", "1.2.0"), doc


def _cli_json(server: RunningServer, *args: str) -> Any:
    done = server.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_campaign_counts_the_policy_refusal(fleet: PolicyFleet) -> None:
    _policy(fleet.server.home, f"sim-v1={CI}", f"sim-v1={OTHER}", builder=OTHER)
    _release(fleet.server, fleet.work, "1.3.0")
    # Both agents online (subscribed) before the campaign notifies them: an update command is
    # sent once and an agent's MQTT session is clean, so one still starting would miss it.
    with agent_online(fleet, fleet.policed), agent_online(fleet, fleet.free):
        created = _cli_json(fleet.server, "campaign", "create", "--release", "1.3.0",
                            "--waves", "100%", "--max-failure-rate", "60%")  # fmt: skip

        def finished() -> Any:
            status = _cli_json(fleet.server, "campaign", "status", created["id"])
            rows = {d["device_id"]: d for d in status["devices"]}
            done = {"refused", "committed", "failed", "rolled_back", "timed_out"}
            return status if all(r["state"] in done for r in rows.values()) else None

        status = wait_for(finished, what="both devices to finish the campaign", timeout_s=180)
    rows = {d["device_id"]: d for d in status["devices"]}
    policed, free = rows[fleet.policed.name], rows[fleet.free.name]
    assert (policed["state"], policed["code"]) == ("refused", "release.provenance.builder")
    assert free["state"] == "committed", free
    assert status["failures"] == 1, status
