"""Attestation through the real server: AK enrollment over HTTPS (device mTLS), challenges and
evidence over the real broker, verdicts through the ingest workers, quarantine applied at the
broker (telemetry dropped, ota/ still open), re-enrollment refused, release by a passing
attestation after an update, and the operator's commands."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from attest_server import ChallengeListener, MqttDevice, start_server, wait_for
from attestkit import add_release, boot, evidence, vendor_bundle

from support.server import (
    TRUSTFLEET,
    RunningServer,
    _stop,
    enroll_software,
    make_csr_der,
    make_key,
    make_software_device,
)
from trustfleet.cli._common import ACTOR
from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance, Tpm

IMAGE_1 = b"server release one " * 500
IMAGE_2 = b"server release two " * 500


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa
) -> Iterator[tuple[RunningServer, int]]:
    # the session TPM fixture manufactured a TPM, so the vendor CA exists by now
    base = tmp_path_factory.mktemp("att-server")
    server, mqtt_port = start_server(base, cas_pem=_bundle(vendor_ca, tmp_path_factory))
    with server.runtime.uow.begin() as tx:
        now = datetime.now(UTC)
        add_release(tx, "1.0.0", IMAGE_1, now)
        add_release(tx, "2.0.0", IMAGE_2, now)
    try:
        yield server, mqtt_port
    finally:
        server.close()
        _stop(server.process)


def _bundle(ca: ManufacturerCa, factory: pytest.TempPathFactory) -> bytes:
    if not ca.root_certificate.exists():
        SwtpmInstance(factory.mktemp("att-first-tpm"), ca=ca).setup()
    return vendor_bundle(ca)


def _post(server: RunningServer, path: str, doc: dict[str, Any], cert: Path, key: Path) -> Any:
    return server.request(
        "POST",
        path,
        content=json.dumps(doc).encode(),
        headers={"content-type": "application/json"},
        cert=cert,
        key=key,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _enroll_ak(server: RunningServer, tpm: Tpm, device: Any, ldevid: Path, key: Path) -> None:
    ak = tpm.create_ak(replace=True)
    doc = {
        "ek_public": _b64(tpm.ek_public()),
        "ek_certificate": _b64(tpm.ek_certificate()),
        "ak_public": _b64(ak.public),
        "ak_name": _b64(ak.name),
    }
    refused = _post(server, "/attest/v1/ak", doc, device.idevid, device.key)  # IDevID: no
    assert refused.status_code == 403, refused.text
    assert refused.headers["x-trustfleet-error"] == "attestation.auth"
    too_big = _post(server, "/attest/v1/ak", {**doc, "ak_name": "A" * 20000}, ldevid, key)
    assert too_big.status_code == 400
    answer = _post(server, "/attest/v1/ak", doc, ldevid, key)
    assert answer.status_code == 200, answer.text
    credential = answer.json()
    secret = tpm.activate_credential(
        base64.b64decode(credential["credential_blob"]),
        base64.b64decode(credential["encrypted_secret"]),
    )
    done = _post(
        server,
        "/attest/v1/ak/activate",
        {"id": credential["id"], "secret": _b64(secret)},
        ldevid,
        key,
    )
    assert done.status_code == 200, done.text
    assert done.json()["ak_name"] == ak.name.hex()


def _verdicts(server: RunningServer, device_id: str) -> list[Any]:
    with server.runtime.uow.begin(read_only=True) as tx:
        return tx.attestation.results(device_id, limit=100)


def _quarantined(server: RunningServer, device_id: str) -> bool:
    with server.runtime.uow.begin(read_only=True) as tx:
        return tx.attestation.quarantine(device_id) is not None


def _attest_run(server: RunningServer, device_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(TRUSTFLEET),
            "attest",
            "run",
            device_id,
            "--wait",
            "30",
            "--json",
            "--home",
            str(server.home),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _answer_run(
    server: RunningServer,
    mqtt: MqttDevice,
    listener: ChallengeListener,
    tpm: Tpm,
    *,
    events: list[Any],
    release: str,
) -> tuple[int, dict[str, Any]]:
    cli = _attest_run(server, mqtt.device_id)
    challenge = listener.next()
    mqtt.pub("attest/evidence", evidence(tpm, challenge, events, release=release))
    out, err = cli.communicate(timeout=60)
    return cli.returncode, json.loads(out) if out.strip() else {"stderr": err}


def _telemetry_open(mqtt: MqttDevice) -> bool:
    probe = f"probe-{hashlib.sha256(str(id(mqtt)).encode()).hexdigest()[:8]}"

    def publish() -> None:
        mqtt.pub("telemetry", probe)
        mqtt.pub("ota/status", "marker")

    return probe in mqtt.first_of(["telemetry", "ota/status"], publish)


def test_attestation_end_to_end(
    served: tuple[RunningServer, int], tmp_path: Path, swtpm: SwtpmInstance
) -> None:
    server, mqtt_port = served
    device = make_software_device(server, tmp_path, prefix="att")
    ldevid, key = enroll_software(server, device, tmp_path)
    mqtt = MqttDevice(device.device_id, ldevid, key, mqtt_port, server.ca_bundle)
    listener = ChallengeListener(mqtt)
    try:
        tpm = Tpm(tcti=swtpm.tcti)
        events = boot(tpm, IMAGE_1)
        _enroll_ak(server, tpm, device, ldevid, key)
        # the scheduler challenges a device with a new AK at once
        scheduled = listener.next()
        mqtt.pub("attest/evidence", evidence(tpm, scheduled, events, release="1.0.0"))
        first = wait_for(lambda: _verdicts(server, device.device_id), what="the first verdict")
        assert first[0].ok and first[0].release == "1.0.0", first[0].findings
        # on demand; then a PCR extended outside the log fails and quarantines
        code, verdict = _answer_run(server, mqtt, listener, tpm, events=events, release="1.0.0")
        assert code == 0 and verdict["ok"], verdict
        tpm.pcr_extend(9, hashlib.sha256(b"implant").digest())
        code, verdict = _answer_run(server, mqtt, listener, tpm, events=events, release="1.0.0")
        assert code == 1 and not verdict["ok"]
        assert "attestation.eventlog.replay_mismatch" in [f["code"] for f in verdict["findings"]]
        assert _quarantined(server, device.device_id)
        wait_for(lambda: not _telemetry_open(mqtt), what="the broker quarantine")
        # re-enrollment refused while quarantined
        body = base64.b64encode(make_csr_der(make_key(tmp_path / "re.key"), cn=device.device_id))
        again = server.est("simplereenroll", body, cert=ldevid, key=key)
        assert again.status_code == 403
        assert again.headers["x-trustfleet-error"] == "enrollment.quarantined"
        # an update to 2.0.0: reboot (TPM reset), a good boot, a passing attestation releases
        tpm.close()
        swtpm.stop()
        swtpm.start()
        tpm = Tpm(tcti=swtpm.tcti)
        events = boot(tpm, IMAGE_2)
        code, verdict = _answer_run(server, mqtt, listener, tpm, events=events, release="2.0.0")
        assert code == 0 and verdict["ok"] and verdict["release"] == "2.0.0", verdict
        assert not _quarantined(server, device.device_id)
        wait_for(lambda: _telemetry_open(mqtt), what="the broker release")
        listener.close()  # releasing disconnected the device; it subscribes again
        listener = ChallengeListener(mqtt)
        # a boot announcement brings a boot challenge
        mqtt.pub(
            "events",
            json.dumps(
                {
                    "ts": "2026-11-22T12:00:00+00:00",
                    "seq": 1,
                    "type": "agent.started",
                    "details": {},
                }
            ),
        )
        boot_challenge = listener.next()
        with server.runtime.uow.begin(read_only=True) as tx:
            record = tx.attestation.get_challenge(boot_challenge["id"])
        assert record is not None and record.trigger == "boot"
        tpm.close()
    finally:
        listener.close()
        mqtt.close()


def test_operator_commands(served: tuple[RunningServer, int], tmp_path: Path) -> None:
    server, _mqtt_port = served
    device = make_software_device(server, tmp_path, prefix="op")
    enroll_software(server, device, tmp_path)
    device_id = device.device_id
    done = server.cli("attest", "quarantine", device_id, "--reason", "lost in transit")
    assert done.returncode == 0, done.stderr
    again = server.cli("attest", "quarantine", device_id, "--reason", "again")
    assert again.returncode != 0 and "already quarantined" in again.stderr
    assert "Traceback" not in again.stderr
    status = server.cli_json("attest", "status", device_id)
    assert status["quarantine"]["reason"] == "lost in transit"
    assert status["quarantine"]["by"] == ACTOR and status["ak"] is None  # the login @ host
    listed = server.cli_json("attest", "list", "--quarantined")
    assert device_id in [d["device_id"] for d in listed["devices"]]
    assert server.cli("attest", "lift", device_id).returncode == 0
    with server.runtime.uow.begin(read_only=True) as tx:
        assert tx.attestation.quarantine(device_id) is None
        kinds = [e.type for e in tx.events.list(subject=f"device:{device_id}")]
    assert kinds[-2:] == ["device.quarantined", "device.released"]
