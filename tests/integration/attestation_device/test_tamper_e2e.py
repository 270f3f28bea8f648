"""The end-to-end tamper table: a real server, broker, agent and swtpm; one challenge per case.

The tests of this module share one fleet and run in file order (each leaves the device healed:
a passing attestation of the good release lifts the quarantine the failure imposed). Cases
about the device itself run the real agent (its boot chain, its attester); cases about the
message (replay, stale, reused, another TPM) craft evidence with the real device TPM through
the agent's own attester command and hand it to the service's ``handle_evidence``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from attdev_fleet import (
    IMAGE_BYTES,
    MODEL,
    Agent,
    agent_cli,
    attest_run,
    attest_server,
    codes,
    enrolled_tpm_device,
    status,
)

from support.server import RunningServer
from support.tools import require_tools
from support.waiting import wait_for
from trustfleet.agent.platform.measured_boot import DeviceTpm

pytestmark = pytest.mark.integration


@dataclass
class Fleet:
    server: RunningServer
    device: Path
    agent: Agent
    work: Path

    @property
    def device_id(self) -> str:
        return self.device.name

    def reboot(self) -> None:
        """Stop the agent cleanly and start it again (a boot); wait for its link."""
        before = self.agent.log().count("connected to the broker")
        self.agent.stop()
        self.agent.start()
        wait_for(lambda: self.agent.log().count("connected to the broker") > before,
                 what="the agent's link")  # fmt: skip

    def heal(self) -> None:
        """A passing attestation of the good release lifts the system's quarantine.

        A quarantine change closes the device's connection (the broker kicks it); a challenge
        published while it reconnects reaches nobody (challenges are not queued for an offline
        device, by design), so an operator runs ``attest run`` again: so does this, once.
        """
        result = self.server.cli("attest", "run", self.device_id, "--wait", "45", "--json")
        if result.returncode not in (0, 1) and "no verdict" in result.stderr:
            doc = attest_run(self.server, self.device_id)  # the device is back by now
        else:
            assert result.returncode in (0, 1), result.stderr
            doc = json.loads(result.stdout)
        assert doc["ok"], doc
        assert status(self.server, self.device_id)["quarantine"] is None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_tools("mosquitto", "swtpm", "tpm2_checkquote", "tpm2_pcrextend")
    base = tmp_path_factory.mktemp("attdev-e2e")
    with attest_server(base) as server:
        device = enrolled_tpm_device(server, base)
        agent = Agent(device)
        fleet = Fleet(server=server, device=device, agent=agent, work=base)
        try:
            fleet.reboot()
            yield fleet
        finally:
            agent.stop()


def test_boot_challenge_then_a_clean_attestation(fleet: Fleet) -> None:
    # The agent enrolled its AK, announced its start, and the scheduler's boot challenge passed.
    wait_for(lambda: status(fleet.server, fleet.device_id)["ak"], what="the AK enrollment")
    first = wait_for(lambda: status(fleet.server, fleet.device_id)["results"],
                     what="the boot challenge's verdict")  # fmt: skip
    assert first[0]["ok"], first
    doc = attest_run(fleet.server, fleet.device_id)
    assert doc["ok"] and doc["findings"] == [], doc
    assert doc["release"] == "1.0.0"


def test_the_agent_never_loads_tpm2_pytss(fleet: Fleet) -> None:
    attest_run(fleet.server, fleet.device_id)  # it has answered challenges
    assert fleet.agent.proc is not None
    maps = Path(f"/proc/{fleet.agent.proc.pid}/maps").read_text()
    assert "tss2" not in maps and "tpm2_pytss" not in maps
    rss = Path(f"/proc/{fleet.agent.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0]
    print(f"agent RSS after answering challenges: {int(rss) / 1024:.1f} MiB")


def _evidence_for(fleet: Fleet, challenge_payload: bytes) -> bytes:
    """The agent's attester child (the same command the agent runs) answering a challenge."""
    agent = str(Path(sys.executable).parent / "trustfleet-agent")
    args = [agent, "attest", "--device", str(fleet.device), "--release", "1.0.0", "--slot", "a"]
    proc = subprocess.run(
        args, input=challenge_payload, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_tpm2_checkquote_accepts_the_agents_quote(fleet: Fleet, tmp_path: Path) -> None:
    from trustfleet.attestation import encode_challenge, make_challenge

    challenge = make_challenge(now=datetime.now(UTC))
    evidence = json.loads(_evidence_for(fleet, encode_challenge(challenge)))
    pcrs = tmp_path / "pcrs.bin"
    env = {**os.environ, "TPM2TOOLS_TCTI": DeviceTpm(fleet.device).tcti}
    read = subprocess.run(["tpm2_pcrread", "sha256:0,4,9,10", "-o", str(pcrs)], env=env,
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert read.returncode == 0, read.stderr
    ak_pem = json.loads((DeviceTpm(fleet.device).ak_path).read_text())["public_pem"]
    (tmp_path / "ak.pem").write_text(ak_pem)
    (tmp_path / "q.msg").write_bytes(base64.b64decode(evidence["quote"]))
    (tmp_path / "q.sig").write_bytes(base64.b64decode(evidence["signature"]))
    check = subprocess.run(
        ["tpm2_checkquote", "-u", str(tmp_path / "ak.pem"), "-g", "sha256",
         "-m", str(tmp_path / "q.msg"), "-s", str(tmp_path / "q.sig"), "-f", str(pcrs),
         "-l", "sha256:0,4,9,10", "-q", challenge.nonce.hex()],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_pcr_extended_outside_the_log(fleet: Fleet) -> None:
    env = {**os.environ, "TPM2TOOLS_TCTI": DeviceTpm(fleet.device).tcti}
    digest = hashlib.sha256(b"code loaded behind the agent's back").hexdigest()
    ext = subprocess.run(["tpm2_pcrextend", f"10:sha256={digest}"], env=env,
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert ext.returncode == 0, ext.stderr
    doc = attest_run(fleet.server, fleet.device_id)
    assert "attestation.eventlog.replay_mismatch" in codes(doc), doc
    assert status(fleet.server, fleet.device_id)["quarantine"] is not None
    fleet.reboot()  # a clean boot of the good release; quarantined, so the reset is expected
    fleet.heal()


def test_unannounced_reboot_between_challenges(fleet: Fleet) -> None:
    # The TPM is reset and the chain measured again, but the agent never announced a boot.
    DeviceTpm(fleet.device).power_on()
    booted = agent_cli("boot", "--device", fleet.device, "--json")
    assert booted.returncode == 0, booted.stderr
    doc = attest_run(fleet.server, fleet.device_id)
    assert codes(doc) == {"attestation.reset.unexpected"}, doc
    fleet.heal()  # quarantined: the next challenge counts the reboot as expected


def test_modified_kernel_image_and_forged_log(fleet: Fleet) -> None:
    image = fleet.device / "slots" / "a" / "image.bin"
    good = image.read_bytes()
    bad = bytearray(good)
    bad[4096] ^= 0xFF  # the release manifest and its boot signature stay as they were
    image.write_bytes(bytes(bad))
    (fleet.device / "faults.json").write_text(json.dumps({"boot": "skip_verify"}))
    sealed_state = (fleet.device / "state.enc").read_bytes()
    try:
        fleet.reboot()  # the glitched bootloader runs it; the TPM measures it
        # Sealed storage stayed locked: the boot could not record itself in the state.
        assert (fleet.device / "state.enc").read_bytes() == sealed_state
        doc = attest_run(fleet.server, fleet.device_id)
        assert "attestation.measurement.unknown" in codes(doc), doc
        log = DeviceTpm(fleet.device).eventlog_path
        entries = json.loads(log.read_text())
        entries[2]["digest"] = hashlib.sha256(good).hexdigest()  # the log lies
        log.write_text(json.dumps(entries))
        doc = attest_run(fleet.server, fleet.device_id)
        assert "attestation.eventlog.replay_mismatch" in codes(doc), doc
    finally:
        image.write_bytes(good)
        (fleet.device / "faults.json").unlink()
    fleet.reboot()
    fleet.heal()


def test_unknown_release_measurement(fleet: Fleet) -> None:
    # A release signed with the real boot key but never published: it boots (verified boot
    # passes) but the service knows no such measurement for this device.
    from trustfleet.sim.image import build_image

    staged_image = fleet.work / "v1.1.bin"
    build_image(staged_image, version="1.1.0", size_bytes=IMAGE_BYTES, seed=MODEL)
    built = fleet.server.cli("release", "build", "--version", "1.1.0", "--image",
                             str(staged_image), "--model", MODEL)  # fmt: skip
    assert built.returncode == 0, built.stderr
    staged = fleet.server.home / "ota" / "staging" / MODEL / "1.1.0"
    slot = fleet.device / "slots" / "a"
    saved = {name: (slot / name).read_bytes() for name in ("image.bin", "release.json")}
    try:
        for name in saved:
            shutil.copyfile(staged / name, slot / name)
        fleet.reboot()
        doc = attest_run(fleet.server, fleet.device_id)
        assert "attestation.measurement.unknown" in codes(doc), doc
    finally:
        for name, data in saved.items():
            (slot / name).write_bytes(data)
    fleet.reboot()
    fleet.heal()


def _issue(fleet: Fleet, now: datetime) -> object:
    from trustfleet.services.attestation import issue_challenge

    return issue_challenge(fleet.server.runtime, device_id=fleet.device_id, now=now)


def _handle(fleet: Fleet, payload: bytes, now: datetime) -> set[str]:
    from trustfleet.services.attestation import handle_evidence

    verdict = handle_evidence(fleet.server.runtime, device_id=fleet.device_id, payload=payload,
                              now=now)  # fmt: skip
    return {f.code for f in verdict.errors}


def test_replayed_stale_and_reused_evidence(fleet: Fleet) -> None:
    from trustfleet.attestation import encode_challenge
    from trustfleet.errors import Conflict

    now = datetime.now(UTC)
    old = _issue(fleet, now)
    old_evidence = _evidence_for(fleet, encode_challenge(old))  # type: ignore[arg-type]
    assert _handle(fleet, old_evidence, now) == set()
    # Replayed: the old quote sent again under a new challenge's id.
    new = _issue(fleet, now)
    replay = json.loads(old_evidence)
    replay["id"] = new.id  # type: ignore[attr-defined]
    assert "attestation.nonce.mismatch" in _handle(fleet, json.dumps(replay).encode(), now)
    fleet.heal()
    # Reused: the same evidence again is a duplicate; no second verdict.
    with pytest.raises(Conflict) as err:
        _handle(fleet, old_evidence, now)
    assert err.value.code == "attestation.challenge.closed"
    # Stale: answered after nonce_max_age_s.
    late = _issue(fleet, now)
    evidence = _evidence_for(fleet, encode_challenge(late))  # type: ignore[arg-type]
    assert "attestation.nonce.stale" in _handle(fleet, evidence, now + timedelta(seconds=120))
    fleet.heal()


def test_quote_from_another_tpm(fleet: Fleet, tmp_path: Path) -> None:
    from trustfleet.agent.attester import answer_challenge
    from trustfleet.attestation import encode_challenge
    from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance, Tpm

    other = SwtpmInstance(tmp_path / "t", ca=ManufacturerCa(fleet.server.home / "tpm-vendor"))
    challenge = _issue(fleet, datetime.now(UTC))
    log = DeviceTpm(fleet.device).eventlog()
    with other, Tpm(tcti=other.tcti) as tpm:
        tpm.create_ak()
        for entry in log:  # the same, good boot, measured in another TPM
            tpm.pcr_extend(entry["pcr"], bytes.fromhex(entry["digest"]))
        fake = tmp_path / "dev"
        (fake / "tpm").mkdir(parents=True)
        (fake / "tpm" / "eventlog.json").write_text(json.dumps(log))
        evidence = answer_challenge(DeviceTpm(fake), tpm, encode_challenge(challenge),  # type: ignore[arg-type]
                                    release="1.0.0", slot="a")  # fmt: skip
    assert "attestation.ak.unknown" in _handle(fleet, evidence, datetime.now(UTC))
    fleet.heal()


def test_missing_response_quarantines(fleet: Fleet) -> None:
    from trustfleet.services.attestation import sweep_missed

    fleet.agent.stop()  # the device is off: nobody answers
    result = fleet.server.cli("attest", "run", fleet.device_id, "--wait", "2", "--json")
    assert result.returncode != 0
    assert status(fleet.server, fleet.device_id)["quarantine"] is None
    # The scheduler's sweep, response_timeout_s later (called directly: the test does not wait).
    timeout_s = fleet.server.runtime.settings.attestation.response_timeout_s
    later = datetime.now(UTC) + timedelta(seconds=timeout_s + 1)
    assert sweep_missed(fleet.server.runtime, now=later) == [fleet.device_id]
    quarantine = status(fleet.server, fleet.device_id)["quarantine"]
    assert quarantine is not None and "missed" in quarantine["reason"], quarantine
