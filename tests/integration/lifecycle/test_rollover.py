"""Device CA rollover with no downtime (issue 14 §2; docs/lifecycle.md "CA rollover").

Twenty real agents publish telemetry every second throughout: a new device CA is made in a
ceremony (standby), activated, the server's TLS certificates rotated, every running device
re-enrolled by command onto the new CA, and the old CA retired with its final CRL. No telemetry
is lost, every device ends on the new CA, and a device that was offline during the move is
refused at the broker's handshake and at EST (``enrollment.refused``, code ``ca.retired``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import wait_until
from trustfleet.sim.rollover import Move, move_fleet, served_fleet, telemetry_lost, tls_serial

DEVICES = int(os.environ.get("TF_ROLLOVER_DEVICES", "20"))
WAIT_S = 120.0


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole rollover on one served fleet, a device offline throughout."""
    fleet = served_fleet(tmp_path_factory.mktemp("rollover"), devices=DEVICES)
    try:
        offline = fleet.device_ids[-1]
        fleet.agent(offline).stop()  # offline during the whole move: stays on the old CA
        running = fleet.device_ids[:-1]
        move = move_fleet(fleet, running, force_retire=True)
        since = fleet.telemetry_counts()  # still flowing after the retirement
        fleet.wait_telemetry(running, rows=3, since=since, timeout_s=WAIT_S)
        yield {"fleet": fleet, "offline": offline, "running": running, "move": move}
    finally:
        fleet.stop()


def test_every_running_device_ends_on_the_new_ca(moved: dict[str, Any]) -> None:
    fleet: SimFleet = moved["fleet"]
    move: Move = moved["move"]
    new = fleet.srv.runtime.ca_certificate(move.ca)
    issuers = {d: fleet.agent(d).ldevid().issuer for d in moved["running"]}
    assert set(issuers.values()) == {new.subject}, issuers
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        states = {ca.name: ca.state for ca in tx.cas.list(kind="device")}
        kinds = [e.type for e in tx.events.list(after_id=0, limit=1000, type=_CA_EVENTS)]
    assert states == {"device": "retired", move.ca: "active"}
    assert kinds == list(_CA_EVENTS), kinds


_CA_EVENTS = (
    "ca.rollover.started",
    "ceremony.intermediate",
    "ca.rollover.activated",
    "server.tls.rotated",
    "ca.rollover.retired",
)


def test_no_telemetry_is_lost(moved: dict[str, Any]) -> None:
    fleet: SimFleet = moved["fleet"]
    for device_id in moved["running"]:
        fleet.agent(device_id).stop()
    lost = telemetry_lost(fleet, moved["running"])
    assert sum(lost.values()) == 0, lost


def test_retirement_waits_for_the_devices_still_on_the_old_ca(moved: dict[str, Any]) -> None:
    move: Move = moved["move"]
    assert "1 device(s) still hold a valid certificate" in move.refused_retire
    assert move.retired["revoked"] == 1 and move.retired["holders"] == 1


def test_the_servers_present_their_rotated_certificates(moved: dict[str, Any]) -> None:
    fleet: SimFleet = moved["fleet"]
    move: Move = moved["move"]
    for name, port in (("api", fleet.srv.api_port), ("broker", fleet.srv.mqtt_port)):
        want = int(move.rotated[name], 16)
        wait_until(lambda p=port, w=want: tls_serial("127.0.0.1", p) == w, timeout_s=WAIT_S,
                   what=f"{name} presents its new certificate")  # fmt: skip


def test_a_device_left_on_the_retired_ca_is_refused(moved: dict[str, Any]) -> None:
    fleet: SimFleet = moved["fleet"]
    offline = moved["offline"]
    agent = fleet.agent(offline)
    proc = agent.enroll(reenroll=True)  # EST simplereenroll with its old LDevID
    assert proc.returncode != 0, proc.stdout
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        found = tx.events.list(after_id=0, limit=1000, type=("enrollment.refused",))
    codes = [e.details.get("code") for e in found if e.subject == f"device:{offline}"]
    assert codes and codes[-1] == "ca.retired", codes
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
    # Why, with the broker's own CRL file and an independent verifier: its final CRL revokes it.
    home = fleet.srv.home
    verdict = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", home / "public" / "root-ca.pem",
         "-untrusted", home / "public" / "device-ca.pem",
         "-CRLfile", home / "broker" / "device-ca.crl.pem", agent.directory / "ldevid.pem"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert verdict.returncode != 0 and "certificate revoked" in verdict.stdout + verdict.stderr
