"""A CA rollover on a served fleet of real agents, for the test and the benchmark
(docs/lifecycle.md "CA rollover").

:func:`served_fleet` serves N enrolled agents publishing telemetry every second;
:func:`move_fleet` runs the rollover through the CLI as an operator would (``ca rollover
start`` as a ceremony with the custodians' PIN files, ``activate``, ``server rotate-tls``,
``reenroll`` by command, ``retire``) and times it; :func:`telemetry_lost` compares what each
stopped agent says it published with what the store holds.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509

from trustfleet.errors import Unavailable
from trustfleet.services.rekey import reenroll_progress
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import wait_until

__all__ = [
    "LIVELY_MQTT",
    "Move",
    "move_fleet",
    "served_fleet",
    "telemetry_lost",
    "tls_serial",
]

LIVELY_MQTT: Final = {"telemetry_interval_s": 1.0, "heartbeat_interval_s": 5.0,
                      "connect_timeout_s": 3.0}  # fmt: skip
"""Telemetry every second: a lost message would show."""
AGENT_TIMEOUT_S: Final = 180.0
STEP_TIMEOUT_S: Final = 180.0
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

# The reenroll command is sent from a child: the service's MQTT client (awscrt, PKCS#11) must
# not share a process's login to the service token with python-pkcs11.
_REENROLL = r"""
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from trustfleet.services.rekey import request_reenroll
from trustfleet.services.runtime import Runtime
from trustfleet.services.service_mqtt import ServiceMqttClient
from trustfleet.settings import load_server_settings

args = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(args["home"])))
try:
    with ServiceMqttClient(rt.settings) as client:
        rows = request_reenroll(rt, client, args["devices"], rekey=False, actor="operator:sim",
                                now=datetime.now(UTC))
finally:
    rt.close()
