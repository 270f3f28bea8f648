"""Interop with tpm2-tools on the same swtpm: its quotes verify our way, ours verify its way."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tpm_support import BOOT_PCRS, boot_events, run_tool, verify_quote

from trustfleet.attestation import (
    AttestationPolicy,
    DeviceAttestationState,
    EventLogEntry,
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    encode_evidence,
    make_challenge,
    verify_evidence,
)
from trustfleet.keystore.tpm import AkInfo, SwtpmInstance, Tpm

PCR_LIST = "sha256:" + ",".join(map(str, BOOT_PCRS))
IMAGE = b"image of sim-v1 2.0.0\n"


def _boot(tpm: Tpm) -> list[EventLogEntry]:
    log = []
    for pcr, digest, component in boot_events(IMAGE):
        tpm.pcr_extend(pcr, digest)
        log.append(EventLogEntry(pcr=pcr, type="EV_IPL", digest=digest, component=component))
    return log


def _references() -> ReferenceSet:
    digests = {component: digest for _p, digest, component in boot_events(IMAGE)}
    model = ModelReference(
        model="sim-v1",
        rom=frozenset({digests["rom"]}),
        bootloader=frozenset({digests["bootloader"]}),
        agent=frozenset({digests["agent"]}),
    )
    release = ReleaseReference(model="sim-v1", version="2.0.0", image_sha256=digests["image"])
    return ReferenceSet.build(models=[model], releases=[release])


def _verify_with_f2(ak: AkInfo, *, attest: bytes, signature: bytes, log: list[EventLogEntry],
                    challenge_nonce: bytes | None = None) -> list[str]:  # fmt: skip
    now = datetime.now(UTC)
    challenge = make_challenge(now=now, pcrs=BOOT_PCRS)
    if challenge_nonce is not None:
        challenge = type(challenge)(
            id=challenge.id, nonce=challenge_nonce, issued_at=now, pcrs=BOOT_PCRS
        )
    evidence = encode_evidence(
        challenge_id=challenge.id, quote=attest, signature=signature, eventlog=log, release="2.0.0"
    )
    device = DeviceAttestationState(
        device_id="dev-tpm-interop",
        model="sim-v1",
        ak_public_key=ak.public_pem.encode(),
        ak_qualified_name=ak.qualified_name,
    )
    verdict = verify_evidence(
        evidence,
        challenge=challenge,
        device=device,
        references=_references(),
        policy=AttestationPolicy(),
        now=now,
    )
    return [f.code for f in verdict.findings if f.severity == "error"]


def test_tpm2_quote_verifies_with_cryptography_and_the_verifier(
    tmp_path: Path, swtpm: SwtpmInstance, tpm: Tpm
) -> None:
    ak = tpm.create_ak()
    log = _boot(tpm)
    nonce = os.urandom(32)
    files = {name: tmp_path / name for name in ("quote.msg", "quote.sig", "quote.pcrs")}
    result = run_tool(
        swtpm,
        "tpm2_quote", "-c", hex(ak.handle), "-l", PCR_LIST, "-q", nonce.hex(), "-g", "sha256",
        "-m", str(files["quote.msg"]), "-s", str(files["quote.sig"]),
        "-o", str(files["quote.pcrs"]), "-F", "values",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    attest, signature = files["quote.msg"].read_bytes(), files["quote.sig"].read_bytes()
    verify_quote(ak.public_pem, attest, signature)
    pcr_values = files["quote.pcrs"].read_bytes()
    assert pcr_values == b"".join(tpm.pcr_read(BOOT_PCRS)[p] for p in BOOT_PCRS)
    assert (
        _verify_with_f2(ak, attest=attest, signature=signature, log=log, challenge_nonce=nonce)
        == []
    )


def test_our_quote_is_accepted_by_the_verifier(tpm: Tpm) -> None:
    ak = tpm.create_ak()
    log = _boot(tpm)
    nonce = os.urandom(32)
    attest, signature = tpm.quote(nonce, list(BOOT_PCRS))
    assert (
        _verify_with_f2(ak, attest=attest, signature=signature, log=log, challenge_nonce=nonce)
        == []
    )
    errors = _verify_with_f2(ak, attest=attest, signature=signature, log=log)  # another nonce
    assert errors != []


@pytest.mark.parametrize("nonce_matches", [True, False], ids=["right-nonce", "wrong-nonce"])
def test_tpm2_checkquote_accepts_our_quote(
    tmp_path: Path, swtpm: SwtpmInstance, tpm: Tpm, nonce_matches: bool
) -> None:
    ak = tpm.create_ak()
    _boot(tpm)
    nonce = os.urandom(32)
    attest, signature = tpm.quote(nonce, list(BOOT_PCRS))
    values = tpm.pcr_read(BOOT_PCRS)
    (tmp_path / "quote.msg").write_bytes(attest)
    (tmp_path / "quote.sig").write_bytes(signature)
    (tmp_path / "quote.pcrs").write_bytes(b"".join(values[p] for p in BOOT_PCRS))
    (tmp_path / "ak.pem").write_text(ak.public_pem)
    qualification = nonce if nonce_matches else hashlib.sha256(nonce).digest()
    result = run_tool(
        swtpm,
        "tpm2_checkquote", "-u", str(tmp_path / "ak.pem"), "-g", "sha256",
        "-m", str(tmp_path / "quote.msg"), "-s", str(tmp_path / "quote.sig"),
        "-f", str(tmp_path / "quote.pcrs"), "-l", PCR_LIST, "-q", qualification.hex(),
    )  # fmt: skip
    assert (result.returncode == 0) is nonce_matches, result.stderr


def test_tpm2_tools_see_the_same_ak(tmp_path: Path, swtpm: SwtpmInstance, tpm: Tpm) -> None:
    ak = tpm.create_ak()
    result = run_tool(
        swtpm, "tpm2_readpublic", "-c", hex(ak.handle), "-n", str(tmp_path / "ak.name")
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ak.name").read_bytes() == ak.name
