"""Fleet re-key against a live ``server run`` and real agents (issue 14 §3).

One served fleet (module scope): eight ``sim-v1`` devices and two ``sim-v2``, each a real
simulated agent process with its key in its own SoftHSM2 token, publishing telemetry every
second. ``trustfleet device rekey`` sends ``reenroll {"rekey": true}``; each device generates a
new key in its token, enrolls it with ``simplereenroll`` over mutual TLS with its current
LDevID, switches, destroys the old key and reconnects. The token is inspected with
``pkcs11-tool`` and OCSP is asked by ``openssl``/``curl`` (independent clients).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.server import curl, openssl
from trustfleet.errors import Unavailable
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.process import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.integration

WAIT_S = 90.0
_MQTT = {"telemetry_interval_s": 1.0, "heartbeat_interval_s": 5.0, "connect_timeout_s": 3.0,
         "backoff_initial_s": 0.2, "backoff_max_s": 1.0}  # fmt: skip
_OTHER_MODEL = "sim-v2"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    """Ten enrolled devices (8 ``sim-v1``, 2 ``sim-v2``) publishing, on a served home."""
    from trustfleet.services.factory import provision_devices
    from trustfleet.sim.agent import SimAgent

    fleet = SimFleet(tmp_path_factory.mktemp("rekey-fleet"), size=8)
    try:
        fleet.create_server()
        fleet.srv.configure({"attestation": {"enabled": False}})
        fleet.provision(8)
        other = provision_devices(fleet.srv.runtime, out_dir=fleet.devices_dir, count=2,
                                  model=_OTHER_MODEL, now=utc_now())  # fmt: skip
        fleet.agents.update({d.device_id: SimAgent(fleet.devices_dir / d.device_id) for d in other})
        for agent in fleet.agents.values():
            agent.configure({"mqtt": _MQTT})
        fleet.srv.close_runtime()
        fleet.srv.start()
        for agent in fleet.agents.values():
            agent.start()
        wait_until(lambda: set(fleet.device_states().values()) == {"enrolled"},
                   timeout_s=WAIT_S * 2, what="every device to enroll")  # fmt: skip
        zero = dict.fromkeys(fleet.device_ids, 0)
        fleet.wait_telemetry(fleet.device_ids, rows=1, since=zero, timeout_s=WAIT_S)
        yield fleet
    finally:
        fleet.stop()


def _rekey(fleet: SimFleet, *target: str) -> tuple[int, dict[str, Any]]:
    done = fleet.srv.cli("device", "rekey", *target, "--wait", "--timeout", "120", "--json",
                         timeout_s=180)  # fmt: skip
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def _token_keys(device: Path) -> list[tuple[str, bytes]]:
    """(label, public key DER) of each private key's pair, read by pkcs11-tool (not ours)."""
    pin = (device / "secrets" / "token.pin").read_text().strip()
    env = {**os.environ, "SOFTHSM2_CONF": str(device / "softhsm2.conf")}
    base = ["pkcs11-tool", "--module", _module(), "--token-label", "tf-device", "--login",
            "--pin", pin]  # fmt: skip
    listed = subprocess.run([*base, "--list-objects", "--type", "privkey"], env=env,
                            capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    labels = [line.split(":", 1)[1].strip() for line in listed.stdout.splitlines()
              if line.strip().startswith("label:")]  # fmt: skip
    keys = []
    for label in labels:
        out = subprocess.run([*base, "--read-object", "--type", "pubkey", "--label", label],
                             env=env, capture_output=True, timeout=30, check=True)  # fmt: skip
        keys.append((label, out.stdout))
    return keys


def _module() -> str:
    from trustfleet.keystore import find_module

    return str(find_module(None))


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _ocsp_text(fleet: SimFleet, cert: x509.Certificate, work: Path) -> str:
    """The responder's answer: request by openssl, POST by curl, read by openssl."""
    home = fleet.srv.home
    pem, request, response = work / "old.pem", work / "ocsp.req", work / "ocsp.der"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issuer = home / "public" / "device-ca.pem"
    openssl("ocsp", "-issuer", issuer, "-cert", pem, "-reqout", request, "-no_nonce")
    url = f"{fleet.srv.base_url}/ocsp"
    sent = curl("--cacert", fleet.srv.ca_bundle, "-H", "content-type: application/ocsp-request",
                "--data-binary", f"@{request}", "-o", response, url)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return openssl("ocsp", "-respin", response, "-issuer", issuer, "-cert", pem,
                   "-CAfile", fleet.srv.ca_bundle).decode()  # fmt: skip


def _grows(fleet: SimFleet, ids: list[str], rows: int = 2) -> None:
    fleet.wait_telemetry(ids, rows=rows, since=fleet.telemetry_counts(), timeout_s=WAIT_S)


def _events(fleet: SimFleet, device_id: str, kind: str) -> list[Any]:
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        found = tx.events.list(subject=f"device:{device_id}", limit=1000)
    return [e for e in found if e.type == kind]


def test_one_device_gets_a_new_key_and_the_old_certificate_is_superseded(
    fleet: SimFleet, tmp_path: Path
) -> None:
    device_id = fleet.device_ids[0]
    agent = fleet.agent(device_id)
    old = agent.ldevid()
    ((label, before),) = _token_keys(agent.directory)
    code, doc = _rekey(fleet, device_id)
    assert (code, doc["done"], doc["failed"]) == (0, 1, 0), doc
    new = agent.ldevid()
    ((label_after, after),) = _token_keys(agent.directory)  # one identity key object
    assert label_after == label == "identity"
    assert after != before and _spki(new) != _spki(old)
    assert new.serial_number != old.serial_number
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        stored = tx.certificates.get("device", format(old.serial_number, "x"))
    assert stored is not None and stored.revocation_reason == "superseded"
    text = _ocsp_text(fleet, old, tmp_path)
    assert ": revoked" in text and "superseded" in text.lower(), text
    (rekeyed,) = _events(fleet, device_id, "device.rekeyed")
    assert rekeyed.details["serial"] == format(new.serial_number, "x")
    assert rekeyed.details["old_key_sha256"] != rekeyed.details["new_key_sha256"]
    _grows(fleet, [device_id])
    assert "Traceback" not in agent.log.read_text(errors="replace")


def test_a_model_rekeys_exactly_its_devices(fleet: SimFleet) -> None:
    before = {d: fleet.agent(d).ldevid().serial_number for d in fleet.device_ids}
    code, doc = _rekey(fleet, "--model", _OTHER_MODEL)
    assert (code, doc["devices"], doc["done"]) == (0, 2, 2), doc
    targeted = {c["device_id"] for c in doc["commands"]}
    changed = {d for d in fleet.device_ids if fleet.agent(d).ldevid().serial_number != before[d]}
    assert changed == targeted
    with fleet.srv.runtime.uow.begin(read_only=True) as tx:
        assert {tx.devices.require(d).model for d in targeted} == {_OTHER_MODEL}
        others = [d for d in fleet.device_ids if tx.devices.require(d).model == _OTHER_MODEL]
    assert sorted(others) == sorted(targeted)
    _grows(fleet, sorted(targeted))


def test_a_failed_reenrollment_keeps_the_old_key_working(fleet: SimFleet) -> None:
    device_id = fleet.device_ids[1]
    agent = fleet.agent(device_id)
    est_url = agent.configure({}).server.est_url
    closed = f"https://localhost:{free_port()}/.well-known/est"
    agent.configure({"server": {"est_url": closed}})
    agent.restart()
    _grows(fleet, [device_id], rows=1)
    old = agent.ldevid()
    keys = _token_keys(agent.directory)
    code, doc = _rekey(fleet, device_id)
    assert (code, doc["done"], doc["failed"]) == (1, 0, 1), doc
    (failure,) = doc["failures"]
    assert failure["device_id"] == device_id and failure["reason"]
    assert agent.ldevid() == old and _token_keys(agent.directory) == keys
    _grows(fleet, [device_id])
    agent.configure({"server": {"est_url": est_url}})
    agent.restart()
    _grows(fleet, [device_id], rows=1)


def _start_counted(fleet: SimFleet, device_id: str) -> ManagedProcess:
    """The simulated agent with ``--json``: at SIGTERM it flushes and prints its counters."""
    agent = fleet.agent(device_id)
    argv: list[str | Path] = [sys.executable, "-m", "trustfleet.agent.simulated", "run",
                              "--device", agent.directory, "--json"]  # fmt: skip
    process = ManagedProcess(argv, log=agent.directory / "counted.out", name=device_id)
    process.start()
    return process


def _counters(process: ManagedProcess) -> dict[str, Any]:
    assert process.proc is not None
    process.signal(signal.SIGTERM)
    process.proc.wait(60)
    text = process.log.read_text(errors="replace")
    start = text.rindex("\n{\n") + 1 if "\n{\n" in text else text.index("{\n")
    counters: dict[str, Any] = json.loads(text[start : text.rindex("}") + 1])
    return counters


def test_no_telemetry_is_lost_across_a_fleet_rekey(fleet: SimFleet) -> None:
    ids = fleet.device_ids
    for device_id in ids:
        fleet.agent(device_id).stop()
    baseline = fleet.telemetry_counts()
    processes = {d: _start_counted(fleet, d) for d in ids}
    try:
        _grows(fleet, ids)
        code, doc = _rekey(fleet, "--all")
        assert (code, doc["devices"], doc["done"]) == (0, len(ids), len(ids)), doc
        _grows(fleet, ids)
    finally:
        counters = {d: _counters(p) for d, p in processes.items()}
    published = {d: c["published"]["telemetry"] - c["queue_depth"] for d, c in counters.items()}
    assert all(c["queue_dropped"] == 0 for c in counters.values()), counters

    def stored() -> dict[str, int]:
        now = fleet.telemetry_counts()
        return {d: now[d] - baseline[d] for d in ids}

    with contextlib.suppress(Unavailable):  # the assertion below shows the difference
        wait_until(lambda: stored() == published, timeout_s=30, what="every row in the store")
    assert stored() == published
    assert all(counters[d]["reenrolled"] == 1 for d in ids), counters