print(json.dumps([r.id for r in rows]))
"""


@dataclass
class Move:
    """What moving a fleet to a new device CA did and measured.

    Attributes:
        ca: The new CA.
        devices: Devices moved (re-enrolled by command).
        steps_s: Seconds per step: start, activate, rotate_tls, reenroll, retire.
        rotated: The serials ``server rotate-tls`` issued (api, broker, service).
        refused_retire: The error line of a retirement refused while a device was still on
            the old CA (empty if none was).
        retired: What the retirement reported.
    """

    ca: str = ""
    devices: int = 0
    steps_s: dict[str, float] = field(default_factory=dict)
    rotated: dict[str, str] = field(default_factory=dict)
    refused_retire: str = ""
    retired: dict[str, Any] = field(default_factory=dict)

    @property
    def move_s(self) -> float:
        """From the ceremony to the retirement."""
        return round(sum(self.steps_s.values()), 2)


def served_fleet(workdir: Path, *, devices: int) -> SimFleet:
    """A served fleet of ``devices`` enrolled agents publishing telemetry every second (each
    prints its run summary when it stops: :meth:`SimAgent.last_summary`)."""
    fleet = SimFleet(workdir, size=devices)
    fleet.create_server()
    fleet.srv.configure({"attestation": {"enabled": False}})
    for device_id in fleet.provision(devices):
        fleet.agent(device_id).configure({"mqtt": LIVELY_MQTT})
    fleet.srv.start()
    for agent in fleet.agents.values():
        agent.start(summary=True)
    wait_until(
        lambda: set(fleet.device_states().values()) == {"enrolled"},
        timeout_s=AGENT_TIMEOUT_S, what="every device enrolled",
    )  # fmt: skip
    zero = dict.fromkeys(fleet.device_ids, 0)
    fleet.wait_telemetry(fleet.device_ids, rows=2, since=zero, timeout_s=AGENT_TIMEOUT_S)
    return fleet


def move_fleet(fleet: SimFleet, devices: Sequence[str], *, force_retire: bool) -> Move:
    """Roll the device CA over while ``devices`` publish, and move them to the new CA.

    Raises:
        Unavailable: A step failed or a wait ran out (the message says which).
    """
    move = Move(devices=len(devices))
    srv = fleet.srv
    ceremony = ["--kind", "device", *srv.ceremony_args(["tf-root"])]
    start = _timed(move, "start", lambda: _cli(fleet, "ca", "rollover", "start", *ceremony))
    move.ca = start["name"]
    trust = srv.home / "broker" / "trust.d"  # the broker trusts it before it issues
    wait_until(lambda: len(list(trust.iterdir())) >= 3, timeout_s=STEP_TIMEOUT_S, what="trust.d")
    _timed(move, "activate", lambda: _cli(fleet, "ca", "rollover", "activate", move.ca))
    move.rotated = _timed(move, "rotate_tls", lambda: _cli(fleet, "server", "rotate-tls"))[
        "serials"
    ]
    _timed(move, "reenroll", lambda: _reenroll(fleet, devices))
    began = time.monotonic()
    first = srv.cli("ca", "rollover", "retire", "device", "--json", timeout_s=STEP_TIMEOUT_S)
    if first.returncode == 0:
        move.retired = json.loads(first.stdout)
        move.steps_s["retire"] = round(time.monotonic() - began, 2)
        return move
    move.refused_retire = first.stderr.strip()
    if force_retire:
        move.retired = _timed(
            move, "retire", lambda: _cli(fleet, "ca", "rollover", "retire", "device", "--force")
        )
    return move


def _timed(move: Move, name: str, call: Callable[[], Any]) -> Any:
    started = time.monotonic()
    out = call()
    move.steps_s[name] = round(time.monotonic() - started, 2)
    return out


def _cli(fleet: SimFleet, *args: str) -> dict[str, Any]:
    proc = fleet.srv.cli(*args, "--json", timeout_s=STEP_TIMEOUT_S)
    if proc.returncode != 0:
        raise Unavailable(f"'trustfleet {' '.join(args[:3])}' failed: {proc.stderr.strip()}")
    document: dict[str, Any] = json.loads(proc.stdout)
    return document


def _reenroll(fleet: SimFleet, devices: Sequence[str]) -> None:
    """Send ``reenroll`` to each device and wait for every answer (ok)."""
    args = json.dumps({"home": str(fleet.srv.home), "devices": list(devices)})
    proc = subprocess.run(
        [sys.executable, "-c", _REENROLL, args], capture_output=True, text=True,
        timeout=STEP_TIMEOUT_S, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise Unavailable(f"reenroll not sent: {proc.stderr.strip()[-500:]}")
    commands = json.loads(proc.stdout.strip().splitlines()[-1])

    def done() -> bool:
        progress = reenroll_progress(fleet.srv.runtime, commands)
        if progress.failed:
            raise Unavailable(f"re-enrollment failed: {progress.failures[:3]}")
        return progress.pending == 0

    wait_until(done, timeout_s=STEP_TIMEOUT_S, what="every device re-enrolled")


def telemetry_lost(fleet: SimFleet, device_ids: Sequence[str]) -> dict[str, int]:
    """Per device: telemetry its stopped agent published minus the rows the store holds.

    Each agent must have been started with ``summary`` and stopped (SIGTERM: it delivers its
    queue and prints its summary).

    Raises:
        Unavailable: An agent printed no summary, or ended with messages still queued.
    """
    stored = fleet.telemetry_counts()
    lost: dict[str, int] = {}
    for device_id in device_ids:
        summary = fleet.agent(device_id).last_summary()
        if summary is None or summary.get("queue_depth") or summary.get("queue_dropped"):
            raise Unavailable(f"{device_id} ended without delivering its queue: {summary}")
        lost[device_id] = int(summary["published"].get("telemetry", 0)) - stored[device_id]
    return lost


def tls_serial(host: str, port: int) -> int | None:
    """The serial of the certificate a TLS server presents to ``openssl s_client`` (an
    independent client), or None. The broker then refuses the handshake (no client
    certificate), but TLS 1.3 sends the server's certificate first."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_3", "-showcerts"],
        input=b"", capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    found = _PEM.search(result.stdout)
    return None if found is None else x509.load_pem_x509_certificate(found.group(0)).serial_number
