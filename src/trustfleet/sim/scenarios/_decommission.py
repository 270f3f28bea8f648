"""The demo's disposal stage: a device wipes itself with verified evidence, then is refused
everywhere, even with a copy of its token taken before the wipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from trustfleet.errors import PermissionDenied
from trustfleet.services.ingest import parse_message, store_batch
from trustfleet.services.ota import authorize_device
from trustfleet.sim.agent import SimAgent
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.scenarios._result import Observed, stage
from trustfleet.wire import device_topic

__all__ = ["decommission", "pick_retiree", "refusals"]

_WAIT_S = "30"
_CLONE_SKIPS = ("tpm", "agent.log", "*.lock")
_PREFERRED = "reenroller"


def pick_retiree(fleet: SimFleet) -> str:
    """A running, enrolled, unquarantined device (the re-enroller if it qualifies)."""
    states = fleet.device_states()
    fit = [d for d in fleet.running() if states[d] == "enrolled" and not fleet.quarantine_of(d)]
    if not fit:
        raise RuntimeError("no running enrolled device to decommission")
    preferred = fleet.roles.get(_PREFERRED)
    return preferred if preferred in fit else fit[-1]


def clone_folder(agent: SimAgent, where: Path) -> SimAgent:
    """A copy of the device folder (its token included, its TPM not): what an attacker who
    imaged the disk before the wipe would hold."""
    shutil.copytree(agent.directory, where, ignore=shutil.ignore_patterns(*_CLONE_SKIPS))
    return SimAgent(where)


def refusals(fleet: SimFleet, device_id: str, clone: SimAgent, ldevid_pem: str) -> dict[str, bool]:
    """Whether EST, the broker, the update repository and ingest refuse the device now."""
    rt = fleet.srv.runtime
    try:
        authorize_device(rt, client_cert_pem=ldevid_pem, now=utc_now())
        ota_refused = False
    except PermissionDenied:
        ota_refused = True
    now = utc_now()
    body = {"ts": now.isoformat(), "seq": 1, "metrics": {"temp_c": 21}}
    message = parse_message(
        device_topic(device_id, "telemetry"), json.dumps(body).encode(), now=now
    )
    return {
        "EST refuses its IDevID": clone.enroll().returncode != 0,
        "the broker refuses its LDevID": clone.run_once().returncode != 0,
        "the update repository refuses it": ota_refused,
        "ingest drops its messages": store_batch(rt.uow, [message], now=now).refused == 1,
    }


@stage("decommission")
def decommission(fleet: SimFleet) -> Observed:
    """A device wipes its keys, TPM objects and sealed data and proves it with evidence signed
    by its identity key; every certificate is revoked (cessationOfOperation); it is refused
    everywhere, even with a copy of its token."""
    device_id = pick_retiree(fleet)
    agent = fleet.agent(device_id)
    ldevid = agent.ldevid()
    ldevid_pem = (agent.directory / "ldevid.pem").read_text("ascii")
    clone = clone_folder(agent, fleet.workdir / f"clone-{device_id}")
    # A child process: this one signs through python-pkcs11, the command goes through awscrt.
    asked = fleet.srv.cli("device", "decommission", device_id, "--yes", "--wait",
                          "--timeout", _WAIT_S, "--json")  # fmt: skip
    doc: dict[str, Any] = json.loads(asked.stdout) if asked.returncode == 0 else {}
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        certs = tx.certificates.list_for_device(device_id)
    reasons = {c.revocation_reason for c in certs}  # earlier renewals: superseded
    refused = refusals(fleet, device_id, clone, ldevid_pem)
    again = agent.run_once()
    checks = {
        "the wipe evidence is verified": doc.get("state") == "verified",
        "every certificate is revoked (cessationOfOperation)": "cessationOfOperation" in reasons
        and reasons <= {"cessationOfOperation", "superseded"},
        "OCSP says revoked": fleet.ocsp_status(ldevid) == "REVOKED",
        "the agent refuses to run again": again.returncode != 0
        and "decommissioned" in again.stderr,
        **refused,
    }
    evidence = doc.get("evidence") or {}
    return Observed(checks, {
        "device": device_id, "state": doc.get("state"), "certificates_revoked": len(certs),
        "destroyed": evidence.get("destroyed"), "tpm_clock": evidence.get("tpm_clock"),
        "error": asked.stderr.strip()[-300:] if asked.returncode else None,
    })  # fmt: skip
