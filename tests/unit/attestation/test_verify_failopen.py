"""The verifier's fail-open rules: each check that could be skipped has a negative test.

Every test here builds evidence that passes every other check (a good AK signature, the
challenge's nonce, a log that replays to the quoted digest), so the one rule under test is the
only thing between the evidence and ``ok``. Each asserts the full tuple of finding codes.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from support.softdevice import (
    AGENT_ID,
    BOOTLOADER_ID,
    EPOCH,
    MODEL,
    ONE_SECOND,
    POLICY,
    ROM_ID,
    TPM_RH_ENDORSEMENT,
    SoftDevice,
    challenge_at,
    image_bytes,
    references,
)
from trustfleet.attestation import (
    AttestationFacts,
    AttestationPolicy,
    Challenge,
    ClockInfo,
    DeviceAttestationState,
    Verdict,
    encode_evidence,
    measure_identity,
    verify_evidence,
)
from trustfleet.attestation.eventlog import ZERO_PCR, composite_digest
from trustfleet.attestation.tpmstructs import (
    TPM_ALG_SHA256,
    PcrSelection,
    build_attest_quote,
    ecdsa_signature_from_der,
    qualified_name,
)

REFS = references()
TPM_ALG_SHA1 = 0x0004
TPM_ALG_SHA384 = 0x000C
ALL_PCRS = (0, 4, 9, 10)
UNKNOWN = "attestation.measurement.unknown"
MISSING = "attestation.measurement.missing"
SELECTION = "attestation.pcr.selection"
AK_UNKNOWN = "attestation.ak.unknown"


def verify(
    evidence: bytes,
    challenge: Challenge,
    device: DeviceAttestationState,
    *,
    now: datetime | None = None,
    policy: AttestationPolicy = POLICY,
) -> Verdict:
    return verify_evidence(
        evidence,
        challenge=challenge,
        device=device,
        references=REFS,
        policy=policy,
        now=now if now is not None else challenge.issued_at + 2 * ONE_SECOND,
    )


def boot(dev: SoftDevice, **digests: bytes) -> SoftDevice:
    """A measured boot whose log is honest; ``digests`` replace a component's measurement."""
    dev.reset_count += 1
    dev.pcrs, dev.log = {}, []
    dev.measure(0, "rom", digests.get("rom", measure_identity(ROM_ID)))
    dev.measure(4, "bootloader", digests.get("bootloader", measure_identity(BOOTLOADER_ID)))
    image = hashlib.sha256(image_bytes(dev.release)).digest()
    dev.measure(9, "image", digests.get("image", image))
    dev.measure(10, "agent", digests.get("agent", measure_identity(AGENT_ID)))
    return dev


def signed_quote(
    dev: SoftDevice,
    nonce: bytes,
    banks: list[PcrSelection],
    *,
    signer_name: bytes | None = None,
    digest_pcrs: tuple[int, ...] | None = None,
) -> tuple[bytes, bytes]:
    """A quote of any bank shape, signed by the device's own AK.

    The digest is the honest SHA-256 composite of ``digest_pcrs`` (by default the PCRs of every
    bank, in order), so only the selection rule can refuse it.
    """
    dev.clock += 1_250
    order = digest_pcrs if digest_pcrs is not None else [p for b in banks for p in b.pcrs]
    values = {p: dev.pcrs.get(p, ZERO_PCR) for p in order}
    attest = build_attest_quote(
        qualified_signer=signer_name if signer_name is not None else dev.ak_qualified_name,
        extra_data=nonce,
        clock_info=ClockInfo(dev.clock, dev.reset_count, dev.restart_count, True),
        firmware_version=dev.firmware_version,
        pcr_select=banks,
        pcr_digest=composite_digest(values, list(order)),
    )
    der = dev.ak.sign(attest, ec.ECDSA(hashes.SHA256()))
    return attest, ecdsa_signature_from_der(der)


def evidence_of(
    dev: SoftDevice, challenge: Challenge, quote: tuple[bytes, bytes], release: str | None = None
) -> bytes:
    attest, signature = quote
    return encode_evidence(
        challenge_id=challenge.id,
        quote=attest,
        signature=signature,
        eventlog=dev.log,
        release=release,
    )


def banked(dev: SoftDevice, challenge: Challenge, banks: list[PcrSelection]) -> bytes:
    return evidence_of(dev, challenge, signed_quote(dev, challenge.nonce, banks))


