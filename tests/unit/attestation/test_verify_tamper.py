"""The verifier against a software-TPM device: a clean boot, each tamper, fuzzed evidence."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.softdevice import (
    EPOCH,
    ONE_SECOND,
    POLICY,
    SoftDevice,
    challenge_at,
    image_bytes,
    references,
)
from trustfleet.attestation import (
    ALL_CODES,
    Challenge,
    ClockInfo,
    DeviceAttestationState,
    ReferenceSet,
    Verdict,
    encode_evidence,
    verify_evidence,
)
from trustfleet.attestation.tpmstructs import build_ecdsa_signature

REFS = references()


@dataclass
class Case:
    """What the service would hand to the verifier."""

    evidence: bytes
    challenge: Challenge
    device: DeviceAttestationState
    now: datetime
    references: ReferenceSet = REFS


def run(case: Case) -> Verdict:
    return verify_evidence(
        case.evidence,
        challenge=case.challenge,
        device=case.device,
        references=case.references,
        policy=POLICY,
        now=case.now,
    )


def booted() -> SoftDevice:
    dev = SoftDevice()
    dev.boot()
    return dev


def answered(dev: SoftDevice, **quote_args: object) -> Case:
    """``dev`` answers a fresh challenge two seconds after it was issued."""
    challenge = challenge_at(EPOCH)
    return Case(
        dev.evidence(challenge, **quote_args), challenge, dev.state(), EPOCH + 2 * ONE_SECOND
    )


def after_verified_round(dev: SoftDevice) -> DeviceAttestationState:
    """The device's record after one verified attestation (its clock info stored)."""
    first = answered(dev)
    verdict = run(first)
    assert verdict.ok, verdict.findings
    return dev.state(last_clock=verdict.facts.clock_info)


# -- the tamper cases: each yields exactly one finding code -----------------------------------


def clean() -> Case:
    return answered(booted())


def modified_image() -> Case:
    # The boot signature is not the verifier's business here: the image differs from every
    # release, the log says so honestly, PCR 9 agrees with the log.
    dev = SoftDevice()
    dev.boot(image=image_bytes("2.0.0") + b"\x90rootkit")
    return answered(dev)


def modified_image_forged_log() -> Case:
    dev = SoftDevice()
    good = image_bytes("2.0.0")
    import hashlib

    dev.boot(image=good + b"\x90rootkit", logged_image=hashlib.sha256(good).digest())
    return answered(dev)


def replayed_old_quote() -> Case:
    dev = booted()
    old = challenge_at(EPOCH)
    old_evidence = json.loads(dev.evidence(old))
    state = dev.state()
    new = challenge_at(EPOCH + 30 * ONE_SECOND)
    old_evidence["id"] = new.id  # the id is not signed; the nonce is
    evidence = json.dumps(old_evidence).encode()
    return Case(evidence, new, state, EPOCH + 31 * ONE_SECOND)


def stale_nonce() -> Case:
    case = answered(booted())
    return replace(case, now=case.challenge.issued_at + timedelta(seconds=POLICY.max_age_s + 1))


def reused_nonce() -> Case:
    case = answered(booted())
    return replace(case, challenge=replace(case.challenge, used=True))


def quote_from_other_ak() -> Case:
    other = ec.generate_private_key(ec.SECP256R1())
    return answered(booted(), signer=other)


def quote_from_other_named_ak() -> Case:
    dev = booted()
    case = answered(dev, signer=ec.generate_private_key(ec.SECP256R1()))
    return replace(case, device=dev.state(ak_qualified_name=dev.ak_qualified_name))


def no_ak_on_record() -> Case:
    dev = booted()
    return replace(answered(dev), device=dev.state(ak_public_key=None))


def pcr_extended_outside_log() -> Case:
    dev = booted()
    dev.measure(10, "agent", b"\x66" * 32, logged=b"")
    return answered(dev)


def reboot_between_challenges() -> Case:
    dev = booted()
    state = after_verified_round(dev)
    dev.boot()
    return replace(answered(dev), device=state)


def clock_regressed() -> Case:
    dev = booted()
    state = after_verified_round(dev)
    dev.clock = 0  # e.g. a TPM whose clock was set back
    return replace(answered(dev), device=state)


def unknown_release() -> Case:
    dev = SoftDevice(release="3.0.0")  # published, but not a release this device may run
    dev.boot()
    return answered(dev)


def release_of_other_model() -> Case:
    dev = SoftDevice()
    dev.boot(image=image_bytes("2.0.0", "other-v2"))
    return answered(dev)


def agent_not_measured() -> Case:
    dev = booted()
    dev.pcrs.pop(10)
    dev.log = [e for e in dev.log if e.component != "agent"]
    return answered(dev)


def quote_without_pcr_10() -> Case:
    return answered(booted(), pcrs=(0, 4, 9))


def certify_instead_of_quote() -> Case:
    return answered(booted(), attest_type=0x8017)


def not_tpm_generated() -> Case:
    return answered(booted(), magic=0x4E4F5054)


