"""Manufacturing CA rollover (issue 14 §2; docs/lifecycle.md "CA rollover"): once the new CA
is active, ``factory provision`` issues IDevIDs from it, and a device made with the old one
still enrolls (``simpleenroll``) until that one is retired."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import wait_until
from trustfleet.sim.rollover import LIVELY_MQTT

WAIT_S = 120.0


def _ok(fleet: SimFleet, *args: str) -> dict[str, Any]:
    proc = fleet.srv.cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """One device made before the rollover (``old``), one after (``new``), both enrolled."""
    fleet = SimFleet(tmp_path_factory.mktemp("mfg-rollover"), size=2)
    fleet.create_server()
    fleet.srv.configure({"attestation": {"enabled": False}})
    try:
        old = dict.fromkeys(fleet.provision(1), "old")
        agents = dict(fleet.agents)
        start = _ok(fleet, "ca", "rollover", "start", "--kind", "manufacturing",
                    *fleet.srv.ceremony_args(["tf-root"]))  # fmt: skip
        _ok(fleet, "ca", "rollover", "activate", start["name"])
        new = dict.fromkeys(fleet.provision(1), "new")
        fleet.agents.update(agents)
        fleet.roles = {role: device for device, role in {**old, **new}.items()}
        for agent in fleet.agents.values():
            agent.configure({"mqtt": LIVELY_MQTT})
        fleet.srv.start()
        for agent in fleet.agents.values():
            agent.start()
        wait_until(
            lambda: set(fleet.device_states().values()) == {"enrolled"},
            timeout_s=WAIT_S, what="both devices enrolled",
        )  # fmt: skip
        yield fleet
    finally:
        fleet.stop()


def _idevid_issuer(fleet: SimFleet, role: str) -> str:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        certs = tx.certificates.list_for_device(fleet.device(role))
    return next(c.issuer for c in certs if c.kind == "idevid")


def test_the_factory_issues_from_the_active_ca_and_both_generations_enroll(
    fleet: SimFleet,
) -> None:
    assert _idevid_issuer(fleet, "old") == "manufacturing"
    assert _idevid_issuer(fleet, "new") == "manufacturing-2"
    zero = dict.fromkeys(fleet.device_ids, 0)
    fleet.wait_telemetry(fleet.device_ids, rows=1, since=zero, timeout_s=WAIT_S)


def test_the_old_ca_retires_once_its_devices_are_enrolled(fleet: SimFleet) -> None:
    retired = _ok(fleet, "ca", "rollover", "retire", "manufacturing")
    assert retired["state"] == "retired" and retired["revoked"] == 1
    status = _ok(fleet, "ca", "status")
    states = {row["name"]: row["state"] for row in status["cas"]}
    assert states["manufacturing"] == "retired" and states["manufacturing-2"] == "active"
    bundle = (fleet.srv.home / "public" / "ca-bundle.pem").read_bytes()
    pem = serialization.Encoding.PEM
    assert fleet.srv.runtime.ca_certificate("manufacturing-2").public_bytes(pem) in bundle
    assert fleet.srv.runtime.ca_certificate("manufacturing").public_bytes(pem) not in bundle