# -- reference values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "index", "pcr"), [("rom", 0, 0), ("bootloader", 1, 4), ("agent", 3, 10)]
)
def test_unknown_fixed_stage_digest_is_not_a_reference_value(
    component: str, index: int, pcr: int
) -> None:
    dev = boot(SoftDevice(), **{component: measure_identity(f"evil-{component}")})
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (UNKNOWN,)
    context = verdict.findings[0].context
    assert (context["index"], context["pcr"], context["component"]) == (index, pcr, component)
    assert context["digest"] == measure_identity(f"evil-{component}").hex()


def test_model_without_reference_values_is_measurement_unknown() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state(model="unlisted-v9"))
    assert not verdict.ok
    assert verdict.codes == (UNKNOWN,)
    assert verdict.findings[0].context == {"model": "unlisted-v9"}
    assert verdict.facts.release is None


def test_fixed_stage_digest_of_another_model_is_not_a_reference_value() -> None:
    dev = boot(SoftDevice(), rom=measure_identity(ROM_ID.replace(MODEL, "other-v2")))
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (UNKNOWN,)


def test_entry_on_a_pcr_its_component_is_not_measured_into_is_unknown() -> None:
    # First in the log, replaying fine: the entries after it must still be checked and seen.
    dev = SoftDevice()
    dev.reset_count += 1
    dev.measure(4, "rom", measure_identity(ROM_ID))
    for pcr, component, identity in ((0, "rom", ROM_ID), (4, "bootloader", BOOTLOADER_ID)):
        dev.measure(pcr, component, measure_identity(identity))
    dev.measure(9, "image", hashlib.sha256(image_bytes(dev.release)).digest())
    dev.measure(10, "agent", measure_identity(AGENT_ID))
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (UNKNOWN,)
    assert verdict.findings[0].context["index"] == 0
    assert verdict.facts.release == "2.0.0"


def test_entry_of_no_boot_component_is_unknown() -> None:
    dev = boot(SoftDevice())
    dev.measure(9, "initrd", b"\x11" * 32)
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (UNKNOWN,)
    assert verdict.findings[0].context["component"] == "initrd"
    assert verdict.findings[0].context["index"] == 4


def test_image_of_no_published_release_is_unknown_with_no_releases() -> None:
    dev = boot(SoftDevice(), image=hashlib.sha256(b"not a release").digest())
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state())
    assert verdict.codes == (UNKNOWN,)
    assert verdict.findings[0].context["releases"] == []
    assert verdict.facts.release is None


def test_image_of_a_release_the_device_may_not_run_names_the_release() -> None:
    dev = boot(SoftDevice(release="3.0.0"))
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (UNKNOWN,)
    assert verdict.findings[0].context["releases"] == ["3.0.0"]
    assert verdict.facts.release is None


def test_any_published_release_passes_when_the_device_has_no_allow_list() -> None:
    dev = boot(SoftDevice(release="3.0.0"))
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state(allowed_releases=None))
    assert verdict.ok
    assert verdict.codes == ()
    assert verdict.facts.release == "3.0.0"


def test_missing_required_components_are_named() -> None:
    dev = SoftDevice()
    dev.reset_count += 1
    dev.measure(0, "rom", measure_identity(ROM_ID))
    dev.measure(9, "image", hashlib.sha256(image_bytes(dev.release)).digest())
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (MISSING,)
    assert verdict.findings[0].context == {"components": ["bootloader", "agent"]}


def test_evidence_without_a_release_claim_has_no_claim_finding() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    evidence = evidence_of(dev, challenge, dev.quote(challenge.nonce))
    verdict = verify(evidence, challenge, dev.state())
    assert verdict.ok
    assert verdict.codes == ()
    assert (verdict.facts.release, verdict.facts.claimed_release) == ("2.0.0", None)


def test_claim_with_an_unmeasured_release_adds_no_claim_finding() -> None:
    dev = boot(SoftDevice(), image=hashlib.sha256(b"not a release").digest())
    challenge = challenge_at(EPOCH)
    evidence = evidence_of(dev, challenge, dev.quote(challenge.nonce), release="2.0.0")
    verdict = verify(evidence, challenge, dev.state())
    assert verdict.codes == (UNKNOWN,)