def sha1_signature() -> Case:
    dev = booted()
    challenge = challenge_at(EPOCH)
    body = json.loads(dev.evidence(challenge))
    body["signature"] = base64.b64encode(build_ecdsa_signature(r=1, s=1, hash_alg=4)).decode()
    return Case(json.dumps(body).encode(), challenge, dev.state(), EPOCH + ONE_SECOND)


TAMPER: list[tuple[str, Callable[[], Case], str]] = [
    ("modified-kernel-image", modified_image, "attestation.measurement.unknown"),
    (
        "modified-image-forged-log",
        modified_image_forged_log,
        "attestation.eventlog.replay_mismatch",
    ),
    ("replayed-old-quote", replayed_old_quote, "attestation.nonce.mismatch"),
    ("stale-nonce", stale_nonce, "attestation.nonce.stale"),
    ("reused-nonce", reused_nonce, "attestation.nonce.reused"),
    ("quote-from-other-ak", quote_from_other_ak, "attestation.quote.signature"),
    ("quote-from-other-named-ak", quote_from_other_named_ak, "attestation.ak.unknown"),
    ("no-ak-on-record", no_ak_on_record, "attestation.ak.unknown"),
    (
        "pcr-extended-outside-log",
        pcr_extended_outside_log,
        "attestation.eventlog.replay_mismatch",
    ),
    ("reboot-between-challenges", reboot_between_challenges, "attestation.reset.unexpected"),
    ("clock-regressed", clock_regressed, "attestation.clock.regressed"),
    ("unknown-release-measurement", unknown_release, "attestation.measurement.unknown"),
    ("release-of-other-model", release_of_other_model, "attestation.measurement.unknown"),
    ("agent-not-measured", agent_not_measured, "attestation.measurement.missing"),
    ("quote-without-pcr-10", quote_without_pcr_10, "attestation.pcr.selection"),
    ("certify-instead-of-quote", certify_instead_of_quote, "attestation.quote.type"),
    ("not-tpm-generated", not_tpm_generated, "attestation.quote.type"),
    ("sha1-signature", sha1_signature, "attestation.quote.signature"),
]


@pytest.mark.parametrize(
    ("make", "code"), [(m, c) for _, m, c in TAMPER], ids=[n for n, _, _ in TAMPER]
)
def test_tamper_gives_exactly_its_finding(make: Callable[[], Case], code: str) -> None:
    verdict = run(make())
    assert verdict.codes == (code,), [f.message for f in verdict.findings]
    assert not verdict.ok
    assert verdict.findings[0].severity == "error"
    assert code in ALL_CODES


def test_clean_evidence_has_no_findings() -> None:
    case = clean()
    verdict = run(case)
    assert verdict.ok
    assert verdict.findings == ()
    assert verdict.facts.release == "2.0.0"
    assert verdict.facts.claimed_release == "2.0.0"
    assert verdict.facts.slot == "a"
    assert [m.component for m in verdict.facts.measurements] == [
        "rom",
        "bootloader",
        "image",
        "agent",
    ]
    assert verdict.facts.clock_info is not None
    assert verdict.facts.clock_info.reset_count == 8
    assert (verdict.device_id, verdict.challenge_id) == (case.device.device_id, case.challenge.id)


def test_clean_evidence_with_ak_as_pem_and_qualified_name() -> None:
    from cryptography.hazmat.primitives import serialization

    dev = booted()
    case = answered(dev)
    pem = dev.ak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    state = dev.state(ak_public_key=pem, ak_qualified_name=dev.ak_qualified_name)
    assert run(replace(case, device=state)).findings == ()


def test_announced_reboot_is_a_warning() -> None:
    dev = booted()
    state = after_verified_round(dev)
    dev.boot()
    verdict = run(replace(answered(dev), device=replace(state, reboot_announced=True)))
    assert verdict.ok
    assert verdict.codes == ("attestation.reset.unexpected",)
    assert verdict.findings[0].severity == "warning"


def test_several_problems_are_all_reported() -> None:
    dev = SoftDevice()
    dev.boot(image=image_bytes("2.0.0") + b"!")
    case = stale_nonce()
    tampered = answered(dev)
    verdict = run(
        replace(
            tampered,
            challenge=replace(tampered.challenge, used=True),
            now=case.now,
        )
    )
    assert set(verdict.codes) == {
        "attestation.nonce.stale",
        "attestation.nonce.reused",
        "attestation.measurement.unknown",
    }


def test_claimed_release_differing_from_measured_is_a_warning() -> None:
    dev = booted()
    challenge = challenge_at(EPOCH)
    attest, signature = dev.quote(challenge.nonce)
    evidence = encode_evidence(
        challenge_id=challenge.id,
        quote=attest,
        signature=signature,
        eventlog=dev.log,
        release="1.0.0",
    )
    verdict = run(Case(evidence, challenge, dev.state(), EPOCH + ONE_SECOND))
    assert verdict.ok
    assert verdict.codes == ("attestation.release.claim_mismatch",)
    assert verdict.facts.release == "2.0.0"


