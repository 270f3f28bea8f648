"""The rollover test's and benchmark's tools: a served fleet of real agents, the rollover steps
in a child process (one SoftHSM2 login per process), and independent TLS probes (openssl).

The steps run as ``python -c`` children because the service's MQTT client (awscrt, PKCS#11)
and python-pkcs11 must not share a process's login to the service token.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509

from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.process import wait_until

__all__ = [
    "LIVELY_MQTT",
    "StepError",
    "served_fleet",
    "step",
    "telemetry_lost",
    "tls_serial",
    "wait_reenrolled",
]

LIVELY_MQTT: Final = {"telemetry_interval_s": 1.0, "heartbeat_interval_s": 5.0,
                      "connect_timeout_s": 3.0}  # fmt: skip
AGENT_TIMEOUT_S: Final = 120.0
STEP_TIMEOUT_S: Final = 120.0

_STEP = r"""
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from trustfleet.errors import TrustFleetError
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

args = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(args["home"])))
now = datetime.now(UTC)
try:
    if args["op"] == "reenroll":
        from trustfleet.services.rekey import request_reenroll
        from trustfleet.services.service_mqtt import ServiceMqttClient

        with ServiceMqttClient(rt.settings) as client:
            rows = request_reenroll(rt, client, args["devices"], rekey=False, actor="test",
                                    now=now)
        out = {"commands": [r.id for r in rows]}
    else:
        from dataclasses import asdict
        from trustfleet.services import rollover

        if args["op"] == "start":
            step = rollover.start_rollover(rt, kind=args["kind"], root=rt.issuer("root"), now=now)
        elif args["op"] == "activate":
            step = rollover.activate_ca(rt, args["name"], now=now)
        else:
            step = rollover.retire_ca(rt, args["name"], force=args["force"], now=now)
        out = asdict(step)
except TrustFleetError as exc:
    out = {"error": exc.code or exc.category, "message": exc.message}
finally:
    rt.close()
print(json.dumps(out))
"""


class StepError(Exception):
    """A rollover step refused (its TrustFleet error code and message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def step(home: Path, op: str, **args: Any) -> dict[str, Any]:
    """Run one rollover step (``start``, ``activate``, ``retire``, ``reenroll``) in a child.

    Raises:
        StepError: The service refused it.
    """
    result = subprocess.run(
        [sys.executable, "-c", _STEP, json.dumps({"home": str(home), "op": op, **args})],
        capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    if "error" in out:
        raise StepError(out["error"], out["message"])
    return out


def served_fleet(workdir: Path, *, devices: int) -> SimFleet:
    """A served fleet of ``devices`` enrolled agents publishing telemetry every second."""
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


def wait_reenrolled(fleet: SimFleet, commands: Sequence[str], *, timeout_s: float) -> None:
    """Wait until every ``reenroll`` command was answered ok (a failure fails at once)."""
    from trustfleet.services.rekey import reenroll_progress

    def done() -> bool:
        progress = reenroll_progress(fleet.srv.runtime, commands)
        assert progress.failed == 0, progress.failures
        return progress.pending == 0

    wait_until(done, timeout_s=timeout_s, what="every device re-enrolled")


def telemetry_lost(fleet: SimFleet, device_ids: Sequence[str]) -> dict[str, int]:
    """Per device: telemetry the stopped agent published minus the rows the store holds.

    The agents must have been started with ``summary`` and stopped (SIGTERM: each delivers its
    queue and prints its summary).
    """
    stored = fleet.telemetry_counts()
    lost: dict[str, int] = {}
    for device_id in device_ids:
        summary = fleet.agent(device_id).last_summary()
        assert summary is not None, f"no run summary in {fleet.agent(device_id).log}"
        assert summary["queue_depth"] == 0 and summary["queue_dropped"] == 0, summary
        lost[device_id] = int(summary["published"].get("telemetry", 0)) - stored[device_id]
    return lost


_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def tls_serial(host: str, port: int, *, extra: Sequence[str] = ()) -> int | None:
    """The serial of the certificate a TLS server presents to ``openssl s_client`` (an
    independent client), or None; the handshake may fail later (the broker wants a client
    certificate) — TLS 1.3 sends the server's certificate first."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_3", "-showcerts", *extra],
        input=b"", capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    found = _PEM.search(result.stdout)
    return None if found is None else x509.load_pem_x509_certificate(found.group(0)).serial_number


def events_of(fleet: SimFleet, types: Sequence[str]) -> list[Mapping[str, Any]]:
    """The security events of these types, oldest first (type, subject, details)."""
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        found = tx.events.list(after_id=0, limit=1000, type=tuple(types))
    return [{"type": e.type, "subject": e.subject, "details": e.details} for e in found]


@dataclass(frozen=True)
class Move:
    """What moving a fleet to a new CA measured."""

    ca: str
    devices: int
    move_s: float
    lost: int
