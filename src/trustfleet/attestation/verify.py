"""The attestation verifier: a pure function of the evidence bytes, the state, the policy and now.

:func:`verify_evidence` reads no file, clock or network, and never raises for bad evidence: every
problem is a :class:`~trustfleet.attestation.findings.Finding` in the returned verdict. The
order of the checks:

1. shape and bounds of the payload (``attestation.evidence.malformed``);
2. the quote is a TPM quote (``attestation.quote.type``) signed by the device's AK
   (``attestation.ak.unknown``, ``attestation.quote.signature``). Without a good signature the
   quote's content is no evidence, so the verdict stops here;
3. the challenge: nonce and id, age, reuse (``attestation.nonce.*``);
4. the PCR selection covers the required PCRs (``attestation.pcr.selection``);
5. replaying the event log gives the quoted digest (``attestation.eventlog.replay_mismatch``);
6. each logged digest is a reference value of its component for this device
   (``attestation.measurement.unknown``, ``attestation.measurement.missing``);
7. only for a quote bound to this challenge: counters and clock against the last verified quote
   (``attestation.reset.unexpected``, ``attestation.clock.regressed``).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.attestation import findings as fc
from trustfleet.attestation.eventlog import EventLogEntry, composite_digest, replay
from trustfleet.attestation.evidence import Challenge, Evidence, parse_evidence
from trustfleet.attestation.findings import AttestationFacts, Finding, Severity, Verdict
from trustfleet.attestation.policy import (
    AttestationPolicy,
    DeviceAttestationState,
    load_ak_public_key,
)
from trustfleet.attestation.reference import COMPONENT_PCR, ReferenceSet
from trustfleet.attestation.tpmstructs import (
    TPM_ALG_SHA256,
    Attest,
    ClockInfo,
    parse_attest_quote,
    parse_ecdsa_signature,
)
from trustfleet.errors import InvalidInput

__all__ = ["verify_evidence"]

_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_COMPONENT_PCR: Final = dict(COMPONENT_PCR)  # a plain dict: faster lookups than the proxy


def _finding(code: str, message: str, severity: Severity = "error", **context: Any) -> Finding:
    return Finding(code=code, severity=severity, message=message, context=context)


def verify_evidence(
    evidence: bytes,
    *,
    challenge: Challenge,
    device: DeviceAttestationState,
    references: ReferenceSet,
    policy: AttestationPolicy,
    now: datetime,
) -> Verdict:
    """Verify one evidence payload against the challenge it answers.

    Args:
        evidence: The raw MQTT payload (JSON per docs/attestation.md).
        challenge: The challenge the service sent (looked up by the evidence's id).
        device: What the service knows about the device.
        references: The reference values.
        policy: Bounds and rules.
        now: The current time (UTC, timezone-aware like ``challenge.issued_at``).

    Returns:
        The verdict: ``ok`` when no finding is an error; the findings in the order checked
        (see the module docstring); the facts to store (trust them only when ``ok``).
    """
    out: list[Finding] = []
    try:
        ev = parse_evidence(
            evidence,
            max_bytes=policy.max_evidence_bytes,
            max_quote_bytes=policy.max_quote_bytes,
            max_signature_bytes=policy.max_signature_bytes,
            max_eventlog_entries=policy.max_eventlog_entries,
            max_string_chars=policy.max_string_chars,
        )
    except InvalidInput as exc:
        out.append(_finding(fc.EVIDENCE_MALFORMED, exc.message))
        return _verdict(device, challenge, out, AttestationFacts())
    quote = _authenticate(ev, device, policy, out)
    if quote is None:
        facts = AttestationFacts(claimed_release=ev.release, slot=ev.slot)
        return _verdict(device, challenge, out, facts)
    bound = _check_challenge(ev, quote, challenge=challenge, policy=policy, now=now, out=out)
    order = _check_selection(quote, challenge, policy, out)
    if order is not None:
        _check_replay(ev.eventlog, quote, order, out)
    release = _check_measurements(ev.eventlog, device, references, policy, out)
    if release is not None and ev.release is not None and ev.release != release:
        out.append(_claim_mismatch(ev.release, release))
    if bound:
        _check_clock(quote.clock_info, device, policy, out)
    facts = AttestationFacts(
        release=release,
        claimed_release=ev.release,
        slot=ev.slot,
        measurements=ev.eventlog,
        clock_info=quote.clock_info,
        firmware_version=quote.firmware_version,
    )
    return _verdict(device, challenge, out, facts)


def _claim_mismatch(claimed: str, measured: str) -> Finding:
    return _finding(
        fc.RELEASE_CLAIM_MISMATCH,
        "the device names another release than the image it measured",
        "warning",
        claimed=claimed,
        measured=measured,
    )


def _verdict(
    device: DeviceAttestationState,
    challenge: Challenge,
    out: list[Finding],
    facts: AttestationFacts,
) -> Verdict:
    ok = not any(f.severity == "error" for f in out)
    return Verdict(
        ok=ok,
        device_id=device.device_id,
        challenge_id=challenge.id,
        findings=tuple(out),
        facts=facts,
    )


def _authenticate(
    ev: Evidence, device: DeviceAttestationState, policy: AttestationPolicy, out: list[Finding]
) -> Attest | None:
    """The quote, if it is a quote signed by the device's AK; else ``None`` and a finding."""
    try:
        quote = parse_attest_quote(ev.quote, max_bytes=policy.max_quote_bytes)
        signature = parse_ecdsa_signature(ev.signature)
    except InvalidInput as exc:
        out.append(_finding(exc.code or fc.EVIDENCE_MALFORMED, exc.message))
        return None
    key = device.ak_public_key
    if isinstance(key, bytes):
        try:
            key = load_ak_public_key(key)
        except InvalidInput:
            key = None
    if key is None:
        out.append(_finding(fc.AK_UNKNOWN, "no usable attestation key is on record for the device"))
        return None
    signer_known = device.ak_qualified_name is not None
    other_signer = signer_known and quote.qualified_signer != device.ak_qualified_name
    if signature.hash_alg != TPM_ALG_SHA256:
        out.append(
            _finding(
                fc.QUOTE_SIGNATURE,
                "the quote signature does not use SHA-256",
                hash_alg=signature.hash_alg,
            )
        )
        return None
    try:
        key.verify(signature.to_der(), ev.quote, _ECDSA_SHA256)
    except InvalidSignature:
        if other_signer:
            out.append(_other_signer(quote))
        else:
            out.append(
                _finding(fc.QUOTE_SIGNATURE, "the quote signature does not verify with the AK")
            )
        return None
    if other_signer:
        out.append(_other_signer(quote))
        return None
    return quote


def _other_signer(quote: Attest) -> Finding:
    return _finding(
        fc.AK_UNKNOWN,
        "the quote was made by another key than the device's attestation key",
        qualified_signer=quote.qualified_signer.hex(),
    )


def _check_challenge(
    ev: Evidence,
    quote: Attest,
    *,
    challenge: Challenge,
    policy: AttestationPolicy,
    now: datetime,
    out: list[Finding],
) -> bool:
    """Nonce, id, age and reuse; returns whether the quote is bound to this challenge."""
    same_nonce = hmac.compare_digest(quote.extra_data, challenge.nonce)
    bound = same_nonce and ev.challenge_id == challenge.id
    if not bound:
        out.append(
            _finding(
                fc.NONCE_MISMATCH,
                "the quote does not carry this challenge's nonce"
                if not same_nonce
                else "the evidence answers another challenge",
                challenge_id=challenge.id,
                evidence_challenge_id=ev.challenge_id,
            )
        )
    age_s = (now - challenge.issued_at).total_seconds()
    if age_s > policy.max_age_s:
        out.append(
            _finding(
                fc.NONCE_STALE,
                f"the challenge was answered {age_s:.0f} s after it was issued",
                age_s=round(age_s, 3),
                max_age_s=policy.max_age_s,
            )
        )
    if challenge.used:
        out.append(_finding(fc.NONCE_REUSED, "the challenge was already answered"))
    return bound


def _check_selection(
    quote: Attest, challenge: Challenge, policy: AttestationPolicy, out: list[Finding]
) -> list[int] | None:
    """The quoted SHA-256 PCRs in digest order, or ``None`` when the digest cannot be replayed."""
    banks = quote.pcr_select
    order = [pcr for bank in banks for pcr in bank.pcrs]
    other_banks = sorted(
        {bank.hash_alg for bank in banks if bank.pcrs and bank.hash_alg != TPM_ALG_SHA256}
    )
    quoted = frozenset(order) if not other_banks else frozenset()
    if not (quoted.issuperset(challenge.pcrs) and quoted.issuperset(policy.required_pcrs)):
        missing = sorted((set(challenge.pcrs) | set(policy.required_pcrs)) - quoted)
        out.append(
            _finding(
                fc.PCR_SELECTION,
                "the quote does not cover the required PCRs in the SHA-256 bank",
                missing=missing,
                other_banks=other_banks,
            )
        )
    elif other_banks:
        out.append(
            _finding(
                fc.PCR_SELECTION,
                "the quote selects PCRs in banks other than SHA-256",
                missing=[],
                other_banks=other_banks,
            )
        )
    return None if other_banks else order


def _check_replay(
    eventlog: Sequence[EventLogEntry], quote: Attest, order: list[int], out: list[Finding]
) -> None:
    if composite_digest(replay(eventlog, pcrs=order), order) != quote.pcr_digest:
        out.append(
            _finding(
                fc.EVENTLOG_REPLAY_MISMATCH,
                "replaying the event log does not give the quoted PCR digest",
                pcrs=order,
                logged_pcrs=sorted({e.pcr for e in eventlog}),
            )
        )


def _check_measurements(
    eventlog: Sequence[EventLogEntry],
    device: DeviceAttestationState,
    references: ReferenceSet,
    policy: AttestationPolicy,
    out: list[Finding],
) -> str | None:
    """Each logged digest against the references; returns the release measured, if known."""
    model = references.models.get(device.model)
    if model is None:
        out.append(
            _finding(
                fc.MEASUREMENT_UNKNOWN,
                "there are no reference values for the device's model",
                model=device.model,
            )
        )
        return None
    seen: set[str] = set()
    release = None
    component_pcr = _COMPONENT_PCR
    for index, entry in enumerate(eventlog):
        component = entry.component
        if component_pcr.get(component) != entry.pcr:
            out.append(_unknown(index, entry, "is no boot component measured into this PCR"))
            continue
        seen.add(component)
        if component == "image":
            version = references.match_image(device.model, entry.digest, device.allowed_releases)
            if version is None:
                known = references.image_releases(device.model, entry.digest)
                out.append(
                    _unknown(
                        index,
                        entry,
                        f"is release {known[0]}, which this device may not run"
                        if known
                        else "is no published release",
                        releases=list(known),
                    )
                )
            else:
                release = version
        elif entry.digest not in model.digests(component):
            out.append(_unknown(index, entry, "is not a reference value of the model"))
    missing = [c for c in policy.required_components if c not in seen]
    if missing:
        out.append(
            _finding(
                fc.MEASUREMENT_MISSING,
                "the event log lacks required boot components",
                components=missing,
            )
        )
    return release


def _unknown(index: int, entry: EventLogEntry, why: str, **context: Any) -> Finding:
    return _finding(
        fc.MEASUREMENT_UNKNOWN,
        f"event log entry {index} ({entry.component} on PCR {entry.pcr}) {why}",
        index=index,
        pcr=entry.pcr,
        component=entry.component,
        digest=entry.digest.hex(),
        **context,
    )


def _check_clock(
    current: ClockInfo,
    device: DeviceAttestationState,
    policy: AttestationPolicy,
    out: list[Finding],
) -> None:
    last = device.last_clock
    if last is None:
        return
    now_boot = (current.reset_count, current.restart_count)
    last_boot = (last.reset_count, last.restart_count)
    context: dict[str, Any] = {
        "reset_count": current.reset_count,
        "restart_count": current.restart_count,
        "last_reset_count": last.reset_count,
        "last_restart_count": last.restart_count,
    }
    if now_boot < last_boot or (now_boot == last_boot and current.clock < last.clock):
        out.append(
            _finding(
                fc.CLOCK_REGRESSED,
                "the TPM clock or counters went back since the last verified quote",
                clock=current.clock,
                last_clock=last.clock,
                **context,
            )
        )
    elif now_boot != last_boot:
        announced = device.reboot_announced and policy.announced_reboot_is_warning
        out.append(
            _finding(
                fc.RESET_UNEXPECTED,
                "the device rebooted since the last verified quote"
                + (" (announced)" if announced else ""),
                "warning" if announced else "error",
                **context,
            )
        )
