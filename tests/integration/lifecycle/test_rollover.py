"""Device CA rollover with no downtime (issue 14 §2; docs/lifecycle.md "CA rollover").

Twenty real agents publish telemetry every second throughout: a new device CA is made
(standby), activated, the server's TLS certificates rotated, every running device re-enrolled
by command onto the new CA, and the old CA retired with its final CRL. No telemetry is lost,
every device ends on the new CA, and a device that was offline during the move is refused at
the broker's handshake and at EST (``enrollment.refused``, code ``ca.retired``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from rolloverkit import (
    StepError,
    events_of,
    served_fleet,
    step,
    telemetry_lost,
    tls_serial,
    wait_reenrolled,
)

from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import wait_until

DEVICES = int(os.environ.get("TF_ROLLOVER_DEVICES", "20"))
WAIT_S = 120.0


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole rollover on one served fleet; what each step returned, for the tests."""
    fleet = served_fleet(tmp_path_factory.mktemp("rollover"), devices=DEVICES)
    home = fleet.srv.home
    try:
        offline = fleet.device_ids[-1]
        fleet.agent(offline).stop()  # offline during the whole move: stays on the old CA
        running = fleet.device_ids[:-1]
        out: dict[str, Any] = {"fleet": fleet, "offline": offline, "running": running}
        out["start"] = step(home, "start", kind="device")
        name = out["start"]["name"]
        trust = home / "broker" / "trust.d"
        wait_until(lambda: len(list(trust.iterdir())) == 3, timeout_s=WAIT_S, what="trust.d")
        out["activate"] = step(home, "activate", name=name)
        rotated = fleet.srv.cli("server", "rotate-tls", "--json")
        assert rotated.returncode == 0, rotated.stderr
        out["rotated"] = rotated.stdout
        commands = step(home, "reenroll", devices=running)["commands"]
        wait_reenrolled(fleet, commands, timeout_s=WAIT_S)
        try:
            step(home, "retire", name="device", force=False)
        except StepError as exc:
            out["retire_refused"] = exc
        out["retire"] = step(home, "retire", name="device", force=True)
        since = fleet.telemetry_counts()
        fleet.wait_telemetry(running, rows=3, since=since, timeout_s=WAIT_S)
        yield out
    finally:
        fleet.stop()


def test_every_running_device_ends_on_the_new_ca(moved: dict[str, Any]) -> None:
    fleet: SimFleet = moved["fleet"]
    new = fleet.srv.runtime.ca_certificate(moved["start"]["name"])
    issuers = {d: fleet.agent(d).ldevid().issuer for d in moved["running"]}
    assert set(issuers.values()) == {new.subject}, issuers
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        states = {ca.name: ca.state for ca in tx.cas.list(kind="device")}
    assert states == {"device": "retired", moved["start"]["name"]: "active"}


def test_no_telemetry_is_lost(moved: dict[str, Any]) -> None:
    fleet: SimFleet = moved["fleet"]
    for device_id in moved["running"]:
        fleet.agent(device_id).stop()
    lost = telemetry_lost(fleet, moved["running"])
    assert sum(lost.values()) == 0, lost


def test_retirement_waits_for_the_devices_still_on_the_old_ca(moved: dict[str, Any]) -> None:
    refused = moved.get("retire_refused")
    assert refused is not None and refused.code == "ca.retire.devices", refused
    assert "1 device(s)" in refused.message
    assert moved["retire"]["revoked"] == 1 and moved["retire"]["holders"] == 1


def test_the_servers_present_their_rotated_certificates(moved: dict[str, Any]) -> None:
    import json

    fleet: SimFleet = moved["fleet"]
    rotated = json.loads(moved["rotated"])
    assert rotated["issuer"] == moved["start"]["name"]
    for name, port in (("api", fleet.srv.api_port), ("broker", fleet.srv.mqtt_port)):
        want = int(rotated["serials"][name], 16)
        wait_until(lambda p=port, w=want: tls_serial("127.0.0.1", p) == w, timeout_s=WAIT_S,
                   what=f"{name} presents its new certificate")  # fmt: skip


def test_a_device_left_on_the_retired_ca_is_refused(moved: dict[str, Any]) -> None:
    fleet: SimFleet = moved["fleet"]
    offline = moved["offline"]
    agent = fleet.agent(offline)
    proc = agent.enroll(reenroll=True)  # EST simplereenroll with its old LDevID
    assert proc.returncode != 0, proc.stdout
    refusals = [
        e for e in events_of(fleet, ["enrollment.refused"]) if e["subject"] == f"device:{offline}"
    ]
    assert refusals and refusals[-1]["details"]["code"] == "ca.retired", refusals
    before = fleet.telemetry_counts()[offline]
    log = fleet.srv.home / "broker" / "mosquitto.log"
    mark = log.stat().st_size
    agent.start()

    def refused_handshake() -> bool:
        with log.open("rb") as fh:
            fh.seek(mark)
            return b"certificate verify failed" in fh.read()

    wait_until(refused_handshake, timeout_s=WAIT_S, what="the broker refuses its handshake")
    agent.stop()
    assert fleet.telemetry_counts()[offline] == before
    # Why, with the broker's own files and an independent verifier: its final CRL revokes it.
    home = fleet.srv.home
    verdict = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", home / "public" / "root-ca.pem",
         "-untrusted", home / "public" / "device-ca.pem",
         "-CRLfile", home / "broker" / "device-ca.crl.pem", agent.directory / "ldevid.pem"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert verdict.returncode != 0 and "certificate revoked" in verdict.stdout + verdict.stderr
