"""Decommission with wipe evidence, end to end: a real server, real agents with SoftHSM2 tokens
and swtpm TPMs.

One fleet for the module: four TPM devices enrolled and publishing, a short
``[lifecycle] decommission_timeout_s``. A device wipes itself and its evidence is verified
(checked independently: its token has no key object left, tpm2-tools finds no persistent AK,
the sealed files are gone), then a copy of its token taken before the wipe is refused by EST
and the broker, and the update repository and ingest refuse the device. A device that is
offline ends unverified at the deadline; forged and replayed evidence is refused and the
request ends unverified with the reason. A fourth device is wiped and returned to service
through the factory (``factory provision --reprovision``): a new id enrolls, binds an AK to
the same TPM (EK) and publishes, while its old id stays refused.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from support.tools import require_tools
from trustfleet.agent.platform.measured_boot import DeviceTpm
from trustfleet.attestation.wipe import (
    signature_hash,
    signing_input,
    spki_sha256,
    unsigned_evidence,
)
from trustfleet.services import reprovision
from trustfleet.services.decommission import REFUSED_EVENT as REFUSED
from trustfleet.services.decommission import request_decommission
from trustfleet.sim.agent import SimAgent
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.process import wait_until
from trustfleet.sim.scenarios import DEMO
from trustfleet.sim.scenarios._decommission import clone_folder, refusals

pytestmark = pytest.mark.integration

TIMEOUT_S = 12.0
"""The fleet's decommission_timeout_s: long enough for a wipe, short for the expiry tests."""
WAIT_S = 60.0
ROLES = ("wiped", "gone", "forger", "rma")
_LIVELY = {"telemetry_interval_s": 1.0, "heartbeat_interval_s": 5.0, "connect_timeout_s": 3.0}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """Four TPM devices enrolled, publishing, their AKs on record."""
    require_tools("mosquitto", "swtpm", "tpm2_getcap", hint="apt-get install tpm2-tools swtpm")
    fleet = SimFleet(tmp_path_factory.mktemp("decommission"), size=len(ROLES))
    stages = {stage.name: stage for stage in DEMO}
    try:
        fleet.create_server()
        fleet.srv.configure({"lifecycle": {"decommission_timeout_s": TIMEOUT_S}})
        assert stages["release"](fleet).ok
        fleet.provision(len(ROLES), roles=ROLES)
        for device_id in fleet.device_ids:
            fleet.agent(device_id).configure({"mqtt": _LIVELY})
        for name in ("serve", "enroll", "telemetry"):
            result = stages[name](fleet)
            assert result.ok, result.to_json()
        wait_until(lambda: all(_ak_name(fleet, d) for d in fleet.device_ids), timeout_s=WAIT_S,
                   what="every AK enrolled")  # fmt: skip
        yield fleet
    finally:
        fleet.stop()


def _ak_name(fleet: SimFleet, device_id: str) -> str | None:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        key = tx.attestation.get_key(device_id)
    return None if key is None else key.ak_name


def _record(fleet: SimFleet, device_id: str) -> Any:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        return tx.decommissions.get(device_id)