def test_claim_mismatch_finding_names_both_releases() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    evidence = evidence_of(dev, challenge, dev.quote(challenge.nonce), release="1.0.0")
    verdict = verify(evidence, challenge, dev.state())
    assert verdict.ok
    assert verdict.codes == ("attestation.release.claim_mismatch",)
    finding = verdict.findings[0]
    assert finding.severity == "warning"
    assert finding.context == {"claimed": "1.0.0", "measured": "2.0.0"}


# -- the signer -------------------------------------------------------------------------------


OTHER_NAME = qualified_name(TPM_RH_ENDORSEMENT, b"\x00\x0b" + hashlib.sha256(b"other").digest())


def test_quote_signed_by_the_ak_but_naming_another_signer_is_ak_unknown() -> None:
    # A good AK signature over a quote naming another key: neither nonce, PCRs nor log match,
    # and the verdict must stop at the signer.
    dev = boot(SoftDevice(), rom=measure_identity("evil"))
    challenge = challenge_at(EPOCH)
    quote = signed_quote(
        dev, b"\x00" * 32, [PcrSelection(TPM_ALG_SHA256, (0,))], signer_name=OTHER_NAME
    )
    device = dev.state(ak_qualified_name=dev.ak_qualified_name)
    verdict = verify(evidence_of(dev, challenge, quote), challenge, device)
    assert not verdict.ok
    assert verdict.codes == (AK_UNKNOWN,)
    assert verdict.findings[0].context == {"qualified_signer": OTHER_NAME.hex()}
    assert verdict.facts.clock_info is None


def test_quote_naming_another_signer_passes_when_no_name_is_on_record() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    quote = signed_quote(
        dev, challenge.nonce, [PcrSelection(TPM_ALG_SHA256, ALL_PCRS)], signer_name=OTHER_NAME
    )
    verdict = verify(evidence_of(dev, challenge, quote), challenge, dev.state())
    assert verdict.ok
    assert verdict.codes == ()


@pytest.mark.parametrize(
    "record",
    [
        b"not a key",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    ],
    ids=["garbage", "bad-pem", "ed25519-spki"],
)
def test_unparseable_ak_on_record_is_ak_unknown(record: bytes) -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    verdict = verify(dev.evidence(challenge), challenge, dev.state(ak_public_key=record))
    assert not verdict.ok
    assert verdict.codes == (AK_UNKNOWN,)
    assert verdict.facts == AttestationFacts(claimed_release="2.0.0", slot="a")


def test_ak_on_record_as_der_spki_verifies() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    der = dev.ak.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verdict = verify(dev.evidence(challenge), challenge, dev.state(ak_public_key=der))
    assert verdict.ok
    assert verdict.codes == ()


# -- the PCR selection ------------------------------------------------------------------------


def test_quote_covering_the_challenge_but_not_the_policy_pcrs_is_a_selection_finding() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH, pcrs=(0, 4, 9))
    verdict = verify(
        banked(dev, challenge, [PcrSelection(TPM_ALG_SHA256, (0, 4, 9))]), challenge, dev.state()
    )
    assert not verdict.ok
    assert verdict.codes == (SELECTION,)
    assert verdict.findings[0].context == {"missing": [10], "other_banks": []}


