"""The attester's evidence, checked by the service's pure verifier and by tpm2_checkquote."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from attdevkit import NOW, POLICY, challenge, device_state, image_bytes, references

from trustfleet.agent.attester import answer_challenge, parse_challenge
from trustfleet.agent.platform import DeviceLayout
from trustfleet.agent.platform.faults import Faults
from trustfleet.agent.platform.measured_boot import DeviceTpm, measured_boot
from trustfleet.attestation import encode_challenge, parse_evidence, verify_evidence
from trustfleet.errors import InvalidInput
from trustfleet.keystore.tpm import AkInfo, Tpm

GOOD = [("1.0.0", image_bytes("1.0.0"))]


def _booted(layout: DeviceLayout) -> tuple[DeviceTpm, Tpm, AkInfo]:
    device = DeviceTpm(layout.directory)
    device.power_on()
    tpm = device.open()
    glitch = Faults.for_simulation(layout.directory).boot_skip_verify  # the test seam
    measured_boot(layout.directory, tpm=tpm, env_store=layout.env_store(), slots=layout.slots(),
                  skip_verify=glitch)  # fmt: skip
    return device, tpm, device.ensure_ak(tpm)


def _codes(verdict: object) -> list[str]:
    return [f.code for f in verdict.findings]  # type: ignore[attr-defined]


def test_clean_evidence_passes_the_verifier(device: DeviceLayout) -> None:
    dev, tpm, ak = _booted(device)
    with tpm:
        ch = challenge()
        evidence = answer_challenge(dev, tpm, encode_challenge(ch), release="1.0.0", slot="a")
    verdict = verify_evidence(
        evidence, challenge=ch, device=device_state(ak.public_pem, ak.qualified_name),
        references=references(*GOOD), policy=POLICY, now=NOW + timedelta(seconds=1),
    )  # fmt: skip
    assert verdict.ok, _codes(verdict)
    assert _codes(verdict) == []
    assert verdict.facts.release == "1.0.0"


def _tamper_image(layout: DeviceLayout) -> None:
    image = layout.slots().image_path("a")
    data = bytearray(image.read_bytes())
    data[7] ^= 0x55
    image.write_bytes(bytes(data))  # the manifest (and its signature) stay as they were
    (layout.directory / "faults.json").write_text(json.dumps({"boot": "skip_verify"}))


def _forge_log(layout: DeviceLayout) -> None:
    path = DeviceTpm(layout.directory).eventlog_path
    entries = json.loads(path.read_text())
    entries[2]["digest"] = hashlib.sha256(image_bytes("1.0.0")).hexdigest()  # claim the good one
    path.write_text(json.dumps(entries))


def _extend_outside_log(tpm: Tpm) -> None:
    tpm.pcr_extend(10, hashlib.sha256(b"a rootkit loaded after the agent").digest())


DEVICE_TAMPER = {
    "modified-kernel-image": "attestation.measurement.unknown",
    "modified-image-forged-log": "attestation.eventlog.replay_mismatch",
    "pcr-extended-outside-log": "attestation.eventlog.replay_mismatch",
    "replayed-old-quote": "attestation.nonce.mismatch",
    "stale-nonce": "attestation.nonce.stale",
    "other-tpm-ak": "attestation.ak.unknown",
}


@pytest.mark.parametrize(("case", "expected"), DEVICE_TAMPER.items(), ids=DEVICE_TAMPER.keys())
def test_device_tamper_is_detected(
    device: DeviceLayout, other_tpm: Path, case: str, expected: str
) -> None:
    if case.startswith("modified"):
        _tamper_image(device)
    dev, tpm, ak = _booted(device)
    with tpm:
        if case == "modified-image-forged-log":
            _forge_log(device)
        if case == "pcr-extended-outside-log":
            _extend_outside_log(tpm)
        ch = challenge()
        sent = challenge() if case == "replayed-old-quote" else ch
        evidence = answer_challenge(dev, tpm, encode_challenge(sent), release="1.0.0", slot="a")
    if case == "replayed-old-quote":  # an old quote re-sent under the new challenge's id
        doc = json.loads(evidence)
        doc["id"] = ch.id
        evidence = json.dumps(doc).encode()
    state = device_state(ak.public_pem, ak.qualified_name)
    if case == "other-tpm-ak":
        state = _other_ak_state(other_tpm, device.directory.parent / "other")
    now = NOW + timedelta(seconds=POLICY.max_age_s + 5 if case == "stale-nonce" else 1)
    verdict = verify_evidence(evidence, challenge=ch, device=state,
                              references=references(*GOOD), policy=POLICY, now=now)  # fmt: skip
    assert not verdict.ok
    assert expected in _codes(verdict), _codes(verdict)


def _other_ak_state(other_tpm: Path, folder: Path) -> object:
    from trustfleet.keystore.tpm import SwtpmInstance

    folder.mkdir()
    (folder / "tpm2-00.permall").write_bytes((other_tpm / "tpm2-00.permall").read_bytes())
    with SwtpmInstance(folder) as swtpm, Tpm(tcti=swtpm.tcti) as tpm:
        other = tpm.ak()
    return device_state(other.public_pem, other.qualified_name)


BAD_CHALLENGES = {
    "not-json": b"{",
    "not-object": b"[]",
    "extra-key": b'{"id":"x","nonce":"AA==","pcrs":[0],"url":"http://x"}',
    "empty-id": b'{"id":"","nonce":"AA==","pcrs":[0]}',
    "nonce-not-base64": b'{"id":"x","nonce":"%%%","pcrs":[0]}',
    "nonce-too-long": json.dumps(
        {"id": "x", "nonce": base64.b64encode(bytes(65)).decode(), "pcrs": [0]}
    ).encode(),
    "pcr-out-of-range": b'{"id":"x","nonce":"AA==","pcrs":[24]}',
    "pcr-not-int": b'{"id":"x","nonce":"AA==","pcrs":["0"]}',
    "too-many-pcrs": json.dumps({"id": "x", "nonce": "AA==", "pcrs": [0] * 25}).encode(),
    "oversized": b'{"id":"' + b"x" * 2000 + b'","nonce":"AA==","pcrs":[0]}',
}


@pytest.mark.parametrize("payload", BAD_CHALLENGES.values(), ids=BAD_CHALLENGES.keys())
def test_bad_challenges_are_refused(payload: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_challenge(payload)
    assert err.value.code == "attestation.challenge.malformed"


def test_only_boot_pcrs_are_quoted(device: DeviceLayout) -> None:
    dev, tpm, _ak = _booted(device)
    payload = json.dumps(
        {"id": "c1", "nonce": base64.b64encode(os.urandom(32)).decode(), "pcrs": [0, 7, 9, 16]}
    ).encode()
    with tpm:
        evidence = parse_evidence(
            answer_challenge(dev, tpm, payload, release=None, slot=None),
            max_bytes=65536, max_quote_bytes=1024, max_signature_bytes=256,
            max_eventlog_entries=64, max_string_chars=256,
        )  # fmt: skip
        with pytest.raises(InvalidInput):
            answer_challenge(dev, tpm, payload.replace(b"[0, 7, 9, 16]", b"[7]"),
                             release=None, slot=None)  # fmt: skip
    from trustfleet.attestation.tpmstructs import parse_attest_quote

    (bank,) = parse_attest_quote(evidence.quote, max_bytes=1024).pcr_select
    assert bank.pcrs == (0, 9)


def test_tpm2_checkquote_accepts_the_attesters_quote(device: DeviceLayout, tmp_path: Path) -> None:
    dev, tpm, ak = _booted(device)
    with tpm:
        ch = challenge()
        evidence = json.loads(
            answer_challenge(dev, tpm, encode_challenge(ch), release="1.0.0", slot="a")
        )
        values = tpm.pcr_read([0, 4, 9, 10])
    (tmp_path / "q.msg").write_bytes(base64.b64decode(evidence["quote"]))
    (tmp_path / "q.sig").write_bytes(base64.b64decode(evidence["signature"]))
    (tmp_path / "q.pcrs").write_bytes(b"".join(values[p] for p in (0, 4, 9, 10)))
    (tmp_path / "ak.pem").write_text(ak.public_pem)
    result = subprocess.run(
        ["tpm2_checkquote", "-u", str(tmp_path / "ak.pem"), "-g", "sha256",
         "-m", str(tmp_path / "q.msg"), "-s", str(tmp_path / "q.sig"),
         "-f", str(tmp_path / "q.pcrs"), "-l", "sha256:0,4,9,10", "-q", ch.nonce.hex()],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