def test_ten_thousand_clean_rounds_have_no_false_failures() -> None:
    dev = booted()
    state = dev.state()
    now = EPOCH
    failures = 0
    for _ in range(10_000):
        challenge = challenge_at(now)
        now += ONE_SECOND
        verdict = verify_evidence(
            dev.evidence(challenge),
            challenge=challenge,
            device=state,
            references=REFS,
            policy=POLICY,
            now=now,
        )
        failures += not verdict.ok or bool(verdict.findings)
        state = replace(state, last_clock=verdict.facts.clock_info)
    assert failures == 0
    assert state.last_clock is not None and state.last_clock.clock > 10_000 * 1_000


# -- malformed evidence -----------------------------------------------------------------------


def _mutated(mutate: Callable[[dict[str, object]], object]) -> Case:
    case = clean()
    body = json.loads(case.evidence)
    mutate(body)
    return replace(case, evidence=json.dumps(body).encode())


def _quote_bytes(edit: Callable[[bytes], bytes]) -> Callable[[dict[str, object]], object]:
    def mutate(body: dict[str, object]) -> None:
        raw = base64.b64decode(str(body["quote"]))
        body["quote"] = base64.b64encode(edit(raw)).decode()

    return mutate


MALFORMED: list[tuple[str, Callable[[], Case]]] = [
    ("not-json", lambda: replace(clean(), evidence=b"{not json")),
    ("not-utf8", lambda: replace(clean(), evidence=b'{"id": "\xff"}')),
    ("json-array", lambda: replace(clean(), evidence=b"[]")),
    ("nan", lambda: replace(clean(), evidence=b'{"id": NaN}')),
    ("oversize", lambda: replace(clean(), evidence=b" " * (POLICY.max_evidence_bytes + 1))),
    ("deep-nesting", lambda: replace(clean(), evidence=b"[" * 60_000 + b"]" * 60_000)),
    ("unknown-key", lambda: _mutated(lambda b: b.update(extra=1))),
    ("missing-id", lambda: _mutated(lambda b: b.pop("id"))),
    ("quote-not-base64", lambda: _mutated(lambda b: b.update(quote="!!!!"))),
    ("quote-base64-whitespace", lambda: _mutated(lambda b: b.update(quote="AAAA AAAA"))),
    ("quote-truncated", lambda: _mutated(_quote_bytes(lambda q: q[:-1]))),
    ("quote-trailing-byte", lambda: _mutated(_quote_bytes(lambda q: q + b"\x00"))),
    ("quote-oversize", lambda: _mutated(_quote_bytes(lambda q: q * 20))),
    ("signature-empty", lambda: _mutated(lambda b: b.update(signature=""))),
    ("eventlog-not-list", lambda: _mutated(lambda b: b.update(eventlog={}))),
    ("eventlog-too-long", lambda: _mutated(lambda b: b.update(eventlog=[b["eventlog"][0]] * 65))),  # type: ignore[index]
    (
        "eventlog-digest-not-hex",
        lambda: _mutated(lambda b: b["eventlog"][0].update(digest="zz" * 32)),  # type: ignore[index]
    ),
    (
        "eventlog-pcr-bool",
        lambda: _mutated(lambda b: b["eventlog"][0].update(pcr=True)),  # type: ignore[index]
    ),
    (
        "eventlog-long-detail",
        lambda: _mutated(lambda b: b["eventlog"][0].update(detail="x" * 257)),  # type: ignore[index]
    ),
    ("release-not-string", lambda: _mutated(lambda b: b.update(release=2))),
]


@pytest.mark.parametrize("make", [m for _, m in MALFORMED], ids=[n for n, _ in MALFORMED])
def test_malformed_evidence_is_one_finding(make: Callable[[], Case]) -> None:
    verdict = run(make())
    assert verdict.codes == ("attestation.evidence.malformed",)
    assert not verdict.ok


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_FIXED = clean()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=600),
        _json.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {"id": st.just(_FIXED.challenge.id)},
            optional={
                "quote": st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
                "signature": st.binary(max_size=90).map(lambda b: base64.b64encode(b).decode()),
                "eventlog": _json,
                "release": _json,
                "slot": _json,
            },
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_fuzzed_evidence_only_ever_gives_findings(payload: bytes) -> None:
    verdict = run(replace(_FIXED, evidence=payload))
    assert not verdict.ok
    assert verdict.findings
    assert set(verdict.codes) <= ALL_CODES


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_change_to_the_signed_quote_fails(data: st.DataObject) -> None:
    body = json.loads(_FIXED.evidence)
    raw = bytearray(base64.b64decode(body["quote"]))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    body["quote"] = base64.b64encode(bytes(raw)).decode()
    verdict = run(replace(_FIXED, evidence=json.dumps(body).encode()))
    assert not verdict.ok
    assert set(verdict.codes) & {
        "attestation.quote.signature",
        "attestation.quote.type",
        "attestation.evidence.malformed",
    }


def test_clock_info_is_stored_only_from_the_quote() -> None:
    verdict = run(clean())
    assert isinstance(verdict.facts.clock_info, ClockInfo)
    assert verdict.facts.clock_info.safe is True