def test_quote_covering_the_policy_but_not_the_challenge_pcrs_is_a_selection_finding() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH, pcrs=(0, 4, 7, 9, 10))
    evidence = banked(dev, challenge, [PcrSelection(TPM_ALG_SHA256, ALL_PCRS)])
    verdict = verify(evidence, challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (SELECTION,)
    assert verdict.findings[0].context == {"missing": [7], "other_banks": []}


def test_quote_of_the_sha1_bank_only_is_a_selection_finding() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    verdict = verify(
        banked(dev, challenge, [PcrSelection(TPM_ALG_SHA1, ALL_PCRS)]), challenge, dev.state()
    )
    assert not verdict.ok
    assert verdict.codes == (SELECTION,)
    assert verdict.findings[0].context == {"missing": [0, 4, 9, 10], "other_banks": [TPM_ALG_SHA1]}


def test_quote_of_sha256_and_another_bank_is_a_selection_finding() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    banks = [PcrSelection(TPM_ALG_SHA256, ALL_PCRS), PcrSelection(TPM_ALG_SHA384, (0,))]
    verdict = verify(banked(dev, challenge, banks), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (SELECTION,)
    assert verdict.findings[0].context == {
        "missing": [0, 4, 9, 10],
        "other_banks": [TPM_ALG_SHA384],
    }


def test_quote_of_an_empty_sha256_bank_is_a_selection_finding() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    verdict = verify(
        banked(dev, challenge, [PcrSelection(TPM_ALG_SHA256, ())]), challenge, dev.state()
    )
    assert not verdict.ok
    assert verdict.codes == (SELECTION,)
    assert verdict.findings[0].context == {"missing": [0, 4, 9, 10], "other_banks": []}


def test_quote_of_no_bank_is_a_selection_finding() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    verdict = verify(banked(dev, challenge, []), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == (SELECTION,)
    assert verdict.findings[0].context == {"missing": [0, 4, 9, 10], "other_banks": []}


def test_other_bank_is_a_selection_finding_even_with_no_required_pcrs() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH, pcrs=())
    policy = replace(POLICY, required_pcrs=())
    evidence = banked(dev, challenge, [PcrSelection(TPM_ALG_SHA1, ALL_PCRS)])
    verdict = verify(evidence, challenge, dev.state(), policy=policy)
    assert not verdict.ok
    assert verdict.codes == (SELECTION,)
    assert verdict.findings[0].context == {"missing": [], "other_banks": [TPM_ALG_SHA1]}


def test_empty_selection_of_another_bank_beside_sha256_passes() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    banks = [PcrSelection(TPM_ALG_SHA1, ()), PcrSelection(TPM_ALG_SHA256, ALL_PCRS)]
    verdict = verify(banked(dev, challenge, banks), challenge, dev.state())
    assert verdict.ok
    assert verdict.codes == ()


def test_sha256_pcrs_split_over_two_selections_replay_in_selection_order() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    banks = [PcrSelection(TPM_ALG_SHA256, (9, 10)), PcrSelection(TPM_ALG_SHA256, (0, 4))]
    verdict = verify(banked(dev, challenge, banks), challenge, dev.state())
    assert verdict.ok
    assert verdict.codes == ()


def test_digest_over_the_pcrs_in_another_order_is_a_replay_mismatch() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    quote = signed_quote(
        dev, challenge.nonce, [PcrSelection(TPM_ALG_SHA256, ALL_PCRS)], digest_pcrs=(10, 9, 4, 0)
    )
    verdict = verify(evidence_of(dev, challenge, quote), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == ("attestation.eventlog.replay_mismatch",)
    assert verdict.findings[0].context == {"pcrs": [0, 4, 9, 10], "logged_pcrs": [0, 4, 9, 10]}


# -- the challenge ----------------------------------------------------------------------------


def test_evidence_at_exactly_the_maximum_age_passes() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    now = EPOCH + timedelta(seconds=POLICY.max_age_s)
    verdict = verify(dev.evidence(challenge), challenge, dev.state(), now=now)
    assert verdict.ok
    assert verdict.codes == ()


def test_evidence_one_microsecond_past_the_maximum_age_is_stale() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    now = EPOCH + timedelta(seconds=POLICY.max_age_s, microseconds=1)
    verdict = verify(dev.evidence(challenge), challenge, dev.state(), now=now)
    assert not verdict.ok
    assert verdict.codes == ("attestation.nonce.stale",)


def test_stale_finding_gives_the_age_in_milliseconds() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    now = EPOCH + timedelta(seconds=61, microseconds=234_567)
    verdict = verify(dev.evidence(challenge), challenge, dev.state(), now=now)
    assert verdict.codes == ("attestation.nonce.stale",)
    assert verdict.findings[0].context == {"age_s": 61.235, "max_age_s": 60.0}


def test_right_nonce_with_another_challenge_id_is_a_mismatch() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    other = replace(challenge, id="another-challenge")
    verdict = verify(dev.evidence(other), challenge, dev.state())
    assert not verdict.ok
    assert verdict.codes == ("attestation.nonce.mismatch",)
    assert verdict.findings[0].context == {
        "challenge_id": challenge.id,
        "evidence_challenge_id": "another-challenge",
    }


def test_quote_not_bound_to_the_challenge_skips_the_clock_check() -> None:
    dev = boot(SoftDevice())
    challenge = challenge_at(EPOCH)
    last = ClockInfo(dev.clock + 10_000, dev.reset_count, dev.restart_count, True)
    evidence = dev.evidence(replace(challenge, id="another-challenge"))
    verdict = verify(evidence, challenge, dev.state(last_clock=last))
    assert verdict.codes == ("attestation.nonce.mismatch",)


# -- the TPM clock and counters ---------------------------------------------------------------


def _clock_case(dev: SoftDevice, last: ClockInfo, **state: object) -> Verdict:
    challenge = challenge_at(EPOCH)
    return verify(dev.evidence(challenge), challenge, dev.state(last_clock=last, **state))


def _next_clock(dev: SoftDevice) -> ClockInfo:
    """The clock info the device's next quote will carry (SoftDevice.quote adds 1 250 ms)."""
    return ClockInfo(dev.clock + 1_250, dev.reset_count, dev.restart_count, True)


def _counters(verdict: Verdict) -> dict[str, object]:
    return dict(verdict.findings[0].context)


def test_equal_tpm_clock_with_equal_counters_passes() -> None:
    dev = boot(SoftDevice())
    verdict = _clock_case(dev, _next_clock(dev))
    assert verdict.ok
    assert verdict.codes == ()


def test_tpm_clock_one_less_with_equal_counters_is_regressed() -> None:
    dev = boot(SoftDevice())
    last = _next_clock(dev)
    verdict = _clock_case(dev, last._replace(clock=last.clock + 1))
    assert not verdict.ok
    assert verdict.codes == ("attestation.clock.regressed",)
    assert _counters(verdict) == {
        "clock": last.clock,
        "last_clock": last.clock + 1,
        "reset_count": last.reset_count,
        "restart_count": last.restart_count,
        "last_reset_count": last.reset_count,
        "last_restart_count": last.restart_count,
    }


def test_restart_count_one_less_is_regressed_even_with_a_later_clock() -> None:
    dev = boot(SoftDevice())
    dev.restart_count = 3
    last = _next_clock(dev)
    verdict = _clock_case(dev, last._replace(clock=0, restart_count=4))
    assert verdict.codes == ("attestation.clock.regressed",)


def test_reset_count_one_less_is_regressed_even_with_a_later_restart_count() -> None:
    dev = boot(SoftDevice())
    dev.restart_count = 9
    last = _next_clock(dev)
    verdict = _clock_case(
        dev, last._replace(clock=0, reset_count=last.reset_count + 1, restart_count=0)
    )
    assert verdict.codes == ("attestation.clock.regressed",)


def test_restart_since_the_last_quote_is_an_unexpected_reset() -> None:
    dev = boot(SoftDevice())
    dev.restart_count = 1
    last = _next_clock(dev)._replace(restart_count=0, clock=10**9)
    verdict = _clock_case(dev, last)
    assert not verdict.ok
    assert verdict.codes == ("attestation.reset.unexpected",)
    assert verdict.findings[0].severity == "error"
    assert _counters(verdict) == {
        "reset_count": last.reset_count,
        "restart_count": 1,
        "last_reset_count": last.reset_count,
        "last_restart_count": 0,
    }


def test_reset_with_a_lower_restart_count_is_an_unexpected_reset() -> None:
    dev = boot(SoftDevice())
    last = _next_clock(dev)._replace(reset_count=dev.reset_count - 1, restart_count=5)
    verdict = _clock_case(dev, last)
    assert not verdict.ok
    assert verdict.codes == ("attestation.reset.unexpected",)


def test_announced_reset_is_an_error_when_the_policy_says_so() -> None:
    dev = boot(SoftDevice())
    last = _next_clock(dev)._replace(reset_count=dev.reset_count - 1)
    challenge = challenge_at(EPOCH)
    device = dev.state(last_clock=last, reboot_announced=True)
    policy = replace(POLICY, announced_reboot_is_warning=False)
    verdict = verify(dev.evidence(challenge), challenge, device, policy=policy)
    assert not verdict.ok
    assert verdict.codes == ("attestation.reset.unexpected",)
    assert verdict.findings[0].severity == "error"


def test_announced_reset_is_a_warning_by_default() -> None:
    dev = boot(SoftDevice())
    last = _next_clock(dev)._replace(reset_count=dev.reset_count - 1)
    verdict = _clock_case(dev, last, reboot_announced=True)
    assert verdict.ok
    assert verdict.codes == ("attestation.reset.unexpected",)
    assert verdict.findings[0].severity == "warning"
