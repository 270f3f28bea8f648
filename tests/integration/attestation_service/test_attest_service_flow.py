"""The attestation use cases against a real store (SQLite and PostgreSQL) and a real swtpm.

AK enrollment by credential activation, a challenge answered with a real TPM quote, a tampered
boot quarantining the device, auto-release after a boot into a good release, the operator's
quarantine, and missed challenges — each state change with its security event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from attestkit import add_release, boot, evidence, vendor_bundle

from trustfleet.errors import Conflict, PermissionDenied, VerificationFailed
from trustfleet.keystore.tpm import AkInfo, ManufacturerCa, SwtpmInstance, Tpm
from trustfleet.services import attestation as att
from trustfleet.services.runtime import Runtime
from trustfleet.settings import AttestationSettings, CaSettings, ServerSettings
from trustfleet.store import UnitOfWork, create_engine, migrate

IMAGE_1 = b"release one " * 1000
IMAGE_2 = b"release two " * 1000
DEVICE = "dev-att-0001"


@pytest.fixture
def rt(db_url: str, tmp_path: Path, vendor_ca: ManufacturerCa, t0: datetime) -> Iterator[Runtime]:
    home = tmp_path / "home"
    (home / "public").mkdir(parents=True)
    (home / "public" / "tpm-manufacturer-cas.pem").write_bytes(vendor_bundle(vendor_ca))
    ca = {
        n: CaSettings(key="pkcs11:token=x;object=y", cert="c.pem")
        for n in ("root", "manufacturing", "device")
    }
    settings = ServerSettings(
        home=home, ca=ca, attestation=AttestationSettings(max_missed=2, response_timeout_s=30)
    )
    engine = create_engine(db_url)
    migrate(engine)
    runtime = Runtime(settings=settings, engine=engine, uow=UnitOfWork(engine))
    with runtime.uow.begin() as tx:
        tx.devices.add(id=DEVICE, model="sim-v1", state="enrolled", now=t0)
        add_release(tx, "1.0.0", IMAGE_1, t0)
        add_release(tx, "2.0.0", IMAGE_2, t0)
    try:
        yield runtime
    finally:
        engine.dispose()


def _begin(
    rt: Runtime,
    tpm: Tpm,
    ak: AkInfo,
    t0: datetime,
    *,
    ak_name: bytes | None = None,
    device_id: str = DEVICE,
) -> tuple[bytes, bytes, str]:
    """Begin enrolling ``tpm``'s ``ak`` as the device's (claiming ``ak_name`` for it, if given)."""
    return att.begin_ak_enrollment(
        rt,
        device_id=device_id,
        ek_public=tpm.ek_public(),
        ek_certificate=tpm.ek_certificate(),
        ak_public=ak.public,
        ak_name=ak.name if ak_name is None else ak_name,
        now=t0,
    )


def _enroll_ak(rt: Runtime, tpm: Tpm, t0: datetime) -> None:
    ak = tpm.create_ak(replace=True)
    blob, secret, enrollment = _begin(rt, tpm, ak, t0)
    recovered = tpm.activate_credential(blob, secret)
    key = att.finish_ak_enrollment(
        rt, device_id=DEVICE, enrollment_id=enrollment, secret=recovered, now=t0
    )
    assert key.ak_name == ak.name.hex()
    assert att._ak_qualified_name(key) == ak.qualified_name  # the verifier checks the signer


def _answer(
    rt: Runtime,
    tpm: Tpm,
    events: list,
    *,
    at: datetime,
    trigger: str = "schedule",
    release: str = "1.0.0",
) -> att.Verdict:  # type: ignore[name-defined]
    challenge = att.issue_challenge(rt, device_id=DEVICE, now=at, trigger=trigger)  # type: ignore[arg-type]
    _topic, payload = att.challenge_message(DEVICE, challenge)
    body = evidence(tpm, json.loads(payload), events, release=release)
    return att.handle_evidence(rt, device_id=DEVICE, payload=body, now=at + timedelta(seconds=1))


def _events(rt: Runtime) -> list[str]:
    with rt.uow.begin(read_only=True) as tx:
        return [e.type for e in tx.events.list(subject=f"device:{DEVICE}")]


def _quarantine(rt: Runtime) -> object:
    with rt.uow.begin(read_only=True) as tx:
        return tx.attestation.quarantine(DEVICE)


def test_ak_enrollment_refusals(rt: Runtime, swtpm: SwtpmInstance, t0: datetime) -> None:
    with Tpm(tcti=swtpm.tcti) as tpm:
        ak = tpm.create_ak()
        with pytest.raises(VerificationFailed) as bad_name:
            _begin(rt, tpm, ak, t0, ak_name=b"\x00\x0b" + bytes(32))
        assert bad_name.value.code == "attestation.ak.name"
        blob, secret, enrollment = _begin(rt, tpm, ak, t0)
        with pytest.raises(PermissionDenied) as wrong:
            att.finish_ak_enrollment(
                rt, device_id=DEVICE, enrollment_id=enrollment, secret=b"guess" * 6, now=t0
            )
        assert wrong.value.code == "attestation.ak.activation"
        recovered = tpm.activate_credential(blob, secret)
        late = t0 + timedelta(hours=1)
        with pytest.raises(PermissionDenied):
            att.finish_ak_enrollment(
                rt, device_id=DEVICE, enrollment_id=enrollment, secret=recovered, now=late
            )
        att.finish_ak_enrollment(
            rt, device_id=DEVICE, enrollment_id=enrollment, secret=recovered, now=t0
        )
        with pytest.raises(PermissionDenied):  # single use
            att.finish_ak_enrollment(
                rt, device_id=DEVICE, enrollment_id=enrollment, secret=recovered, now=t0
            )
    assert _events(rt).count("attestation.ak.refused") == 4
    assert _events(rt).count("attestation.ak.enrolled") == 1


def test_same_tpm_under_a_new_id_once_the_old_is_decommissioned(
    rt: Runtime, swtpm: SwtpmInstance, t0: datetime
) -> None:
    """Return to service (docs/lifecycle.md): the EK of a decommissioned device may serve a new
    id; while its first device is not decommissioned, it may not."""
    reborn = "dev-att-0002"
    with rt.uow.begin() as tx:
        tx.devices.add(id=reborn, model="sim-v1", state="enrolled", now=t0)
    with Tpm(tcti=swtpm.tcti) as tpm:
        _enroll_ak(rt, tpm, t0)
        ak = tpm.create_ak(replace=True)
        with pytest.raises(Conflict) as in_use:
            _begin(rt, tpm, ak, t0, device_id=reborn)
        assert in_use.value.code == "attestation.ek.in_use"
        assert DEVICE in in_use.value.message
        with rt.uow.begin() as tx:
            tx.devices.set_state(DEVICE, "decommissioned", now=t0)
        blob, secret, enrollment = _begin(rt, tpm, ak, t0, device_id=reborn)
        recovered = tpm.activate_credential(blob, secret)
        key = att.finish_ak_enrollment(
            rt, device_id=reborn, enrollment_id=enrollment, secret=recovered, now=t0
        )
    assert key.ak_name == ak.name.hex()
    with rt.uow.begin(read_only=True) as tx:
        assert tx.attestation.devices_for_ek(key.ek_public) == [DEVICE, reborn]


def test_pass_tamper_quarantine_and_auto_release(
    rt: Runtime, swtpm: SwtpmInstance, t0: datetime
) -> None:
    with Tpm(tcti=swtpm.tcti) as tpm:
        _enroll_ak(rt, tpm, t0)
        events = boot(tpm, IMAGE_1)
        verdict = _answer(rt, tpm, events, at=t0)
        assert verdict.ok, verdict.findings
        assert verdict.facts.release == "1.0.0"
        # the same evidence again: the challenge is spent, nothing more is stored
        with rt.uow.begin(read_only=True) as tx:
            assert tx.attestation.results(DEVICE)[0].ok
            challenge = tx.attestation.get_challenge(verdict.challenge_id)
        assert challenge is not None and challenge.outcome == "passed"
        # a PCR extended outside the log (a tampered image loaded after the measurement)
        tpm.pcr_extend(9, hashlib.sha256(b"rootkit").digest())
        failed = _answer(rt, tpm, events, at=t0 + timedelta(minutes=10))
    assert not failed.ok
    assert "attestation.eventlog.replay_mismatch" in failed.codes
    quarantine = _quarantine(rt)
    assert quarantine is not None and quarantine.by == "system" and quarantine.release == "1.0.0"
    assert _events(rt)[-2:] == ["attestation.failed", "device.quarantined"]
    # an update to release 2.0.0: the device reboots (TPM reset) and measures the new image
    swtpm.stop()
    swtpm.start()
    with Tpm(tcti=swtpm.tcti) as tpm:
        events = boot(tpm, IMAGE_2)
        passed = _answer(
            rt, tpm, events, at=t0 + timedelta(minutes=20), trigger="boot", release="2.0.0"
        )
    assert passed.ok, passed.findings
    assert [f.code for f in passed.findings] == ["attestation.reset.unexpected"]  # announced
    assert _quarantine(rt) is None
    assert _events(rt)[-1] == "device.released"


def test_unannounced_reboot_fails(rt: Runtime, swtpm: SwtpmInstance, t0: datetime) -> None:
    with Tpm(tcti=swtpm.tcti) as tpm:
        _enroll_ak(rt, tpm, t0)
        assert _answer(rt, tpm, boot(tpm, IMAGE_1), at=t0).ok
    swtpm.stop()
    swtpm.start()
    with Tpm(tcti=swtpm.tcti) as tpm:
        verdict = _answer(rt, tpm, boot(tpm, IMAGE_1), at=t0 + timedelta(minutes=10))
    assert verdict.codes == ("attestation.reset.unexpected",) and not verdict.ok
    assert _quarantine(rt) is not None


def test_operator_quarantine_is_not_lifted_by_a_pass(
    rt: Runtime, swtpm: SwtpmInstance, t0: datetime
) -> None:
    att.quarantine(rt, DEVICE, reason="suspicious traffic", actor="operator:test", now=t0)
    with pytest.raises(Conflict):
        att.quarantine(rt, DEVICE, reason="again", actor="operator:test", now=t0)
    with Tpm(tcti=swtpm.tcti) as tpm, pytest.raises(PermissionDenied) as refused:
        _begin(rt, tpm, tpm.create_ak(), t0)
    assert refused.value.code == "attestation.ak.quarantined"
    att.lift_quarantine(rt, DEVICE, actor="operator:test", now=t0)
    with Tpm(tcti=swtpm.tcti) as tpm:
        _enroll_ak(rt, tpm, t0)
        att.quarantine(rt, DEVICE, reason="suspicious traffic", actor="operator:test", now=t0)
        assert _answer(rt, tpm, boot(tpm, IMAGE_2), at=t0, release="2.0.0").ok
    assert _quarantine(rt) is not None  # only the operator lifts an operator's quarantine
    att.lift_quarantine(rt, DEVICE, actor="operator:test", now=t0)
    with pytest.raises(Conflict):
        att.lift_quarantine(rt, DEVICE, actor="operator:test", now=t0)
    assert _events(rt).count("device.released") == 2


def test_missed_challenges_quarantine(rt: Runtime, swtpm: SwtpmInstance, t0: datetime) -> None:
    with Tpm(tcti=swtpm.tcti) as tpm:
        _enroll_ak(rt, tpm, t0)
    first = att.issue_challenge(rt, device_id=DEVICE, now=t0, trigger="schedule")
    assert att.sweep_missed(rt, now=t0 + timedelta(seconds=10)) == []  # not yet due
    assert att.sweep_missed(rt, now=t0 + timedelta(seconds=31)) == []  # one miss of two
    att.issue_challenge(rt, device_id=DEVICE, now=t0 + timedelta(minutes=10), trigger="schedule")
    assert att.sweep_missed(rt, now=t0 + timedelta(minutes=11)) == [DEVICE]
    assert _quarantine(rt) is not None
    assert _events(rt)[-3:] == ["attestation.missed", "attestation.missed", "device.quarantined"]
    with rt.uow.begin() as tx:  # a late answer finds the challenge closed
        assert tx.attestation.get_challenge(first.id).outcome == "missed"  # type: ignore[union-attr]
        assert not tx.attestation.use_challenge(first.id, now=t0 + timedelta(minutes=12))