def _token_keys(directory: Path) -> list[str]:
    """The key labels left in the device's token, read by another process (python-pkcs11)."""
    script = (
        "import sys; from pathlib import Path\n"
        "from trustfleet.agent.settings import load_device_settings\n"
        "from trustfleet.agent._tls import token_key\n"
        "from trustfleet.keystore import open_token, private_key_labels\n"
        "k = token_key(load_device_settings(Path(sys.argv[1])))\n"
        "with open_token(module=k.module, label=k.token, pin=k.pin, conf=k.conf) as t:\n"
        "    print(','.join(private_key_labels(t)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(directory)], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    return [label for label in out.stdout.strip().split(",") if label]


def _persistent_handles(directory: Path) -> str:
    """tpm2-tools' list of the TPM's persistent handles (an independent reader)."""
    device = DeviceTpm(directory)
    switch = device.power_on()
    try:
        env = {**os.environ, "TPM2TOOLS_TCTI": device.tcti}
        out = subprocess.run(["tpm2_getcap", "handles-persistent"], capture_output=True,
                             text=True, timeout=30, check=True, env=env)  # fmt: skip
        return out.stdout
    finally:
        switch.power_off()


def _events(fleet: SimFleet, device_id: str, kind: str) -> list[Any]:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        return tx.events.list(type=kind, subject=f"device:{device_id}", limit=100)


def test_verified_wipe_then_refused_everywhere(fleet: SimFleet, tmp_path: Path) -> None:
    agent = fleet.agent("wiped")
    device_id, directory = agent.device_id, agent.directory
    assert (directory / "state.enc").is_file() and (directory / "tpm/datakey.sealed").is_file()
    assert _token_keys(directory) == ["identity"]
    ldevid_pem = (directory / "ldevid.pem").read_text("ascii")
    clone = clone_folder(agent, tmp_path / "clone")

    asked = fleet.srv.cli("device", "decommission", device_id, "--yes", "--wait",
                          "--timeout", str(WAIT_S), "--json")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    doc = json.loads(asked.stdout)
    assert doc["state"] == "verified" and not doc["flagged"]
    destroyed = doc["evidence"]["destroyed"]
    assert destroyed["ak"]["name"] == _ak_name(fleet, device_id)
    assert [k["label"] for k in destroyed["token_keys"]] == ["identity"]
    assert {"tpm-clear", "tpm/datakey.sealed", "state.enc"} <= set(destroyed["sealed"])

    record = _record(fleet, device_id)
    print(f"\ndecommission: request -> verified {record.completed_at - record.requested_at}")
    wait_until(lambda: not agent.running, timeout_s=WAIT_S, what="the agent to stop by itself")
    assert _token_keys(directory) == []
    assert "0x81010002" not in _persistent_handles(directory)
    assert not (directory / "state.enc").exists()
    assert not (directory / "tpm/datakey.sealed").exists()

    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        assert tx.devices.require(device_id).state == "decommissioned"
        certs = tx.certificates.list_for_device(device_id)
    assert {(c.status, c.revocation_reason) for c in certs} == {("revoked", "cessationOfOperation")}
    (event,) = _events(fleet, device_id, "device.decommissioned")
    assert event.details["verified"] is True

    assert refusals(fleet, device_id, clone, ldevid_pem) == dict.fromkeys(
        ["EST refuses its IDevID", "the broker refuses its LDevID",
         "the update repository refuses it", "ingest drops its messages"], True)  # fmt: skip
    again = agent.run_once()
    assert again.returncode != 0 and "decommissioned" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr


def test_offline_device_ends_unverified(fleet: SimFleet) -> None:
    agent = fleet.agent("gone")
    agent.stop()
    asked = fleet.srv.cli("device", "decommission", agent.device_id, "--yes", "--json")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["state"] == "pending"
    wait_until(lambda: _record(fleet, agent.device_id).state != "pending",
               timeout_s=TIMEOUT_S + WAIT_S, what="the deadline")  # fmt: skip
    record = _record(fleet, agent.device_id)
    assert record.state == "unverified" and "no wipe evidence" in (record.reason or "")
    listed = fleet.srv.cli("device", "decommissions", "--state", "unverified", "--json")
    rows = {r["device_id"]: r for r in json.loads(listed.stdout)["decommissions"]}
    assert rows[agent.device_id]["shown"] == "decommissioned (unverified)"
    assert rows[agent.device_id]["flagged"] is True
    shown = json.loads(fleet.srv.cli("device", "show", agent.device_id, "--json").stdout)
    assert shown["state"] == "decommissioned"
    assert shown["decommission"]["state"] == "unverified"
    (event,) = _events(fleet, agent.device_id, "device.decommissioned")
    assert event.details["verified"] is False and event.actor == "system"


class _Attacker:
    """Takes the command instead of the device (whose agent is stopped)."""

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        assert topic.endswith("/cmd") and what


def _answer(fleet: SimFleet, command_id: str, device_id: str, evidence: Any) -> None:
    """Store an answer to the command, as ingest would."""
    with fleet.srv.runtime.uow.begin() as tx:
        assert tx.commands.answer(command_id, device_id=device_id, ok=True,
                                  result={"evidence": evidence}, now=utc_now())  # fmt: skip


def _forged(device_id: str, nonce: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())  # not the device's identity key
    doc = unsigned_evidence(
        device_id=device_id, nonce=nonce, agent_time=utc_now(), tpm_clock=None,
        token_keys=[{"label": "identity", "spki_sha256": spki_sha256(key.public_key())}],
        ak=None, sealed=[],
    )  # fmt: skip
    signature = key.sign(signing_input(doc), ec.ECDSA(signature_hash(key.curve)))
    return {**doc, "signature": base64.b64encode(signature).decode()}


def test_forged_and_replayed_evidence_is_refused(fleet: SimFleet) -> None:
    agent = fleet.agent("forger")
    device_id = agent.device_id
    agent.stop()
    rt = fleet.srv.runtime
    # Asked twice (the second re-sends the same nonce); both answers come at once, well
    # within the deadline: one forged (signed by another key), one replayed (another device's
    # genuine evidence, or a forged one for another device if that test did not run).
    first = request_decommission(rt, _Attacker(), device_id, actor="operator:t", now=utc_now())
    second = request_decommission(rt, _Attacker(), device_id, actor="operator:t", now=utc_now())
    assert second.decommission.nonce == first.decommission.nonce
    replayed = _record(fleet, fleet.device("wiped"))
    genuine = replayed.evidence if replayed and replayed.evidence else _forged("x" * 8, "00" * 32)
    _answer(fleet, first.command_id, device_id, _forged(device_id, first.decommission.nonce))
    _answer(fleet, second.command_id, device_id, genuine)
    refused = wait_until(
        lambda: (e := _events(fleet, device_id, REFUSED)) and len(e) == 2 and e,
        timeout_s=WAIT_S, what="both answers refused",
    )  # fmt: skip
    codes = {e.details["command"]: e.details["codes"] for e in refused}
    assert "wipe.signature" in codes[first.command_id]
    assert {"wipe.nonce.mismatch", "wipe.device.mismatch"} <= set(codes[second.command_id])
    wait_until(lambda: _record(fleet, device_id).state != "pending",
               timeout_s=TIMEOUT_S + WAIT_S, what="the deadline")  # fmt: skip
    record = _record(fleet, device_id)
    assert record.state == "unverified"
    assert (record.reason or "").startswith("wipe evidence refused")
    with rt.uow.begin(read_only=True) as tx:
        assert tx.devices.require(device_id).state == "decommissioned"


def _listing(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"/"
            for p in sorted(directory.rglob("*")) if not p.is_socket()}  # fmt: skip


def _wipe(fleet: SimFleet, agent: SimAgent) -> None:
    asked = fleet.srv.cli("device", "decommission", agent.device_id, "--yes", "--wait",
                          "--timeout", str(WAIT_S), "--json")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["state"] == "verified"
    wait_until(lambda: not agent.running, timeout_s=WAIT_S, what="the agent to stop by itself")


def test_return_to_service(
    fleet: SimFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = fleet.agent("rma")
    old_id, folder = agent.device_id, agent.directory
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        ek_public = tx.attestation.get_key(old_id).ek_public
    clone = clone_folder(agent, tmp_path / "clone")
    refused = fleet.srv.cli("factory", "provision", "--reprovision", folder)
    assert refused.returncode != 0 and "decommissioned.json" in refused.stderr, refused.stderr
    _wipe(fleet, agent)

    # A failure half-way leaves the folder as it was, and no sibling behind.
    before = _listing(folder)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(reprovision, "_register", broken)
    with pytest.raises(OSError):
        reprovision.reprovision_device(fleet.srv.runtime, directory=folder, now=utc_now())
    monkeypatch.undo()
    assert _listing(folder) == before
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []

    made = fleet.srv.cli("factory", "provision", "--reprovision", folder, "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    new_id, directory = doc["device_id"], Path(doc["directory"])
    assert doc["previous_device_id"] == old_id and doc["tpm"] is True and new_id != old_id
    assert not folder.exists() and directory == folder.parent / new_id
    assert not (directory / "decommissioned.json").exists()
    assert fleet.device_states([new_id]) == {new_id: "manufactured"}
    (event,) = _events(fleet, new_id, reprovision.REPROVISIONED_EVENT)
    assert event.details["previous_device_id"] == old_id

    reborn = SimAgent(directory)
    fleet.agents[new_id] = reborn  # stopped with the fleet
    reborn.configure({"mqtt": _LIVELY})
    reborn.start()
    wait_until(lambda: _ak_name(fleet, new_id), timeout_s=WAIT_S, what="the new AK enrolled")
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        assert tx.attestation.get_key(new_id).ek_public == ek_public  # the same TPM
        assert tx.devices.require(new_id).state == "enrolled"
    wait_until(lambda: fleet.telemetry_counts().get(new_id, 0) > 0, timeout_s=WAIT_S,
               what="telemetry from the new id")  # fmt: skip

    assert clone.enroll().returncode != 0  # the old IDevID stays refused at EST
    shown = json.loads(fleet.srv.cli("device", "show", old_id, "--json").stdout)
    assert shown["state"] == "decommissioned"
